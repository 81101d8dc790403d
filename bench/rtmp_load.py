"""
A cheap RTMP load client for the benchmarks: one asyncio process holding a
synthetic publisher and many players.

The publisher loops a pre-encoded FLV clip (H.264 + AAC) with rising
timestamps at wall-clock pace, using flashstream's own sans-IO chunk writer
and AMF0 command encoder.  Before writing each video message it notes the
wall-clock send time in :attr:`Publisher.sent_at`, keyed by the message
timestamp, so players in the same process can measure publisher-to-player
latency.

A :class:`Player` does only what a player must: a plain handshake, connect,
createStream, play (pipelined), acknowledgements and ping responses.  It parses
chunk headers just enough to follow message boundaries and timestamps, and
skips payloads without copying them (only Set Chunk Size and User Control
payloads are read).  It counts bytes and video frames and keeps the newest
video timestamp.  It counts its reads (``data_received`` calls) too.

Two options make many players cheap to run in one process (the benchmark
records which were used):

* ``rcvlowat``: once a player's first video frame arrived, its socket gets
  ``SO_RCVLOWAT`` so the kernel wakes it only when that many bytes wait (Linux
  epoll honours it for TCP).  Fewer, larger reads; each message is seen later
  by at most the time the server takes to send that many bytes, so it must not
  be used where latency is measured.
* :func:`event_loop_factory`: uvloop's event loop if it is importable.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flashstream.rtmp import commands as cmd  # noqa: E402
from flashstream.rtmp import messages as msg  # noqa: E402
from flashstream.rtmp.chunks import ChunkWriter  # noqa: E402
from flashstream.rtmp.messages import Message, MessageType  # noqa: E402

AUDIO = 8
VIDEO = 9
SCRIPT = 18

HANDSHAKE_SIZE = 1536


# -- the clip ------------------------------------------------------------------


@dataclass
class Tag:
    """One FLV tag: type (8/9/18), timestamp in ms, payload."""

    type_id: int
    timestamp: int
    payload: bytes


@dataclass
class Clip:
    """A parsed FLV clip: sequence headers apart, frames in order."""

    headers: list[Tag]
    frames: list[Tag]
    duration_ms: int

    @property
    def bitrate(self) -> float:
        """Average media bit rate of the frames (bits per second)."""
        total = sum(len(tag.payload) for tag in self.frames)
        return total * 8 * 1000 / self.duration_ms


def read_flv(path: Path) -> Clip:
    """Parse an FLV file into tags (metadata dropped, sequence headers apart)."""
    data = path.read_bytes()
    if data[:3] != b"FLV":
        raise ValueError(f"{path} is not FLV")
    pos = struct.unpack(">I", data[5:9])[0] + 4
    headers: list[Tag] = []
    frames: list[Tag] = []
    while pos + 11 <= len(data):
        type_id = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        timestamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        payload = data[pos + 11 : pos + 11 + size]
        pos += 11 + size + 4
        if len(payload) < size:
            break
        if type_id == VIDEO and len(payload) > 1 and payload[1] == 0 and payload[0] & 0x0F == 7:
            headers.append(Tag(type_id, 0, payload))
        elif type_id == AUDIO and len(payload) > 1 and payload[0] >> 4 == 10 and payload[1] == 0:
            headers.append(Tag(type_id, 0, payload))
        elif type_id in (AUDIO, VIDEO) and payload:
            frames.append(Tag(type_id, timestamp, payload))
    video = [tag.timestamp for tag in frames if tag.type_id == VIDEO]
    step = (video[-1] - video[0]) // max(1, len(video) - 1)
    duration = max(tag.timestamp for tag in frames) + step
    return Clip(headers, frames, duration)


def make_clip(path: Path, seconds: int = 10) -> None:
    """Encode a 720p30 H.264 + AAC clip at about 2.5 Mbit/s with ffmpeg."""
    import subprocess

    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
            "-t", str(seconds),
            # Noise keeps the encoder at its target rate (test patterns compress too well).
            "-vf", "noise=alls=12:allf=t",
            "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main",
            "-b:v", "2350k", "-maxrate", "2350k", "-bufsize", "2350k",
            "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "128k", "-ar", "44100",
            "-f", "flv", str(path),
        ],
        check=True,
    )  # fmt: skip


# -- client side of the protocol ----------------------------------------------------


def c0c1() -> bytes:
    """C0 + a plain C1 (version 0: no digest, as librtmp sends)."""
    return b"\x03" + bytes(8) + os.urandom(HANDSHAKE_SIZE - 8)


def _command(
    writer: ChunkWriter, stream_id: int, csid: int, name: str, txn: float, *args: object
) -> bytes:
    payload = cmd.encode_command(cmd.Command(name, txn, None, tuple(args)))
    return writer.write(Message(MessageType.COMMAND_AMF0, stream_id, 0, payload), csid)


def _connect(writer: ChunkWriter, app: str, port: int) -> bytes:
    properties = {
        "app": app,
        "flashVer": "LNX 9,0,124,2",
        "tcUrl": f"rtmp://127.0.0.1:{port}/{app}",
        "fpad": False,
        "capabilities": 15.0,
        "audioCodecs": 4071.0,
        "videoCodecs": 252.0,
        "videoFunction": 1.0,
    }
    payload = cmd.encode_command(cmd.Command("connect", 1.0, properties, ()))
    return writer.write(Message(MessageType.COMMAND_AMF0, 0, 0, payload), 3)


class _ChunkFollower:
    """
    Follows an incoming chunk stream: message boundaries, types, timestamps.

    Calls ``on_message(type_id, timestamp, length, payload_or_None)`` for each
    completed message; the payload is only collected for control types 1..6.
    """

    __slots__ = ("chunk_size", "streams", "rest", "cur", "chunk_left", "collect", "on_message")

    def __init__(self, on_message: Callable[[int, int, int, bytes | None], None]) -> None:
        self.chunk_size = 128
        # csid -> [type_id, length, timestamp, delta, remaining, ext]
        self.streams: dict[int, list] = {}
        self.rest = b""
        self.cur: list | None = None
        self.chunk_left = 0
        self.collect: bytearray | None = None
        self.on_message = on_message

    def feed(self, data: bytes) -> None:
        buf = self.rest + data if self.rest else data
        self.rest = b""
        end = len(buf)
        pos = 0
        start = 0
        cur = self.cur
        chunk_left = self.chunk_left
        collect = self.collect
        chunk_size = self.chunk_size
        streams = self.streams
        on_message = self.on_message
        while True:
            if cur is not None:
                # The body of the current chunk: skip it (or collect a control payload).
                if end - pos < chunk_left:
                    if collect is not None:
                        collect += buf[pos:end]
                    cur[4] -= end - pos
                    chunk_left -= end - pos
                    pos = end
                    break
                if collect is not None:
                    collect += buf[pos : pos + chunk_left]
                pos += chunk_left
                left = cur[4] - chunk_left
                cur[4] = left
                chunk_left = 0
                if not left:
                    if collect is not None:
                        payload = bytes(collect)
                        collect = None
                        if cur[0] == 1:
                            chunk_size = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                        on_message(cur[0], cur[2], cur[1], payload)
                    else:
                        on_message(cur[0], cur[2], cur[1], None)
                cur = None
            start = pos
            if pos >= end:
                break
            b0 = buf[pos]
            fmt = b0 >> 6
            csid = b0 & 0x3F
            p = pos + 1
            if csid < 2:
                if csid == 0:
                    if p >= end:
                        break
                    csid = 64 + buf[p]
                    p += 1
                else:
                    if p + 1 >= end:
                        break
                    csid = 64 + buf[p] + (buf[p + 1] << 8)
                    p += 2
            st = streams.get(csid)
            if fmt == 3:
                # The common case: a continuation chunk (or a repeat of the last header).
                if st is None:
                    raise ValueError(f"fmt 3 on fresh csid {csid}")
                if st[5]:
                    if p + 4 > end:
                        break
                    p += 4
                if st[4]:
                    pos = p
                    chunk_left = st[4] if st[4] < chunk_size else chunk_size
                    cur = st
                    continue
                st[2] = (st[2] + st[3]) & 0xFFFFFFFF
                st[4] = st[1]
            elif fmt == 0:
                if p + 11 > end:
                    break
                ts = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2]
                length = (buf[p + 3] << 16) | (buf[p + 4] << 8) | buf[p + 5]
                type_id = buf[p + 6]
                p += 11
                ext = 0
                if ts == 0xFFFFFF:
                    if p + 4 > end:
                        break
                    ts = int.from_bytes(buf[p : p + 4], "big")
                    p += 4
                    ext = 1
                if st is None:
                    st = streams[csid] = [type_id, length, ts, ts, length, ext]
                else:
                    st[0] = type_id
                    st[1] = length
                    st[2] = ts
                    st[3] = ts
                    st[4] = length
                    st[5] = ext
            else:
                if p + (7 if fmt == 1 else 3) > end:
                    break
                delta = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2]
                if st is None:
                    st = streams[csid] = [0, 0, 0, 0, 0, 0]
                if fmt == 1:
                    st[1] = (buf[p + 3] << 16) | (buf[p + 4] << 8) | buf[p + 5]
                    st[0] = buf[p + 6]
                    p += 7
                else:
                    p += 3
                ext = 0
                if delta == 0xFFFFFF:
                    if p + 4 > end:
                        break
                    delta = int.from_bytes(buf[p : p + 4], "big")
                    p += 4
                    ext = 1
                st[2] = (st[2] + delta) & 0xFFFFFFFF
                st[3] = delta
                st[4] = st[1]
                st[5] = ext
            # The first chunk of a message.
            pos = p
            cur = st
            chunk_left = st[4] if st[4] < chunk_size else chunk_size
            if 1 <= st[0] <= 6:
                collect = bytearray()
            if not chunk_left:  # an empty message
                on_message(st[0], st[2], 0, b"" if collect is not None else None)
                collect = None
                cur = None
        self.cur = cur
        self.chunk_left = chunk_left
        self.collect = collect
        self.chunk_size = chunk_size
        if cur is None and start < end:
            self.rest = buf[start:]


class _Base(asyncio.Protocol):
    """Handshake, then hand chunks to a follower; send acks and ping answers."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.handshake = b""
        self.streaming = False
        self.bytes = 0
        self.reads = 0
        self.follower = _ChunkFollower(self._message)
        self.writer = ChunkWriter()
        self.window = 0
        self.acked = 0
        self.closed = asyncio.get_event_loop().create_future()
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(c0c1())  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)

    def data_received(self, data: bytes) -> None:
        self.bytes += len(data)
        self.reads += 1
        if not self.streaming:
            self.handshake += data
            if len(self.handshake) < 1 + 2 * HANDSHAKE_SIZE:
                return
            s1 = self.handshake[1 : 1 + HANDSHAKE_SIZE]
            data = self.handshake[1 + 2 * HANDSHAKE_SIZE :]
            self.handshake = b""
            self.streaming = True
            assert self.transport is not None
            self.transport.write(s1 + self.after_handshake())
            if not data:
                return
        try:
            self.follower.feed(data)
        except ValueError as error:
            self.error = str(error)
            assert self.transport is not None
            self.transport.close()
            return
        if self.window and self.bytes - self.acked >= self.window:
            self.acked = self.bytes
            self._send(msg.encode_control(msg.Acknowledgement(self.bytes % 2**32)), 2)

    def _send(self, message: Message, csid: int) -> None:
        assert self.transport is not None
        self.transport.write(self.writer.write(message, csid))

    def _message(self, type_id: int, timestamp: int, length: int, payload: bytes | None) -> None:
        if type_id == 5 and payload is not None:
            self.window = struct.unpack(">I", payload[:4])[0]
        elif type_id == 4 and payload is not None and payload[:2] == b"\x00\x06":
            self._send(
                msg.encode_control(msg.PingResponse(struct.unpack(">I", payload[2:6])[0])), 2
            )
        else:
            self.on_message(type_id, timestamp, length)

    def after_handshake(self) -> bytes:
        raise NotImplementedError

    def on_message(self, type_id: int, timestamp: int, length: int) -> None:
        """A non-control message arrived (type, timestamp, length)."""


