# -*- test-case-name: tests.rtmp.test_messages -*-
"""Tests for :mod:`flashstream.rtmp.messages`: control payloads and aggregates."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flashstream.rtmp.errors import LocalProtocolError, MessageError
from flashstream.rtmp.limits import Limits
from flashstream.rtmp.messages import (
    Abort,
    Acknowledgement,
    ControlMessage,
    Message,
    MessageType,
    PeerBandwidthLimit,
    PingRequest,
    PingResponse,
    SetBufferLength,
    SetChunkSize,
    SetPeerBandwidth,
    StreamBegin,
    StreamDry,
    StreamEOF,
    StreamIsRecorded,
    UnknownUserControl,
    WindowAckSize,
    decode_control,
    encode_control,
    unpack_aggregate,
)

U32 = st.integers(0, 2**32 - 1)

CONTROLS: st.SearchStrategy[ControlMessage] = st.one_of(
    st.builds(SetChunkSize, st.integers(1, 0x7FFFFFFF)),
    st.builds(Abort, U32),
    st.builds(Acknowledgement, U32),
    st.builds(WindowAckSize, U32),
    st.builds(SetPeerBandwidth, U32, st.integers(0, 255)),
    st.builds(StreamBegin, U32),
    st.builds(StreamEOF, U32),
    st.builds(StreamDry, U32),
    st.builds(SetBufferLength, U32, U32),
    st.builds(StreamIsRecorded, U32),
    st.builds(PingRequest, U32),
    st.builds(PingResponse, U32),
    st.builds(
        UnknownUserControl,
        st.integers(0, 0xFFFF).filter(lambda e: e not in {0, 1, 2, 3, 4, 6, 7}),
        st.binary(max_size=50),
    ),
)


@given(control=CONTROLS, timestamp=U32)
@settings(max_examples=200)
def test_control_round_trip(control: ControlMessage, timestamp: int) -> None:
    """Every control value survives encode_control then decode_control."""
    message = encode_control(control, timestamp)
    assert message.stream_id == 0
    assert message.timestamp == timestamp
    assert decode_control(message) == control


@pytest.mark.parametrize(
    ("control", "type_id", "payload"),
    [
        (WindowAckSize(2500000), 5, bytes.fromhex("002625a0")),
        (SetPeerBandwidth(2500000, PeerBandwidthLimit.DYNAMIC), 6, bytes.fromhex("002625a002")),
        (StreamBegin(1), 4, bytes.fromhex("000000000001")),
        (PingRequest(0x12345678), 4, bytes.fromhex("000612345678")),
        (PingResponse(0x12345678), 4, bytes.fromhex("000712345678")),
        (SetChunkSize(4096), 1, bytes.fromhex("00001000")),
        (Abort(4), 2, bytes.fromhex("00000004")),
        (Acknowledgement(0xDEADBEEF), 3, bytes.fromhex("deadbeef")),
        (SetBufferLength(1, 3000), 4, bytes.fromhex("0003 00000001 00000bb8")),
        (StreamIsRecorded(1), 4, bytes.fromhex("000400000001")),
        (UnknownUserControl(26, b"\x00"), 4, bytes.fromhex("001a00")),
    ],
)
def test_golden_bytes(control: ControlMessage, type_id: int, payload: bytes) -> None:
    """Control messages encode to the bytes ffmpeg and nginx put on the wire."""
    assert encode_control(control) == Message(type_id, 0, 0, payload)
    assert decode_control(Message(type_id, 0, 0, payload)) == control


@pytest.mark.parametrize(
    ("type_id", "payload"),
    [
        (1, b"\x00\x00\x10"),
        (2, b""),
        (3, b"\x00"),
        (5, b"\x00\x26\x25"),
        (6, b"\x00\x26\x25\xa0"),
        (4, b"\x00"),
        (4, b"\x00\x00\x00\x00\x01"),  # StreamBegin without a whole msid
        (4, b"\x00\x03\x00\x00\x00\x01\x00\x00\x0b"),  # SetBufferLength short
        (4, b"\x00\x06\x00\x00\x00"),  # PingRequest needs 4 data bytes
    ],
)
def test_truncated_payload(type_id: int, payload: bytes) -> None:
    """A control payload too short for its type raises MessageError."""
    with pytest.raises(MessageError):
        decode_control(Message(type_id, 0, 0, payload))


def test_trailing_bytes_ignored() -> None:
    """Extra bytes after a control payload are ignored (peers pad pings)."""
    assert decode_control(Message(4, 0, 0, bytes.fromhex("0006000000070000"))) == PingRequest(7)
    assert decode_control(Message(1, 0, 0, bytes.fromhex("0000100000"))) == SetChunkSize(4096)
    assert decode_control(Message(6, 0, 0, bytes.fromhex("002625a00201"))) == SetPeerBandwidth(
        2500000, 2
    )


def test_decode_non_control_is_local_error() -> None:
    """Asking decode_control about a media message is a caller bug."""
    with pytest.raises(LocalProtocolError):
        decode_control(Message(MessageType.VIDEO, 1, 0, b"\x17\x00"))


def test_encode_out_of_range_is_local_error() -> None:
    """A value that does not fit its wire field raises LocalProtocolError."""
    with pytest.raises(LocalProtocolError):
        encode_control(WindowAckSize(2**32))
    with pytest.raises(LocalProtocolError):
        encode_control(SetPeerBandwidth(1, 256))


def _sub(type_id: int, timestamp: int, body: bytes, back_pointer: int | None = None) -> bytes:
    """One aggregate sub-message with its back pointer."""
    header = (
        bytes([type_id])
        + len(body).to_bytes(3, "big")
        + (timestamp & 0xFFFFFF).to_bytes(3, "big")
        + bytes([timestamp >> 24])
        + b"\x00\x00\x00"
    )
    if back_pointer is None:
        back_pointer = len(body) + 11
    return header + body + struct.pack(">I", back_pointer)


def test_aggregate_rebases_timestamps() -> None:
    """Sub-messages get the aggregate's timestamp plus their offset from the first."""
    payload = (
        _sub(9, 0x01000010, b"\x17\x01video")
        + _sub(8, 0x01000020, b"\xaf\x01audio")
        + _sub(18, 0x01000010, b"\x02data")
    )
    aggregate = Message(MessageType.AGGREGATE, 1, 5000, payload)
    assert unpack_aggregate(aggregate) == [
        Message(9, 1, 5000, b"\x17\x01video"),
        Message(8, 1, 5016, b"\xaf\x01audio"),
        Message(18, 1, 5000, b"\x02data"),
    ]


