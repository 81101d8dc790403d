# -*- test-case-name: tests.rtmp.test_chunks -*-
"""
The RTMP chunk stream (reference section 4): bytes to messages and back.

:class:`ChunkReader` takes the bytes a peer sends after the handshake and
returns complete :class:`~flashstream.rtmp.messages.Message` values;
:class:`ChunkWriter` turns messages into chunks.  Neither does I/O.

Reading, the rules that decide interop:

* Basic headers of 1, 2 and 3 bytes are accepted for every chunk stream id
  (csid) 2..65599.  Per-csid state lives in a dict bounded by
  ``Limits.max_chunk_streams``, never in an array indexed by csid.
* fmt 0 carries the absolute timestamp, fmt 1/2 a delta added to the previous
  message's timestamp on the csid.  fmt 3 either continues the message in
  progress or, if there is none, starts a new message whose timestamp is the
  previous one plus "the last delta".  Following the spec (2009 and 2012
  texts alike: "if a Type 3 chunk follows a Type 0 chunk, then the timestamp
  delta for this Type 3 chunk is the same as the timestamp of the Type 0
  chunk") and what ffmpeg (``rtmp_packet_read_one_chunk``) and librtmp
  (``RTMP_ReadPacket``) compute, after a fmt 0 header that delta is the fmt 0
  timestamp itself: fmt 0 at T then fmt 3 gives 2T.  :class:`ChunkWriter`
  therefore never writes fmt 3 for a new message right after fmt 0.
* Timestamps are u32 and wrap mod 2**32.
* A 3-byte timestamp field of ``FF FF FF`` means a u32 follows the message
  header: absolute for fmt 0, a delta for fmt 1/2.  Writers disagree on
  whether fmt 3 chunks governed by such a header repeat those 4 bytes
  (ffmpeg, librtmp 2.4, FMS: yes; old librtmp: no), so the reader peeks: it
  consumes the 4 bytes only if they equal the stored value (the heuristic
  SRS adopted in ossrs/srs PR #4680).  When fewer than 4 bytes are buffered
  it decides as soon as they differ from the stored value's prefix and
  otherwise waits for more bytes.
* A fmt 0/1/2 header on a csid whose message is incomplete discards the
  partial message and starts the new one (OBS does this: ossrs/srs #2523).
* fmt 1/2/3 on a csid never initialised by fmt 0 is a :class:`ChunkError`,
  with one exception copied from SRS (ossrs/srs #98): librtmp sends its
  control messages (``RTMP_SendCtrl``, e.g. a ping response) with a fmt 1
  header, also as the first message on csid 2, so fmt 1 on a fresh csid 2
  is accepted with message stream id 0 and a previous timestamp of 0.
* Set Chunk Size (type 1) and Abort (type 2) are applied as soon as they are
  complete, before the next byte is parsed, and still returned.  A chunk
  size of 0 or with bit 31 set is a :class:`ChunkError`; larger sizes are
  clamped to ``Limits.max_chunk_size``.  That clamp is lossless while the
  limit is at least 0xFFFFFF (the largest message length, so "one chunk per
  message" either way); a smaller limit makes bigger announced sizes
  unreadable.  Nothing is ever allocated by chunk size: payload bytes are
  copied into the partial message as they arrive, so the bytes the reader
  keeps besides partial messages are at most one incomplete chunk header.
"""

from __future__ import annotations

import struct

from flashstream.rtmp.errors import (
    ChunkError,
    LimitExceeded,
    LocalProtocolError,
    RemoteProtocolError,
)
from flashstream.rtmp.limits import Limits
from flashstream.rtmp.messages import (
    CONTROL_CSID,
    DEFAULT_LIMITS,
    Abort,
    Message,
    MessageType,
    SetChunkSize,
    decode_control,
)

__all__ = ["DEFAULT_CHUNK_SIZE", "MAX_CSID", "MIN_CSID", "ChunkReader", "ChunkWriter"]

#: Chunk size of both directions until a Set Chunk Size says otherwise.
DEFAULT_CHUNK_SIZE = 128
#: Smallest and largest chunk stream ids a basic header can carry.
MIN_CSID = 2
MAX_CSID = 65599

