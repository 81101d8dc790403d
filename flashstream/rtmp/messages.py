# -*- test-case-name: tests.rtmp.test_messages -*-
"""
RTMP messages: the unit the chunk stream carries, and the payloads of the
protocol control (types 1, 2, 3, 5, 6), user control (type 4) and aggregate
(type 22) messages.

A :class:`Message` is what :class:`~flashstream.rtmp.chunks.ChunkReader`
produces and :class:`~flashstream.rtmp.chunks.ChunkWriter` consumes.  Control
payloads are turned into frozen values with :func:`decode_control` and back
with :func:`encode_control`; :func:`unpack_aggregate` splits an aggregate
into ordinary messages.  Everything here is pure: bytes in, values out.
"""

from __future__ import annotations

import enum
import struct
from typing import Union

import attrs

from flashstream.rtmp.errors import LocalProtocolError, MessageError
from flashstream.rtmp.limits import Limits

__all__ = [
    "CONTROL_CSID",
    "CONTROL_TYPES",
    "DEFAULT_LIMITS",
    "Abort",
    "Acknowledgement",
    "ControlMessage",
    "Message",
    "MessageType",
    "PeerBandwidthLimit",
    "PingRequest",
    "PingResponse",
    "SetBufferLength",
    "SetChunkSize",
    "SetPeerBandwidth",
    "StreamBegin",
    "StreamDry",
    "StreamEOF",
    "StreamIsRecorded",
    "UnknownUserControl",
    "UserControlEvent",
    "WindowAckSize",
    "decode_control",
    "encode_control",
    "unpack_aggregate",
]

#: The limits used when a caller passes none (``Limits`` is frozen).
DEFAULT_LIMITS = Limits()

#: The chunk stream id reserved for protocol and user control messages.
CONTROL_CSID = 2

_U32_MASK = 0xFFFFFFFF


class MessageType(enum.IntEnum):
    """RTMP message type ids (reference section 5.3)."""

    SET_CHUNK_SIZE = 1
    ABORT = 2
    ACKNOWLEDGEMENT = 3
    USER_CONTROL = 4
    WINDOW_ACK_SIZE = 5
    SET_PEER_BANDWIDTH = 6
    AUDIO = 8
    VIDEO = 9
    DATA_AMF3 = 15
    SHARED_OBJECT_AMF3 = 16
    COMMAND_AMF3 = 17
    DATA_AMF0 = 18
    SHARED_OBJECT_AMF0 = 19
    COMMAND_AMF0 = 20
    AGGREGATE = 22


#: The type ids :func:`decode_control` understands.
CONTROL_TYPES = frozenset(
    {
        MessageType.SET_CHUNK_SIZE,
        MessageType.ABORT,
        MessageType.ACKNOWLEDGEMENT,
        MessageType.USER_CONTROL,
        MessageType.WINDOW_ACK_SIZE,
        MessageType.SET_PEER_BANDWIDTH,
    }
)


class UserControlEvent(enum.IntEnum):
    """User control (type 4) event ids this module decodes (section 5.2)."""

    STREAM_BEGIN = 0
    STREAM_EOF = 1
    STREAM_DRY = 2
    SET_BUFFER_LENGTH = 3
    STREAM_IS_RECORDED = 4
    PING_REQUEST = 6
    PING_RESPONSE = 7


class PeerBandwidthLimit(enum.IntEnum):
    """The limit type byte of Set Peer Bandwidth (servers send DYNAMIC)."""

    HARD = 0
    SOFT = 1
    DYNAMIC = 2


@attrs.frozen
class Message:
    """One complete RTMP message."""

    #: The message type id (see :class:`MessageType`; any u8 is carried).
    type_id: int
    #: The message stream id (msid); 0 is the NetConnection itself.
    stream_id: int
    #: Absolute timestamp in milliseconds, a u32 (arithmetic is mod 2**32).
    timestamp: int
    payload: bytes


# -- protocol control ---------------------------------------------------------


@attrs.frozen
class SetChunkSize:
    """Type 1: the sender's chunk size from now on (1..0x7FFFFFFF)."""

    size: int


@attrs.frozen
class Abort:
    """Type 2: discard the partial message on ``chunk_stream_id``."""

    chunk_stream_id: int


@attrs.frozen
class Acknowledgement:
    """Type 3: bytes received so far, mod 2**32."""

    sequence_number: int


@attrs.frozen
class WindowAckSize:
    """Type 5: the peer should acknowledge every ``size`` bytes."""

    size: int


@attrs.frozen
class SetPeerBandwidth:
    """Type 6: output window plus a :class:`PeerBandwidthLimit` byte."""

    size: int
    limit_type: int