@dataclass
class Stats:
    """What a player counted (reset by the benchmark between windows)."""

    frames: int = 0
    last_video: int = -1
    first_video: int = -1
    latencies: list[float] | None = None
    misses: int = 0


class Player(_Base):
    """
    A cheap player of ``app/name``: counts bytes, frames and latency.

    ``rcvlowat`` (bytes, 0 for none) is set as the socket's ``SO_RCVLOWAT``
    when the first video frame arrives (not before: the handshake and the
    command replies are smaller than that).
    """

    def __init__(
        self, app: str, name: str, port: int, sent_at: dict[int, float], rcvlowat: int = 0
    ) -> None:
        super().__init__()
        self.app = app
        self.name = name
        self.port = port
        self.sent_at = sent_at
        self.rcvlowat = rcvlowat
        self.stats = Stats()
        self.started = asyncio.get_event_loop().create_future()
        self._waiting = True

    def after_handshake(self) -> bytes:
        w = self.writer
        return (
            _connect(w, self.app, self.port)
            + w.write(msg.encode_control(msg.WindowAckSize(2_500_000)), 2)
            + _command(w, 0, 3, "createStream", 2.0)
            + _command(w, 1, 8, "play", 0.0, self.name, -1000.0)
            + w.write(msg.encode_control(msg.SetBufferLength(1, 100)), 2)
        )

    def set_rcvlowat(self, size: int) -> None:
        """Set the socket's ``SO_RCVLOWAT`` (1: wake on any data), once playing."""
        if self._waiting or self.transport is None or self.transport.is_closing():
            return
        sock = self.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)

    def _message(self, type_id: int, timestamp: int, length: int, payload: bytes | None) -> None:
        # Audio, the most frequent message, needs nothing: one call less per message.
        if type_id == VIDEO:
            self.on_message(type_id, timestamp, length)
        elif type_id != AUDIO:
            super()._message(type_id, timestamp, length, payload)

    def on_message(self, type_id: int, timestamp: int, length: int) -> None:
        if type_id != VIDEO:
            return
        stats = self.stats
        stats.frames += 1
        if timestamp > stats.last_video:
            stats.last_video = timestamp
        if stats.first_video < 0:
            stats.first_video = timestamp
        if self._waiting:
            self._waiting = False
            if not self.started.done():
                self.started.set_result(None)
            if self.rcvlowat:
                self.set_rcvlowat(self.rcvlowat)
        if stats.latencies is not None:
            sent = self.sent_at.get(timestamp)
            if sent is None:
                stats.misses += 1
            else:
                stats.latencies.append(time.perf_counter() - sent)


