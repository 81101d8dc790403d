# -*- test-case-name: tests.rtmp.test_connection -*-
"""
Events emitted by :class:`flashstream.rtmp.connection.ServerConnection`.

These frozen values are the only words the sans-IO core and the Twisted
adapter share: ``receive_data(bytes)`` returns a list of them and the adapter
turns each into hub or application calls.  Tests compare them with ``==``.
"""

from __future__ import annotations

from typing import Union

import attrs

from .commands import Command, DataMessage
from .messages import Message
from .sharedobject import SharedObjectMessage


@attrs.frozen
class HandshakeCompleted:
    """The C0/C1/C2 exchange finished; RTMP chunks follow."""

    client_version: int
    #: Digest scheme of C1 (1 or 2), or None for the simple handshake.
    scheme: int | None
    #: Whether the client chose RTMPE (C0 = 6, 8 or 9): every later byte is
    #: RC4-encrypted in both directions.
    encrypted: bool = False


@attrs.frozen
class ConnectRequested:
    """The client sent ``connect``; answer with ``accept_connect``/``reject_connect``."""

    transaction_id: float
    #: The connect command object (app, tcUrl, flashVer, objectEncoding...).
    properties: dict[str, object]
    #: Application name (``app`` with any ``?query`` and instance kept apart).
    app: str
    #: Anything after ``/`` in ``app`` (the FMS instance), or ``""``.
    instance: str
    #: The ``?query`` part of ``app``, without the ``?``.
    query: str
    #: 0 for AMF0 clients, 3 for AS3 clients.
    object_encoding: int
    #: Extra AMF values after the command object (ffmpeg ``rtmp_conn``).
    arguments: tuple[object, ...] = ()


@attrs.frozen
class StreamCreated:
    """``createStream`` was answered with a new message stream id."""

    stream_id: int


@attrs.frozen
class PublishRequested:
    """``publish(name, type)`` on a stream; answer ``accept_publish``/``reject_publish``."""

    stream_id: int
    #: Stream name with any ``?query`` removed.
    name: str
    #: ``?query`` part of the published name (auth tokens), without ``?``.
    query: str
    #: ``live``, ``record`` or ``append``.
    publish_type: str
    transaction_id: float


@attrs.frozen
class PlayRequested:
    """``play(name, start, duration, reset)`` on a stream."""

    stream_id: int
    name: str
    query: str
    #: Start position in ms: -2000 live-or-recorded, -1000 live only, >= 0 recorded.
    start: float
    #: Length in ms; negative means "to the end".
    duration: float
    reset: bool
    transaction_id: float


@attrs.frozen
class StreamClosed:
    """``closeStream`` or ``deleteStream``: stop what the stream was doing."""

    stream_id: int
    #: True for deleteStream (the id is released), False for closeStream.
    deleted: bool


@attrs.frozen
class MediaReceived:
    """An audio (8) or video (9) message from a publisher."""

    stream_id: int
    message: Message


@attrs.frozen
class DataReceived:
    """A data message (18/15) on a stream, ``@setDataFrame`` already unwrapped.

    ``message`` is re-encoded as a plain AMF0 data message (type 18) ready to
    forward, e.g. ``onMetaData`` with its ECMA array.
    """

    stream_id: int
    data: DataMessage
    message: Message
    #: True for ``@setDataFrame`` (keep as the stream's metadata).
    set_data_frame: bool


@attrs.frozen
class ReceiveMediaToggled:
    """``receiveAudio``/``receiveVideo`` from a player."""

    stream_id: int
    kind: str  # "audio" or "video"
    enabled: bool


@attrs.frozen
class PauseRequested:
    """``pause(flag, position_ms)`` from a player."""

    stream_id: int
    paused: bool
    position: float


@attrs.frozen
class SeekRequested:
    """``seek(position_ms)`` from a player."""

    stream_id: int
    position: float


@attrs.frozen
class Play2Requested:
    """``play2(0, null, {streamName, oldStreamName, start, len, offset, transition})``."""

    stream_id: int
    #: The NetStreamPlayOptions object as the client sent it.
    options: dict[str, object]


@attrs.frozen
class BufferLengthSet:
    """User control SetBufferLength from a player."""

    stream_id: int
    buffer_ms: int


@attrs.frozen
class PingAnswered:
    """A PingResponse to one of our PingRequests (for round-trip time)."""

    timestamp: int


@attrs.frozen
class AcknowledgementReceived:
    """The peer's Acknowledgement (type 3): it has received ``sequence_number`` bytes.

    The count is the peer's own (modulo 2**32); it tells how much of what we
    sent is still in flight.
    """

    sequence_number: int


@attrs.frozen
class CallReceived:
    """A command the core does not handle itself (``NetConnection.call``...).

    The application answers it, by default with ``_error``.
    """

    stream_id: int
    command: Command


@attrs.frozen
class SharedObjectReceived:
    """A shared object message (type 19 or 16) from the client, decoded."""

    message: SharedObjectMessage


Event = Union[
    HandshakeCompleted,
    ConnectRequested,
    StreamCreated,
    PublishRequested,
    PlayRequested,
    StreamClosed,
    MediaReceived,
    DataReceived,
    ReceiveMediaToggled,
    PauseRequested,
    SeekRequested,
    Play2Requested,
    BufferLengthSet,
    PingAnswered,
    AcknowledgementReceived,
    CallReceived,
    SharedObjectReceived,
]