# -- user control (type 4) ----------------------------------------------------


@attrs.frozen
class StreamBegin:
    """Event 0: the stream is ready (sent on play/publish start)."""

    stream_id: int


@attrs.frozen
class StreamEOF:
    """Event 1: recorded playback reached its end."""

    stream_id: int


@attrs.frozen
class StreamDry:
    """Event 2: no more data on the stream for now."""

    stream_id: int


@attrs.frozen
class SetBufferLength:
    """Event 3: the client's buffer length for a stream, in milliseconds."""

    stream_id: int
    buffer_ms: int


@attrs.frozen
class StreamIsRecorded:
    """Event 4: the stream is recorded (VOD), sent before StreamBegin."""

    stream_id: int


@attrs.frozen
class PingRequest:
    """Event 6: the peer should echo ``timestamp`` in a PingResponse."""

    timestamp: int


@attrs.frozen
class PingResponse:
    """Event 7: the echo of a PingRequest."""

    timestamp: int


@attrs.frozen
class UnknownUserControl:
    """Any other event id (SWF verification, BufferEmpty/BufferReady...)."""

    event_type: int
    data: bytes


ControlMessage = Union[
    SetChunkSize,
    Abort,
    Acknowledgement,
    WindowAckSize,
    SetPeerBandwidth,
    StreamBegin,
    StreamEOF,
    StreamDry,
    SetBufferLength,
    StreamIsRecorded,
    PingRequest,
    PingResponse,
    UnknownUserControl,
]

_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_U16_U32 = struct.Struct(">HI")
_U16_U32_U32 = struct.Struct(">HII")
_U32_U8 = struct.Struct(">IB")

# Protocol control types whose payload is one u32: type id -> value class.
_U32_CONTROLS: dict[int, type[SetChunkSize | Abort | Acknowledgement | WindowAckSize]] = {
    MessageType.SET_CHUNK_SIZE: SetChunkSize,
    MessageType.ABORT: Abort,
    MessageType.ACKNOWLEDGEMENT: Acknowledgement,
    MessageType.WINDOW_ACK_SIZE: WindowAckSize,
}

# User control events whose data is one u32: event id -> value class.
_U32_EVENTS: dict[
    int,
    type[StreamBegin | StreamEOF | StreamDry | StreamIsRecorded | PingRequest | PingResponse],
] = {
    UserControlEvent.STREAM_BEGIN: StreamBegin,
    UserControlEvent.STREAM_EOF: StreamEOF,
    UserControlEvent.STREAM_DRY: StreamDry,
    UserControlEvent.STREAM_IS_RECORDED: StreamIsRecorded,
    UserControlEvent.PING_REQUEST: PingRequest,
    UserControlEvent.PING_RESPONSE: PingResponse,
}
_EVENT_IDS = {cls: event for event, cls in _U32_EVENTS.items()}


def decode_control(message: Message) -> ControlMessage:
    """
    Decode the payload of a protocol control or user control message.

    Only type ids 1-6 are accepted (anything else is a caller bug and raises
    :class:`LocalProtocolError`).  A payload too short for its type raises
    :class:`MessageError`; extra trailing bytes are ignored, as ffmpeg and
    librtmp do.  Unknown user control events become
    :class:`UnknownUserControl`.
    """
    type_id = message.type_id
    payload = message.payload
    value_class = _U32_CONTROLS.get(type_id)
    if value_class is not None:
        _need(payload, 4, type_id)
        return value_class(_U32.unpack_from(payload)[0])
    if type_id == MessageType.SET_PEER_BANDWIDTH:
        _need(payload, 5, type_id)
        size, limit_type = _U32_U8.unpack_from(payload)
        return SetPeerBandwidth(size, limit_type)
    if type_id == MessageType.USER_CONTROL:
        return _decode_user_control(payload)
    raise LocalProtocolError(f"message type {type_id} is not a control message")


def _need(payload: bytes, size: int, type_id: int) -> None:
    if len(payload) < size:
        raise MessageError(
            f"control message type {type_id} needs {size} payload bytes, got {len(payload)}"
        )


def _decode_user_control(payload: bytes) -> ControlMessage:
    _need(payload, 2, MessageType.USER_CONTROL)
    (event,) = _U16.unpack_from(payload)
    value_class = _U32_EVENTS.get(event)
    if value_class is not None:
        _need(payload, 6, MessageType.USER_CONTROL)
        return value_class(_U32.unpack_from(payload, 2)[0])
    if event == UserControlEvent.SET_BUFFER_LENGTH:
        _need(payload, 10, MessageType.USER_CONTROL)
        _, stream_id, buffer_ms = _U16_U32_U32.unpack_from(payload)
        return SetBufferLength(stream_id, buffer_ms)
    return UnknownUserControl(event, bytes(payload[2:]))