_U32_MASK = 0xFFFFFFFF
_EXTENDED = 0xFFFFFF  # 3-byte timestamp field value announcing an extended timestamp
_MAX_LENGTH = 0xFFFFFF  # 3-byte message length field
_MAX_CHUNK_SIZE = 0x7FFFFFFF  # bit 31 must be 0
_SET_CHUNK_SIZE = MessageType.SET_CHUNK_SIZE.value
_ABORT = MessageType.ABORT.value

# fmt 0 header after the basic header: timestamp(3) length(3) type(1), msid(4, LE).
_FMT0_TAIL = struct.Struct(">BHBHB")
# Whole fmt 1 and fmt 2 headers on a one-byte basic header (csid 2..63).
_FMT1 = struct.Struct(">BBHBHB")
_FMT2 = struct.Struct(">BBH")


class _InStream:
    """What the reader remembers about one incoming chunk stream."""

    __slots__ = ("msid", "length", "type_id", "timestamp", "delta", "ext", "partial")

    def __init__(self) -> None:
        self.msid = 0
        self.length = 0
        self.type_id = 0
        #: Timestamp of the message in progress, or of the last one.
        self.timestamp = 0
        #: What a fmt 3 header starting a new message adds to ``timestamp``.
        self.delta = 0
        #: The 4 extended timestamp bytes of the governing fmt 0/1/2 header.
        self.ext: bytes | None = None
        #: Payload received so far of the message in progress, if any.
        self.partial: bytearray | None = None


