# -*- test-case-name: tests.rtmp.test_sharedobject -*-
"""
Remote shared object messages (types 19 AMF0 and 16 AMF3), without I/O.

A message names one shared object and carries a list of events
(rtmp-protocol.md section 9)::

    [type 16 only: u8 encoding, 0 = AMF0 values, 3 = AMF3 values]
    u16 + name | u32 version | u32 flags (2 = persistent) | u32 reserved
    events: u8 type | u32 length | data

Keys are "typeless" strings (u16 length + UTF-8); values are AMF values.
:func:`decode_shared_object` turns a payload into a
:class:`SharedObjectMessage`; :func:`encode_shared_object` does the reverse
(AMF0 values; for type 16 with the leading ``00`` byte).
"""

from __future__ import annotations

import enum
import struct
from typing import Final

import attrs

from . import amf0, amf3
from .amf_types import DEFAULT_LIMITS, Reader, check_items, convert_decode_errors
from .errors import LimitExceeded, LocalProtocolError, MessageError
from .limits import Limits
from .messages import MessageType

__all__ = [
    "SOEvent",
    "SOEventType",
    "SharedObjectMessage",
    "decode_shared_object",
    "encode_shared_object",
]

_HEADER: Final = struct.Struct(">III")
_EVENT: Final = struct.Struct(">BI")
#: The flags word of a persistent shared object.
PERSISTENT_FLAG: Final = 2


class SOEventType(enum.IntEnum):
    """Shared object event types (client to server: C, server to client: S)."""

    USE = 1  # C
    RELEASE = 2  # C
    REQUEST_CHANGE = 3  # C: key + value
    CHANGE = 4  # S: (key + value)...
    SUCCESS = 5  # S: key
    SEND_MESSAGE = 6  # both: handler + arguments (AMF values)
    STATUS = 7  # S: code + level
    CLEAR = 8  # S
    REMOVE = 9  # S: key
    REQUEST_REMOVE = 10  # C: key
    USE_SUCCESS = 11  # S


#: Events whose data is (key, value) pairs.
_PAIR_EVENTS: Final = frozenset({SOEventType.REQUEST_CHANGE, SOEventType.CHANGE})
#: Events whose data is one key.
_KEY_EVENTS: Final = frozenset(
    {SOEventType.SUCCESS, SOEventType.REMOVE, SOEventType.REQUEST_REMOVE}
)
#: Events without data.
_EMPTY_EVENTS: Final = frozenset(
    {SOEventType.USE, SOEventType.RELEASE, SOEventType.CLEAR, SOEventType.USE_SUCCESS}
)


@attrs.frozen
class SOEvent:
    """One event of a shared object message."""

    kind: SOEventType
    #: (key, value) pairs of REQUEST_CHANGE and CHANGE.
    pairs: tuple[tuple[str, object], ...] = ()
    #: The key of SUCCESS, REMOVE and REQUEST_REMOVE; the code of STATUS.
    key: str = ""
    #: The level of STATUS (``error``, ``warning``, ``status``).
    level: str = ""
    #: SEND_MESSAGE: the handler name then its arguments.
    arguments: tuple[object, ...] = ()


@attrs.frozen
class SharedObjectMessage:
    """A shared object message: which object, its version, and the events."""

    name: str
    version: int
    persistent: bool
    events: tuple[SOEvent, ...]
    #: 16 (AMF3 message type) or 19 (AMF0).
    type_id: int = MessageType.SHARED_OBJECT_AMF0


class _ValueReader:
    """Reads AMF values (AMF0, or AMF3 when the type 16 encoding byte says 3)."""

    def __init__(self, reader: Reader, amf3_values: bool, limits: Limits) -> None:
        self.amf0 = amf0._Decoder(reader, limits)
        self.amf3 = amf3.Decoder(reader, limits) if amf3_values else None

    def read(self) -> object:
        if self.amf3 is not None:
            return self.amf3.read_value()
        return self.amf0.read_value(0)


def _typeless(reader: Reader) -> str:
    return reader.utf8(reader.u16())


def decode_shared_object(
    type_id: int, payload: bytes, limits: Limits = DEFAULT_LIMITS
) -> SharedObjectMessage:
    """The shared object message in a type 19 or 16 payload; MessageError if malformed."""
    if type_id not in (MessageType.SHARED_OBJECT_AMF0, MessageType.SHARED_OBJECT_AMF3):
        raise LocalProtocolError(f"message type {type_id} is not a shared object message")
    data = bytes(payload)
    amf3_values = False
    if type_id == MessageType.SHARED_OBJECT_AMF3:
        if not data:
            raise MessageError("empty shared object message")
        if data[0] not in (0, 3):
            raise MessageError(f"shared object encoding byte {data[0]} is not 0 or 3")
        amf3_values = data[0] == 3
        data = data[1:]
    with convert_decode_errors():
        reader = Reader(data)
        name = _typeless(reader)
        version, flags, _reserved = _HEADER.unpack(reader.read(_HEADER.size))
        events: list[SOEvent] = []
        while reader.remaining:
            if len(events) >= limits.max_so_events:
                raise LimitExceeded("max_so_events", len(events) + 1, limits.max_so_events)
            kind_id, length = _EVENT.unpack(reader.read(_EVENT.size))
            body = reader.read(length)
            events.append(_decode_event(kind_id, body, amf3_values, limits))
    return SharedObjectMessage(name, version, flags == PERSISTENT_FLAG, tuple(events), int(type_id))


def _decode_event(kind_id: int, body: bytes, amf3_values: bool, limits: Limits) -> SOEvent:
    try:
        kind = SOEventType(kind_id)
    except ValueError:
        raise MessageError(f"unknown shared object event type {kind_id}") from None
    reader = Reader(body)
    if kind in _EMPTY_EVENTS:
        return SOEvent(kind)
    if kind in _KEY_EVENTS:
        return SOEvent(kind, key=_typeless(reader))
    if kind is SOEventType.STATUS:
        code = _typeless(reader)
        level = _typeless(reader) if reader.remaining else ""
        return SOEvent(kind, key=code, level=level)
    values = _ValueReader(reader, amf3_values, limits)
    if kind is SOEventType.SEND_MESSAGE:
        arguments: list[object] = []
        while reader.remaining:
            check_items(len(arguments) + 1, limits)
            arguments.append(values.read())
        if not arguments or not isinstance(arguments[0], str):
            raise MessageError("shared object send without a handler name")
        return SOEvent(kind, arguments=tuple(arguments))
    pairs: list[tuple[str, object]] = []
    while reader.remaining:
        check_items(len(pairs) + 1, limits)
        key = _typeless(reader)
        pairs.append((key, values.read()))
    if not pairs:
        raise MessageError(f"shared object {kind.name} without a key")
    return SOEvent(kind, pairs=tuple(pairs))


def _typeless_bytes(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) > 0xFFFF:
        raise LocalProtocolError("shared object names and keys are at most 65535 bytes")
    return struct.pack(">H", len(raw)) + raw


def _encode_event(event: SOEvent) -> bytes:
    kind = event.kind
    if kind in _EMPTY_EVENTS:
        body = b""
    elif kind in _KEY_EVENTS:
        body = _typeless_bytes(event.key)
    elif kind is SOEventType.STATUS:
        body = _typeless_bytes(event.key) + _typeless_bytes(event.level)
    elif kind is SOEventType.SEND_MESSAGE:
        body = amf0.encode(*event.arguments)
    else:
        body = b"".join(_typeless_bytes(key) + amf0.encode(value) for key, value in event.pairs)
    return _EVENT.pack(int(kind), len(body)) + body


def encode_shared_object(message: SharedObjectMessage) -> bytes:
    """The payload of ``message`` (type 16 gets the ``00`` encoding byte: AMF0 values)."""
    header = _typeless_bytes(message.name) + _HEADER.pack(
        message.version % 2**32, PERSISTENT_FLAG if message.persistent else 0, 0
    )
    body = header + b"".join(_encode_event(e) for e in message.events)
    if message.type_id == MessageType.SHARED_OBJECT_AMF3:
        return b"\x00" + body
    return body