def encode_control(control: ControlMessage, timestamp: int = 0) -> Message:
    """
    Build the message carrying ``control``: message stream id 0, the given
    timestamp taken mod 2**32 (peers ignore it).

    Values out of range for their wire fields raise
    :class:`LocalProtocolError`.
    """
    try:
        type_id, payload = _encode(control)
    except struct.error as e:
        raise LocalProtocolError(f"cannot encode {control!r}: {e}") from e
    return Message(int(type_id), 0, timestamp & _U32_MASK, payload)


def _encode(control: ControlMessage) -> tuple[MessageType, bytes]:
    if isinstance(control, SetChunkSize):
        return MessageType.SET_CHUNK_SIZE, _U32.pack(control.size)
    if isinstance(control, Abort):
        return MessageType.ABORT, _U32.pack(control.chunk_stream_id)
    if isinstance(control, Acknowledgement):
        return MessageType.ACKNOWLEDGEMENT, _U32.pack(control.sequence_number)
    if isinstance(control, WindowAckSize):
        return MessageType.WINDOW_ACK_SIZE, _U32.pack(control.size)
    if isinstance(control, SetPeerBandwidth):
        return MessageType.SET_PEER_BANDWIDTH, _U32_U8.pack(control.size, control.limit_type)
    return MessageType.USER_CONTROL, _encode_user_control(control)


def _encode_user_control(control: ControlMessage) -> bytes:
    if isinstance(control, SetBufferLength):
        return _U16_U32_U32.pack(
            UserControlEvent.SET_BUFFER_LENGTH, control.stream_id, control.buffer_ms
        )
    if isinstance(control, (PingRequest, PingResponse)):
        return _U16_U32.pack(_EVENT_IDS[type(control)], control.timestamp)
    if isinstance(control, (StreamBegin, StreamEOF, StreamDry, StreamIsRecorded)):
        return _U16_U32.pack(_EVENT_IDS[type(control)], control.stream_id)
    if isinstance(control, UnknownUserControl):
        return _U16.pack(control.event_type) + bytes(control.data)
    raise LocalProtocolError(f"not a control message: {control!r}")


# -- aggregate (type 22) ------------------------------------------------------

# type(1) size(3) timestamp(3) timestamp_high(1) stream_id(3)
_AGGREGATE_HEADER_SIZE = 11
_BACK_POINTER_SIZE = 4


def unpack_aggregate(message: Message, limits: Limits = DEFAULT_LIMITS) -> list[Message]:
    """
    Split an aggregate message (type 22) into its sub-messages.

    Each sub-message is ``type(1) size(3) ts(3) ts_high(1) stream_id(3)
    body(size) back_pointer(4)``.  Sub-message *i* gets the timestamp
    ``message.timestamp + (ts_i - ts_0) mod 2**32`` (the rebasing ffmpeg and
    librtmp do) and the aggregate's own message stream id; the stream id in
    the sub-header (always 0 in practice) is ignored, and so is the back
    pointer's value.  A truncated sub-message, or one larger than
    ``limits.max_message_size``, raises :class:`MessageError`.  Nested
    aggregates are returned as they are: each level is smaller than the last,
    so a caller that recurses terminates.
    """
    payload = message.payload
    end = len(payload)
    base = message.timestamp
    stream_id = message.stream_id
    out: list[Message] = []
    first_ts = 0
    pos = 0
    while pos < end:
        if end - pos < _AGGREGATE_HEADER_SIZE:
            raise MessageError(
                f"aggregate truncated: {end - pos} bytes left, a sub-message header needs 11"
            )
        type_id = payload[pos]
        size = int.from_bytes(payload[pos + 1 : pos + 4], "big")
        sub_ts = int.from_bytes(payload[pos + 4 : pos + 7], "big") | (payload[pos + 7] << 24)
        if size > limits.max_message_size:
            raise MessageError(
                f"aggregate sub-message of {size} bytes exceeds max_message_size "
                f"{limits.max_message_size}"
            )
        body_start = pos + _AGGREGATE_HEADER_SIZE
        body_end = body_start + size
        if body_end + _BACK_POINTER_SIZE > end:
            raise MessageError(
                f"aggregate truncated: sub-message of {size} bytes needs "
                f"{size + _BACK_POINTER_SIZE} more, {end - body_start} left"
            )
        if not out:
            first_ts = sub_ts
        out.append(
            Message(
                type_id,
                stream_id,
                (base + sub_ts - first_ts) & _U32_MASK,
                bytes(payload[body_start:body_end]),
            )
        )
        pos = body_end + _BACK_POINTER_SIZE
    return out