class Publisher(_Base):
    """Publishes ``clip`` on ``app/name`` in a loop at wall-clock pace."""

    def __init__(self, app: str, name: str, port: int, clip: Clip) -> None:
        super().__init__()
        self.app = app
        self.name = name
        self.port = port
        self.clip = clip
        self.ready = asyncio.get_event_loop().create_future()
        #: Video timestamp -> perf_counter() when it was written.
        self.sent_at: dict[int, float] = {}
        self.last_video = -1
        self.video_sent = 0
        self.bytes_sent = 0
        self._task: asyncio.Task[None] | None = None
        self._seen = b""

    def after_handshake(self) -> bytes:
        w = self.writer
        out = w.write(msg.encode_control(msg.SetChunkSize(4096)), 2)
        w.set_chunk_size(4096)
        return (
            out
            + _connect(w, self.app, self.port)
            + _command(w, 0, 3, "releaseStream", 2.0, self.name)
            + _command(w, 0, 3, "FCPublish", 3.0, self.name)
            + _command(w, 0, 3, "createStream", 4.0)
            + _command(w, 1, 8, "publish", 0.0, self.name, "live")
        )

    def data_received(self, data: bytes) -> None:
        if not self.ready.done():
            self._seen = (self._seen + data)[-8192:]
            if b"NetStream.Publish.Start" in self._seen:
                self.ready.set_result(None)
        super().data_received(data)

    def start(self) -> None:
        """Send the sequence headers and start the paced loop."""
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        """Stop publishing and close."""
        if self._task is not None:
            self._task.cancel()
        if self.transport is not None:
            self.transport.close()

    async def _run(self) -> None:
        assert self.transport is not None
        transport = self.transport
        w = self.writer
        for tag in self.clip.headers:
            transport.write(
                w.write(Message(tag.type_id, 1, 0, tag.payload), 4 if tag.type_id == VIDEO else 5)
            )
        origin = time.perf_counter()
        base = 0
        frames = self.clip.frames
        perf = time.perf_counter
        sent_at = self.sent_at
        while True:
            for tag in frames:
                timestamp = base + tag.timestamp
                delay = origin + timestamp / 1000 - perf()
                if delay > 0:
                    await asyncio.sleep(delay)
                data = w.write(
                    Message(tag.type_id, 1, timestamp, tag.payload),
                    4 if tag.type_id == VIDEO else 5,
                )
                if tag.type_id == VIDEO:
                    sent_at[timestamp] = perf()
                    self.last_video = timestamp
                    self.video_sent += 1
                transport.write(data)
                self.bytes_sent += len(data)
            base += self.clip.duration_ms