class ChunkReader:
    """
    Turns the incoming chunk stream into messages (see the module docstring).

    After it has raised a :class:`RemoteProtocolError` the reader's state is
    undefined and further calls raise :class:`LocalProtocolError`: the
    connection must be dropped.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._chunk_size = DEFAULT_CHUNK_SIZE
        self._bytes_received = 0
        self._streams: dict[int, _InStream] = {}
        #: Bytes held in partial messages over all chunk streams.
        self._pending = 0
        #: An incomplete chunk header left over from the previous call.
        self._buffer = b""
        #: The stream whose chunk payload is being received, and how many
        #: bytes of that chunk are still to come.
        self._current: _InStream | None = None
        self._chunk_left = 0
        self._failed = False

    @property
    def chunk_size(self) -> int:
        """The chunk size the peer currently uses (starts at 128)."""
        return self._chunk_size

    @property
    def bytes_received(self) -> int:
        """All bytes passed to :meth:`receive_data` so far (not wrapped)."""
        return self._bytes_received

    def receive_data(self, data: bytes) -> list[Message]:
        """Parse ``data`` and return every message it completes, in order."""
        if self._failed:
            raise LocalProtocolError("ChunkReader used after a protocol error")
        self._bytes_received += len(data)
        buf = self._buffer + data if self._buffer else bytes(data)
        out: list[Message] = []
        try:
            self._parse(buf, out)
        except RemoteProtocolError:
            self._failed = True
            raise
        return out

    def _parse(self, buf: bytes, out: list[Message]) -> None:
        limits = self._limits
        max_message_size = limits.max_message_size
        streams = self._streams
        end = len(buf)
        pos = start = 0
        cur = self._current
        chunk_left = self._chunk_left
        while True:
            if cur is not None:
                # Inside a chunk's payload: copy what is there.
                n = end - pos
                if n > chunk_left:
                    n = chunk_left
                partial = cur.partial
                assert partial is not None
                partial += buf[pos : pos + n]
                pos += n
                chunk_left -= n
                self._pending += n
                if self._pending > limits.max_pending_bytes:
                    raise LimitExceeded(
                        "max_pending_bytes", self._pending, limits.max_pending_bytes
                    )
                if len(partial) == cur.length:
                    cur.partial = None
                    self._pending -= cur.length
                    type_id = cur.type_id
                    payload = bytes(partial)
                    out.append(Message(type_id, cur.msid, cur.timestamp, payload))
                    if _SET_CHUNK_SIZE <= type_id <= _ABORT:
                        self._apply(type_id, payload)
                if chunk_left:
                    break  # out of bytes in the middle of the chunk
                cur = None

            # A chunk header: basic header first.
            start = pos
            if pos >= end:
                break
            b0 = buf[pos]
            fmt = b0 >> 6
            csid = b0 & 0x3F
            p = pos + 1
            if csid == 0:
                if p >= end:
                    break
                csid = 64 + buf[p]
                p += 1
            elif csid == 1:
                if p + 1 >= end:
                    break
                csid = 64 + buf[p] + (buf[p + 1] << 8)
                p += 2
            st = streams.get(csid)

            if fmt == 3:
                if st is None:
                    raise ChunkError(f"fmt 3 chunk on uninitialised chunk stream {csid}")
                ext = st.ext
                if ext is not None:
                    # The SRS peek: consume the repeated extended timestamp
                    # only if it is there.
                    avail = end - p
                    if avail >= 4:
                        if buf[p : p + 4] == ext:
                            p += 4
                    elif buf[p:end] == ext[:avail]:
                        break  # cannot tell yet
                if st.partial is None:
                    st.timestamp = (st.timestamp + st.delta) & _U32_MASK
            elif fmt == 0:
                if p + 11 > end:
                    break
                ts_hi, ts_lo, len_hi, len_lo, type_id = _FMT0_TAIL.unpack_from(buf, p)
                timestamp = (ts_hi << 16) | ts_lo
                length = (len_hi << 16) | len_lo
                msid = int.from_bytes(buf[p + 7 : p + 11], "little")
                p += 11
                ext = None
                if timestamp == _EXTENDED:
                    if p + 4 > end:
                        break
                    ext = buf[p : p + 4]
                    timestamp = int.from_bytes(ext, "big")
                    p += 4
                if length > max_message_size:
                    raise LimitExceeded("max_message_size", length, max_message_size)
                if st is None:
                    st = self._new_stream(csid)
                else:
                    self._discard(st)
                st.msid = msid
                st.length = length
                st.type_id = type_id
                st.timestamp = timestamp
                st.delta = timestamp
                st.ext = ext
            else:
                need = 7 if fmt == 1 else 3
                if p + need > end:
                    break
                delta = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2]
                if fmt == 1:
                    length = (buf[p + 3] << 16) | (buf[p + 4] << 8) | buf[p + 5]
                    type_id = buf[p + 6]
                p += need
                ext = None
                if delta == _EXTENDED:
                    if p + 4 > end:
                        break
                    ext = buf[p : p + 4]
                    delta = int.from_bytes(ext, "big")
                    p += 4
                if st is None:
                    if fmt == 1 and csid == CONTROL_CSID:
                        st = self._new_stream(csid)  # librtmp's RTMP_SendCtrl
                    else:
                        raise ChunkError(f"fmt {fmt} chunk on uninitialised chunk stream {csid}")
                if fmt == 1:
                    if length > max_message_size:
                        raise LimitExceeded("max_message_size", length, max_message_size)
                    st.length = length
                    st.type_id = type_id
                self._discard(st)
                st.timestamp = (st.timestamp + delta) & _U32_MASK
                st.delta = delta
                st.ext = ext
            pos = p

            # The chunk's payload.
            partial = st.partial
            if partial is None:
                length = st.length
                if length <= self._chunk_size and end - pos >= length:
                    # Fast path: a whole single-chunk message is here.
                    type_id = st.type_id
                    payload = buf[pos : pos + length]
                    pos += length
                    out.append(Message(type_id, st.msid, st.timestamp, payload))
                    if _SET_CHUNK_SIZE <= type_id <= _ABORT:
                        self._apply(type_id, payload)
                    continue
                st.partial = bytearray()
                chunk_left = min(length, self._chunk_size)
            else:
                chunk_left = min(st.length - len(partial), self._chunk_size)
            cur = st

        self._current = cur
        self._chunk_left = chunk_left
        self._buffer = buf[start:] if cur is None else b""

    def _new_stream(self, csid: int) -> _InStream:
        maximum = self._limits.max_chunk_streams
        if len(self._streams) >= maximum:
            raise LimitExceeded("max_chunk_streams", len(self._streams) + 1, maximum)
        st = self._streams[csid] = _InStream()
        return st

    def _discard(self, st: _InStream) -> None:
        """Drop the partial message of ``st``, if any."""
        if st.partial is not None:
            self._pending -= len(st.partial)
            st.partial = None

    def _apply(self, type_id: int, payload: bytes) -> None:
        """Act on a Set Chunk Size (1) or Abort (2) message just completed."""
        control = decode_control(Message(type_id, 0, 0, payload))
        if isinstance(control, SetChunkSize):
            size = control.size
            if size == 0 or size > _MAX_CHUNK_SIZE:
                raise ChunkError(f"invalid chunk size {size:#x}")
            self._chunk_size = min(size, self._limits.max_chunk_size)
        elif isinstance(control, Abort):
            st = self._streams.get(control.chunk_stream_id)
            if st is not None:
                self._discard(st)


class _OutStream:
    """What the writer remembers about one outgoing chunk stream."""

    __slots__ = ("msid", "type_id", "length", "timestamp", "delta", "ext")

    def __init__(self) -> None:
        self.msid = 0
        self.type_id = 0
        self.length = 0
        self.timestamp = 0
        #: The delta of the last fmt 1/2 header; None right after fmt 0,
        #: where a fmt 3 new message would mean "add the fmt 0 timestamp".
        self.delta: int | None = None
        #: Extended timestamp bytes repeated in fmt 3 chunks, if any.
        self.ext = b""


def _basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes(((fmt << 6) | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    csid -= 64
    return bytes(((fmt << 6) | 1, csid & 0xFF, csid >> 8))


class ChunkWriter:
    """
    Turns messages into chunks (reference sections 4.1-4.3).

    Header choice per csid: fmt 0 for the first message, a changed message
    stream id or a timestamp that goes backwards (including a wrap past
    2**32); otherwise fmt 1 when the type or length changes, fmt 2 when they
    repeat, and fmt 3 when the delta also equals that of the previous fmt
    1/2/3 header (never straight after fmt 0).  Continuation chunks are fmt
    3.  A timestamp or delta of 0xFFFFFF or more goes in an extended
    timestamp, which every fmt 3 chunk governed by that header repeats (as
    ffmpeg, FMS and the 2012 spec do).
    """

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self._chunk_size = DEFAULT_CHUNK_SIZE
        self.set_chunk_size(chunk_size)
        self._streams: dict[int, _OutStream] = {}

    @property
    def chunk_size(self) -> int:
        """The chunk size used for the chunks written from now on."""
        return self._chunk_size

    def set_chunk_size(self, size: int) -> None:
        """
        Use ``size`` for the following chunks.  Send the Set Chunk Size
        message first (it goes out with the old size), then call this.
        """
        if not 1 <= size <= _MAX_CHUNK_SIZE:
            raise LocalProtocolError(f"invalid chunk size {size}")
        self._chunk_size = size

    def write(self, message: Message, csid: int) -> bytes:
        """Return the chunks carrying ``message`` on chunk stream ``csid``."""
        if not MIN_CSID <= csid <= MAX_CSID:
            raise LocalProtocolError(f"chunk stream id {csid} out of range 2..65599")
        payload = message.payload
        length = len(payload)
        type_id = message.type_id
        msid = message.stream_id
        timestamp = message.timestamp
        if length > _MAX_LENGTH:
            raise LocalProtocolError(f"message of {length} bytes exceeds 0xFFFFFF")
        if not 0 <= type_id <= 0xFF:
            raise LocalProtocolError(f"message type {type_id} out of range")
        if not 0 <= msid <= _U32_MASK:
            raise LocalProtocolError(f"message stream id {msid} out of range")
        if not 0 <= timestamp <= _U32_MASK:
            raise LocalProtocolError(f"timestamp {timestamp} out of range")

        header, st = self._first_header(csid, timestamp, length, type_id, msid)
        chunk_size = self._chunk_size
        if length <= chunk_size:
            return header + payload
        continuation = _basic_header(3, csid) + st.ext
        view = memoryview(payload)
        parts: list[bytes | memoryview] = [header, view[:chunk_size]]
        for offset in range(chunk_size, length, chunk_size):
            parts.append(continuation)
            parts.append(view[offset : offset + chunk_size])
        return b"".join(parts)

    def snapshot(self, csids: tuple[int, ...]) -> tuple[object, ...]:
        """What the writer remembers of ``csids``, as a comparable value.

        Two writers with equal snapshots of a csid choose the same header
        for the same next message on it (:mod:`flashstream.rtmp.prechunk`'s
        :class:`~flashstream.rtmp.prechunk.LockstepWriter` relies on this).
        """
        out: list[object] = [self._chunk_size]
        for csid in csids:
            st = self._streams.get(csid)
            out.append(
                None
                if st is None
                else (st.msid, st.type_id, st.length, st.timestamp, st.delta, st.ext)
            )
        return tuple(out)

    def restore(self, csids: tuple[int, ...], snapshot: tuple[object, ...]) -> None:
        """Make ``csids`` remember what ``snapshot`` (of the same csids) says."""
        for csid, saved in zip(csids, snapshot[1:], strict=True):
            if saved is None:
                self._streams.pop(csid, None)
                continue
            st = self._streams.get(csid)
            if st is None:
                st = self._streams[csid] = _OutStream()
            st.msid, st.type_id, st.length, st.timestamp, st.delta, st.ext = saved  # type: ignore[misc]

    def first_header(
        self, csid: int, timestamp: int, length: int, type_id: int, msid: int
    ) -> bytes | None:
        """
        The first chunk header of a message whose chunk body is shared
        (:mod:`flashstream.rtmp.prechunk`), with the csid's state advanced
        as :meth:`write` would.  Returns None, changing nothing, when the
        header needs an extended timestamp (continuation chunks would then
        repeat it, so the body cannot be shared): use :meth:`write`.

        The caller vouches for the ranges :meth:`write` checks (the hub only
        forwards messages the chunk reader produced).
        """
        st = self._streams.get(csid)
        if st is None or st.msid != msid or timestamp < st.timestamp:
            if timestamp >= _EXTENDED:
                return None
            if st is None:
                st = self._streams[csid] = _OutStream()
            header = self._header(st, 0, csid, timestamp, length, type_id, msid)
            st.delta = None
        else:
            # One pass for the fan-out's common headers (fmt 1/2/3, no
            # extended timestamp), the same choice _first_header makes.
            delta = timestamp - st.timestamp
            if type_id != st.type_id or length != st.length:
                if delta >= _EXTENDED:
                    return None
                if csid < 64:
                    st.ext = b""
                    header = _FMT1.pack(
                        0x40 | csid,
                        delta >> 16,
                        delta & 0xFFFF,
                        length >> 16,
                        length & 0xFFFF,
                        type_id,
                    )
                else:
                    header = self._header(st, 1, csid, delta, length, type_id, msid)
            elif delta != st.delta:
                if delta >= _EXTENDED:
                    return None
                if csid < 64:
                    st.ext = b""
                    header = _FMT2.pack(0x80 | csid, delta >> 16, delta & 0xFFFF)
                else:
                    header = self._header(st, 2, csid, delta, length, type_id, msid)
            elif st.ext:
                return None
            else:
                header = _basic_header(3, csid)
            st.delta = delta
        st.msid = msid
        st.type_id = type_id
        st.length = length
        st.timestamp = timestamp
        return header

    def _first_header(
        self, csid: int, timestamp: int, length: int, type_id: int, msid: int
    ) -> tuple[bytes, _OutStream]:
        """Choose and build a message's first chunk header; advance the csid state."""
        st = self._streams.get(csid)
        if st is None or st.msid != msid or timestamp < st.timestamp:
            if st is None:
                st = self._streams[csid] = _OutStream()
            header = self._header(st, 0, csid, timestamp, length, type_id, msid)
            st.delta = None
        else:
            delta = timestamp - st.timestamp
            if type_id != st.type_id or length != st.length:
                header = self._header(st, 1, csid, delta, length, type_id, msid)
            elif delta != st.delta:
                header = self._header(st, 2, csid, delta, length, type_id, msid)
            else:
                header = _basic_header(3, csid) + st.ext
            st.delta = delta
        st.msid = msid
        st.type_id = type_id
        st.length = length
        st.timestamp = timestamp
        return header, st

    @staticmethod
    def _header(
        st: _OutStream, fmt: int, csid: int, value: int, length: int, type_id: int, msid: int
    ) -> bytes:
        """
        Build a fmt 0/1/2 chunk header carrying ``value`` (the timestamp for
        fmt 0, the delta for fmt 1/2) and remember its extended timestamp.
        """
        if value >= _EXTENDED:
            st.ext = value.to_bytes(4, "big")
            value = _EXTENDED
        else:
            st.ext = b""
        header = _basic_header(fmt, csid)
        if fmt == 2:
            header += value.to_bytes(3, "big")
        else:
            header += _FMT0_TAIL.pack(
                value >> 16, value & 0xFFFF, length >> 16, length & 0xFFFF, type_id
            )
            if fmt == 0:
                header += msid.to_bytes(4, "little")
        return header + st.ext