def test_aggregate_timestamps_wrap() -> None:
    """Rebased timestamps wrap mod 2**32, including sub-timestamps that go backwards."""
    payload = _sub(9, 100, b"a") + _sub(9, 120, b"b") + _sub(9, 90, b"c")
    aggregate = Message(MessageType.AGGREGATE, 3, 2**32 - 10, payload)
    assert [m.timestamp for m in unpack_aggregate(aggregate)] == [2**32 - 10, 10, 2**32 - 20]


def test_aggregate_wrong_back_pointer_tolerated() -> None:
    """A back pointer with the wrong value does not stop the split."""
    payload = _sub(8, 0, b"x", back_pointer=0) + _sub(8, 1, b"y", back_pointer=999)
    assert unpack_aggregate(Message(22, 1, 0, payload)) == [
        Message(8, 1, 0, b"x"),
        Message(8, 1, 1, b"y"),
    ]


def test_aggregate_empty_and_zero_length() -> None:
    """An empty aggregate has no sub-messages; a zero-length body is kept."""
    assert unpack_aggregate(Message(22, 1, 0, b"")) == []
    assert unpack_aggregate(Message(22, 1, 7, _sub(9, 0, b""))) == [Message(9, 1, 7, b"")]


@pytest.mark.parametrize("cut", [1, 5, 10, 11, 15, 20, 23])
def test_aggregate_truncated(cut: int) -> None:
    """An aggregate cut anywhere inside a sub-message raises MessageError."""
    payload = _sub(9, 0, b"12345678") + _sub(8, 10, b"abcd")
    with pytest.raises(MessageError):
        unpack_aggregate(Message(22, 1, 0, payload[: len(payload) - cut]))


def test_aggregate_bad_size() -> None:
    """A sub-message size running past the payload, or over the limit, raises MessageError."""
    good = _sub(9, 0, b"abcdef")
    lying = good[:1] + (1000).to_bytes(3, "big") + good[4:]
    with pytest.raises(MessageError):
        unpack_aggregate(Message(22, 1, 0, lying))
    with pytest.raises(MessageError):
        unpack_aggregate(Message(22, 1, 0, good), Limits(max_message_size=5))


@given(payload=st.binary(max_size=200))
@settings(max_examples=200)
def test_aggregate_garbage_only_raises_message_error(payload: bytes) -> None:
    """Arbitrary aggregate payloads either split or raise MessageError, nothing else."""
    try:
        subs = unpack_aggregate(Message(22, 1, 0, payload))
    except MessageError:
        return
    assert sum(len(m.payload) + 15 for m in subs) == len(payload)