@dataclass
class Crowd:
    """Players started together."""

    players: list[Player] = field(default_factory=list)

    async def drain(self, seconds: float = 0.05) -> None:
        """
        Let every playing player read what waits below its ``SO_RCVLOWAT``.

        Wakes them on any data for ``seconds``, then restores their own
        ``rcvlowat``: call it just before reading or resetting their stats, so
        that the counts are as fresh as an eager reader's.
        """
        lowat = [p for p in self.players if p.rcvlowat]
        if not lowat:
            return
        for player in lowat:
            player.set_rcvlowat(1)
        await asyncio.sleep(seconds)
        for player in lowat:
            player.set_rcvlowat(player.rcvlowat)

    def close(self) -> None:
        for player in self.players:
            if player.transport is not None:
                player.transport.close()


async def open_players(
    count: int,
    port: int,
    app: str,
    name: str,
    sent_at: dict[int, float],
    batch: int = 50,
    rcvlowat: int = 0,
) -> Crowd:
    """Connect ``count`` players, ``batch`` handshakes at a time."""
    loop = asyncio.get_event_loop()
    crowd = Crowd()
    for first in range(0, count, batch):
        made = await asyncio.gather(
            *(
                loop.create_connection(
                    lambda: Player(app, name, port, sent_at, rcvlowat), "127.0.0.1", port
                )
                for _ in range(min(batch, count - first))
            )
        )
        crowd.players.extend(protocol for _, protocol in made)
    return crowd


def event_loop_factory(kind: str = "auto") -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """
    The event loop to run the load client on, and its name.

    ``kind`` is ``"asyncio"``, ``"uvloop"`` (which must be importable) or
    ``"auto"`` (uvloop if importable, else asyncio's default loop).
    """
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return f"uvloop {uvloop.__version__}", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop
