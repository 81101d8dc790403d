# -*- test-case-name: tests.rtmp.test_prechunk -*-
"""
Fan-out done once: a message's chunk bytes shared by every player.

Sending one live message to N players used to cost N chunkings of the payload.
A :class:`SharedMessage` is a :class:`~flashstream.rtmp.messages.Message`
that also knows what the fan-out asks of every message -- is it a keyframe, a
codec sequence header -- and builds its *chunk body* at most once per distinct
(outgoing chunk size, chunk stream id): the first chunk's payload followed by
every continuation chunk with its fmt 3 basic header.  That body is the same
for every player using that chunk size and csid, whatever its message stream
id and timestamps; only the first chunk header differs per player, and
:meth:`~flashstream.rtmp.chunks.ChunkWriter.first_header` builds it (a few
bytes).  Players then queue ``[header, body]`` and the adapter hands both to
the socket (one ``sendmsg``) or to ``transport.writeSequence``: no per-player
Python work proportional to the payload size.

The one case the body cannot be shared is a first header carrying an
extended timestamp (a fmt 0 timestamp or fmt 1/2 delta of 0xFFFFFF or more),
because every continuation chunk then repeats those 4 bytes;
``first_header`` returns None and the caller chunks that message alone.

The hub wraps each incoming message once (:func:`share`) before caching and
fanning it out, so the keyframe-group cache holds the same objects and late
joiners reuse the same bodies.
"""

from __future__ import annotations

import attrs

from . import media
from .chunks import ChunkWriter
from .messages import Message, MessageType

__all__ = [
    "AUDIO_CSID",
    "MEDIA_CSIDS",
    "VIDEO_CSID",
    "LockstepWriter",
    "SharedMessage",
    "chunk_body",
    "share",
]

#: The chunk streams live audio and video go out on, to every player.
AUDIO_CSID = 6
VIDEO_CSID = 7
#: Chunk stream per fanned-out message type.
MEDIA_CSIDS = {int(MessageType.AUDIO): AUDIO_CSID, int(MessageType.VIDEO): VIDEO_CSID}
_LOCKSTEP_CSIDS = (AUDIO_CSID, VIDEO_CSID)


def _basic_header(csid: int) -> bytes:
    """A fmt 3 basic header on ``csid`` (2..65599)."""
    if csid < 64:
        return bytes((0xC0 | csid,))
    if csid < 320:
        return bytes((0xC0, csid - 64))
    csid -= 64
    return bytes((0xC1, csid & 0xFF, csid >> 8))


def chunk_body(payload: bytes, chunk_size: int, csid: int) -> bytes:
    """Everything a message's chunks carry after the first chunk header.

    The first ``chunk_size`` payload bytes, then for each further chunk a
    fmt 3 basic header and the next ``chunk_size`` bytes.
    """
    length = len(payload)
    if length <= chunk_size:
        return payload
    continuation = _basic_header(csid)
    view = memoryview(payload)
    parts: list[bytes | memoryview] = [view[:chunk_size]]
    for offset in range(chunk_size, length, chunk_size):
        parts.append(continuation)
        parts.append(view[offset : offset + chunk_size])
    return b"".join(parts)


@attrs.frozen(eq=False)
class SharedMessage(Message):
    """A message fanned out to many players, with its facts and bodies cached."""

    #: A video keyframe (not a sequence header).
    keyframe: bool = attrs.field(default=False, kw_only=True)
    #: An AVC/HEVC/AAC sequence header (decoder configuration).
    sequence_header: bool = attrs.field(default=False, kw_only=True)
    _bodies: dict[tuple[int, int], bytes] = attrs.field(factory=dict, init=False, repr=False)

    def __eq__(self, other: object) -> bool:
        """Equal to any message with the same type, stream, timestamp and payload."""
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.type_id == other.type_id
            and self.stream_id == other.stream_id
            and self.timestamp == other.timestamp
            and self.payload == other.payload
        )

    def __hash__(self) -> int:
        """The hash of the plain :class:`Message` it equals."""
        return hash(self.plain())

    def plain(self) -> Message:
        """The same message as a plain :class:`Message`."""
        return Message(self.type_id, self.stream_id, self.timestamp, self.payload)

    def body(self, chunk_size: int, csid: int) -> bytes:
        """The chunk body for ``chunk_size`` and ``csid``, built once."""
        key = (chunk_size, csid)
        body = self._bodies.get(key)
        if body is None:
            body = self._bodies[key] = chunk_body(self.payload, chunk_size, csid)
        return body


def share(message: Message) -> SharedMessage:
    """Wrap ``message`` for fan-out (a :class:`SharedMessage` is returned as is)."""
    if isinstance(message, SharedMessage):
        return message
    type_id = message.type_id
    payload = message.payload
    sequence_header = media.is_sequence_header(type_id, payload)
    keyframe = type_id == MessageType.VIDEO and not sequence_header and media.is_keyframe(payload)
    return SharedMessage(
        type_id,
        message.stream_id,
        message.timestamp,
        payload,
        keyframe=keyframe,
        sequence_header=sequence_header,
    )


class LockstepWriter:
    """
    Audio and video chunks for every player in one state, built once.

    Players of a live stream that use the same chunk size and message stream
    id, and whose writers remember the same about the audio and video chunk
    streams (:meth:`~flashstream.rtmp.chunks.ChunkWriter.snapshot`), would
    each build the very same first chunk headers for the next messages.  A
    lockstep writer starts from that shared state, builds each header once,
    and collects header and shared body into :attr:`pieces`, which the
    players' connections then send as they are.  Taking the pieces
    (:meth:`take`) leaves the state advanced, so the same players can go on.
    """

    CSIDS = _LOCKSTEP_CSIDS

    def __init__(self, snapshot: tuple[object, ...], stream_id: int) -> None:
        chunk_size = snapshot[0]
        assert isinstance(chunk_size, int)
        self._writer = ChunkWriter(chunk_size)
        self._writer.restore(_LOCKSTEP_CSIDS, snapshot)
        self._chunk_size = chunk_size
        self.stream_id = stream_id
        #: Chunk bytes of the messages added since the last :meth:`take`.
        self.pieces: list[bytes] = []
        #: Messages and payload bytes in :attr:`pieces`.
        self.messages = 0
        self.payload_bytes = 0

    def snapshot(self) -> tuple[object, ...]:
        """The writer state players must have to follow these chunks."""
        return self._writer.snapshot(_LOCKSTEP_CSIDS)

    def add(self, message: SharedMessage) -> bool:
        """Add the chunks of an audio or video ``message``; False if it cannot be.

        False (nothing changed) for other message types and for a first
        header that needs an extended timestamp (its body is not shareable).
        """
        csid = MEDIA_CSIDS.get(message.type_id)
        if csid is None:
            return False
        payload = message.payload
        header = self._writer.first_header(
            csid, message.timestamp, len(payload), message.type_id, self.stream_id
        )
        if header is None:
            return False
        pieces = self.pieces
        pieces.append(header)
        pieces.append(
            message._bodies.get((self._chunk_size, csid)) or message.body(self._chunk_size, csid)
        )
        self.messages += 1
        self.payload_bytes += len(payload)
        return True

    def take(self) -> tuple[list[bytes], int, int]:
        """Hand over ``(pieces, messages, payload bytes)`` and start afresh."""
        out = (self.pieces, self.messages, self.payload_bytes)
        self.pieces = []
        self.messages = self.payload_bytes = 0
        return out
