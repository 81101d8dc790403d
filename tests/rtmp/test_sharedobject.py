# -*- test-case-name: tests.rtmp.test_sharedobject -*-
"""
Tests for :mod:`flashstream.rtmp.sharedobject` (the type 19/16 codec) and for
how :class:`~flashstream.rtmp.connection.ServerConnection` surfaces shared
object messages as events.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flashstream.rtmp import amf0, amf3
from flashstream.rtmp.errors import (
    LimitExceeded,
    LocalProtocolError,
    MessageError,
    RemoteProtocolError,
)
from flashstream.rtmp.events import SharedObjectReceived, StreamCreated
from flashstream.rtmp.limits import Limits
from flashstream.rtmp.messages import MessageType
from flashstream.rtmp.sharedobject import (
    SharedObjectMessage,
    SOEvent,
    SOEventType,
    decode_shared_object,
    encode_shared_object,
)
from tests.helpers import ConnectionPair

AMF0 = MessageType.SHARED_OBJECT_AMF0
AMF3 = MessageType.SHARED_OBJECT_AMF3


def typeless(text: str) -> bytes:
    """A u16-length string without the AMF0 ``02`` marker."""
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def event(kind: int, body: bytes) -> bytes:
    """One event: type, u32 length, body."""
    return struct.pack(">BI", kind, len(body)) + body


def header(name: str, version: int = 0, flags: int = 0) -> bytes:
    """Name, version, flags and the reserved word."""
    return typeless(name) + struct.pack(">III", version, flags, 0)


def test_decode_hand_made_use_and_change() -> None:
    """A Flash-style message (use, then a change with a typeless key) decodes field by field."""
    payload = (
        header("users", 7, 2)
        + event(1, b"")
        + event(3, typeless("alice") + amf0.encode({"online": True}))
    )
    message = decode_shared_object(AMF0, payload)
    assert message == SharedObjectMessage(
        "users",
        7,
        True,
        (
            SOEvent(SOEventType.USE),
            SOEvent(SOEventType.REQUEST_CHANGE, pairs=(("alice", {"online": True}),)),
        ),
    )


def test_decode_type16_with_amf3_values() -> None:
    """Type 16 with encoding byte 3 carries AMF3 values; with 0, AMF0 values."""
    amf3_payload = b"\x03" + header("so") + event(3, typeless("k") + amf3.encode([1, 2]))
    message = decode_shared_object(AMF3, amf3_payload)
    assert message.events[0].pairs == (("k", [1, 2]),)
    assert message.type_id == AMF3
    amf0_payload = b"\x00" + header("so") + event(3, typeless("k") + amf0.encode("v"))
    assert decode_shared_object(AMF3, amf0_payload).events[0].pairs == (("k", "v"),)


def test_decode_avmplus_switch_inside_type19() -> None:
    """A type 19 value may switch to AMF3 with ``11`` (Flash does this for typed data)."""
    payload = header("so") + event(3, typeless("k") + b"\x11" + amf3.encode(5))
    assert decode_shared_object(AMF0, payload).events[0].pairs == (("k", 5),)


def test_change_event_with_several_pairs() -> None:
    """A server Change event may hold many (key, value) pairs; all are decoded."""
    body = typeless("a") + amf0.encode(1.0) + typeless("b") + amf0.encode("x")
    message = decode_shared_object(AMF0, header("so", 3) + event(4, body))
    assert message.events[0].pairs == (("a", 1.0), ("b", "x"))


@pytest.mark.parametrize(
    "ev",
    [
        SOEvent(SOEventType.USE),
        SOEvent(SOEventType.RELEASE),
        SOEvent(SOEventType.REQUEST_CHANGE, pairs=(("k", {"x": 1.0}),)),
        SOEvent(SOEventType.CHANGE, pairs=(("a", 1.0), ("b", None))),
        SOEvent(SOEventType.SUCCESS, key="k"),
        SOEvent(SOEventType.SEND_MESSAGE, arguments=("onMsg", "hi", 2.0)),
        SOEvent(SOEventType.STATUS, key="SharedObject.NoWriteAccess", level="error"),
        SOEvent(SOEventType.CLEAR),
        SOEvent(SOEventType.REMOVE, key="k"),
        SOEvent(SOEventType.REQUEST_REMOVE, key="k"),
        SOEvent(SOEventType.USE_SUCCESS),
    ],
    ids=lambda e: e.kind.name,
)
@pytest.mark.parametrize("type_id", [AMF0, AMF3])
def test_round_trip_every_event(ev: SOEvent, type_id: int) -> None:
    """Every event type survives encode then decode, in both message types."""
    message = SharedObjectMessage("room/1", 42, True, (ev,), type_id)
    assert decode_shared_object(type_id, encode_shared_object(message)) == message


@given(
    name=st.text(max_size=20),
    version=st.integers(0, 2**32 - 1),
    values=st.dictionaries(
        st.text(max_size=10),
        st.one_of(st.none(), st.booleans(), st.text(max_size=10), st.floats(allow_nan=False)),
        max_size=5,
    ),
)
def test_round_trip_property(name: str, version: int, values: dict[str, object]) -> None:
    """Arbitrary names, versions and scalar values round-trip."""
    events = tuple(SOEvent(SOEventType.CHANGE, pairs=((k, v),)) for k, v in values.items())
    message = SharedObjectMessage(name, version, False, events)
    assert decode_shared_object(AMF0, encode_shared_object(message)) == message


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        header("so")[:-1],
        header("so") + event(99, b""),
        header("so") + struct.pack(">BI", 3, 10) + b"ab",
        header("so") + event(3, b""),
        header("so") + event(6, amf0.encode(1.0)),
        header("so") + event(5, b"\x00"),
        header("so") + event(3, typeless("k") + b"\x02\x00\x09ab"),
    ],
    ids=[
        "empty",
        "short-header",
        "unknown-event",
        "short-event",
        "change-without-key",
        "send-without-handler",
        "truncated-key",
        "truncated-value",
    ],
)
def test_malformed_payloads(payload: bytes) -> None:
    """Malformed messages raise a RemoteProtocolError (AMFError/MessageError), nothing else."""
    with pytest.raises(RemoteProtocolError):
        decode_shared_object(AMF0, payload)


def test_bad_type16_encoding_byte() -> None:
    """Type 16 must start with 0 or 3."""
    with pytest.raises(MessageError):
        decode_shared_object(AMF3, b"\x07" + header("so"))
    with pytest.raises(MessageError):
        decode_shared_object(AMF3, b"")


def test_event_count_limit() -> None:
    """More events than ``max_so_events`` in one message is a LimitExceeded."""
    payload = header("so") + event(1, b"") * 5
    assert len(decode_shared_object(AMF0, payload, Limits(max_so_events=5)).events) == 5
    with pytest.raises(LimitExceeded):
        decode_shared_object(AMF0, payload, Limits(max_so_events=4))


def test_not_a_shared_object_type() -> None:
    """Asking for another message type is a local mistake."""
    with pytest.raises(LocalProtocolError):
        decode_shared_object(MessageType.COMMAND_AMF0, b"")


# -- in the connection ------------------------------------------------------------------------


@pytest.mark.parametrize("byte_at_a_time", [False, True])
def test_connection_reports_shared_object_messages(byte_at_a_time: bool) -> None:
    """A Use from a connected client becomes a SharedObjectReceived event, whole or bytewise."""
    pair = ConnectionPair("flash", byte_at_a_time=byte_at_a_time)
    pair.connect("live")
    pair.client.so_use("users", persistent=True, amf3=True)
    (received,) = pair.to_server()
    assert received == SharedObjectReceived(
        SharedObjectMessage("users", 0, True, (SOEvent(SOEventType.USE),), AMF3)
    )


def test_shared_object_held_while_connect_pending() -> None:
    """A shared object message pipelined before connect is answered is replayed after it."""
    pair = ConnectionPair("flash")
    pair.handshake()
    pair.client.connect("live")
    pair.client.so_use("users")
    pair.client.create_stream()
    events = pair.to_server()
    assert len(events) == 1
    replayed = pair.server.accept_connect(1.0)
    assert [type(e) for e in replayed] == [SharedObjectReceived, StreamCreated]


def test_shared_object_before_connect_is_an_error() -> None:
    """A shared object message before ``connect`` is a protocol error."""
    pair = ConnectionPair("flash")
    pair.handshake()
    pair.client.so_use("users")
    with pytest.raises(Exception) as info:
        pair.to_server()
    assert "not allowed" in str(info.value)


def test_send_shared_object_reaches_client() -> None:
    """``send_shared_object`` queues a message the client decodes, in the type asked for."""
    pair = ConnectionPair("flash")
    pair.connect("live")
    for type_id in (AMF0, AMF3):
        message = SharedObjectMessage(
            "users", 3, False, (SOEvent(SOEventType.CHANGE, pairs=(("a", 1.0),)),), type_id
        )
        pair.server.send_shared_object(message)
        pair.to_client()
        assert pair.client.shared_objects("users")[-1] == message
        assert pair.client.received[-1].message.type_id == type_id
