# -*- test-case-name: tests.test_qos -*-
"""
Quality-of-service figures: per connection, per live stream, for the server.

:class:`QosMonitor` samples byte counters on the injected clock every
``sample_interval`` seconds and turns them into current bitrates over a
sliding ``rate_window``; it sends every client a PingRequest every
``ping_interval`` seconds (the answer sets the connection's ``rtt_ms``); and
it taps the hub to learn each stream's codecs, resolution, frame rate,
audio/video bitrates and keyframe interval from the media itself (metadata
fills the gaps).  The ``clients()``, ``streams()`` and ``server()`` snapshots
are plain JSON-ready dicts for the API, the dashboard and the metrics.

HTTP-FLV viewers register here too (:class:`HTTPClient`), so a stream's
viewers are counted per transport whatever they came in by.
"""

from __future__ import annotations

import resource
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from . import __version__
from .config import QosConfig
from .hub import Publication, StreamHub
from .rtmp import commands, media
from .rtmp.connection import StreamMode
from .rtmp.errors import RemoteProtocolError
from .rtmp.messages import Message, MessageType

if TYPE_CHECKING:
    from .protocol import RTMPServerFactory, RTMPServerProtocol


class HTTPClient(Protocol):
    """A viewer that is not an RTMP connection (HTTP-FLV)."""

    client_id: int
    peer: str
    app_name: str
    stream_name: str
    transport_name: str
    user_agent: str
    connected_at: float
    bytes_sent: int
    frames_dropped: int

    def goodbye(self, reason: str) -> None:
        """End this viewer's stream and close its connection, logging ``reason``."""


class Rate:
    """Bits per second of a growing counter over a sliding window of samples."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, now: float, total: int) -> None:
        """Record the counter's value at ``now``; forget samples older than the window."""
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def per_second(self) -> float:
        """Counter units per second between the oldest and newest sample (0 if unknown)."""
        if len(self._samples) < 2:
            return 0.0
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return 0.0
        return max(0, v1 - v0) / (t1 - t0)

    def bits_per_second(self) -> float:
        """``per_second`` of a byte counter, in bits."""
        return self.per_second() * 8


@attrs.define
class StreamStats:
    """What the hub tap learnt about one publication."""

    window: float
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int | None = None
    height: int | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    video_bytes: int = 0
    audio_bytes: int = 0
    video_frames: int = 0
    keyframes: int = 0
    last_keyframe_ms: int | None = None
    keyframe_interval_ms: int | None = None
    video_rate: Rate = attrs.field(init=False)
    audio_rate: Rate = attrs.field(init=False)
    frame_rate: Rate = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.video_rate = Rate(self.window)
        self.audio_rate = Rate(self.window)
        self.frame_rate = Rate(self.window)

    def take(self, message: Message) -> None:
        """Learn from one published message."""
        payload = message.payload
        if message.type_id == MessageType.VIDEO and payload:
            self.video_codec = media.video_codec(payload) or self.video_codec
            if media.is_video_sequence_header(payload):
                size = media.avc_dimensions(payload)
                if size is not None:
                    self.width, self.height = size
                return
            self.video_bytes += len(payload)
            self.video_frames += 1
            if media.is_keyframe(payload):
                self.keyframes += 1
                if self.last_keyframe_ms is not None:
                    interval = (message.timestamp - self.last_keyframe_ms) % 2**32
                    if interval < 2**31:
                        self.keyframe_interval_ms = interval
                self.last_keyframe_ms = message.timestamp
        elif message.type_id == MessageType.AUDIO and payload:
            self.audio_codec = media.audio_codec(payload) or self.audio_codec
            if media.is_audio_sequence_header(payload):
                config = media.aac_config(payload)
                if config is not None:
                    self.audio_sample_rate, self.audio_channels = config
                return
            self.audio_bytes += len(payload)

    def sample(self, now: float) -> None:
        """Feed the rate windows."""
        self.video_rate.sample(now, self.video_bytes)
        self.audio_rate.sample(now, self.audio_bytes)
        self.frame_rate.sample(now, self.video_frames)


@attrs.define
class _ConnectionRates:
    bytes_in: Rate
    bytes_out: Rate


def metadata_fields(message: Message | None) -> dict[str, Any]:
    """The scalar fields of an ``onMetaData`` message (width, framerate, encoder...)."""
    if message is None:
        return {}
    try:
        data = commands.decode_data(message.type_id, message.payload)
    except RemoteProtocolError:
        return {}
    if data.name != "onMetaData" or not data.arguments:
        return {}
    values = data.arguments[0]
    if not isinstance(values, dict):
        return {}
    return {
        str(k): v
        for k, v in values.items()
        if isinstance(v, (str, bool)) or (isinstance(v, (int, float)) and v == v)
    }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


#: Clients are pinged in this many slices spread over ``ping_interval``.
PING_SLICES = 10


class QosMonitor:
    """QoS figures for every connection and stream of one server."""

    _log = Logger()

    def __init__(
        self,
        factory: RTMPServerFactory,
        hub: StreamHub,
        clock: IReactorTime,
        config: QosConfig | None = None,
    ) -> None:
        self.factory = factory
        self.hub = hub
        self.clock = clock
        self.config = config = config if config is not None else QosConfig()
        self.started_at = clock.seconds()
        #: Viewers that are not RTMP connections (HTTP-FLV), by client id.
        self.http_clients: dict[int, HTTPClient] = {}
        self._connection_rates: dict[int, _ConnectionRates] = {}
        self._streams: dict[Publication, StreamStats] = {}
        self._server_in = Rate(config.rate_window)
        self._server_out = Rate(config.rate_window)
        self._cpu: deque[tuple[float, float]] = deque()
        #: Bytes of connections that have gone, by (application, transport).
        self.closed_bytes: dict[tuple[str, str], tuple[int, int]] = {}
        self._sampler = LoopingCall(self.sample)
        self._sampler.clock = clock
        self._pinger = LoopingCall(self.ping_some)
        self._pinger.clock = clock
        self._ping_slice = 0
        hub.taps.append(self._tap)
        factory.event_sinks.append(self._on_event)

    # -- running ------------------------------------------------------------

    def start(self) -> None:
        """Start sampling and pinging."""
        self._sampler.start(self.config.sample_interval, now=True)
        self._pinger.start(self.config.ping_interval / PING_SLICES, now=False)

    def stop(self) -> None:
        """Stop the timers."""
        for loop in (self._sampler, self._pinger):
            if loop.running:
                loop.stop()

    def _tap(self, publication: Publication, message: Message) -> None:
        stats = self._streams.get(publication)
        if stats is None:
            stats = self._streams[publication] = StreamStats(self.config.rate_window)
        stats.take(message)

    def _on_event(self, kind: str, protocol: RTMPServerProtocol, fields: dict[str, Any]) -> None:
        if kind != "disconnect":
            return
        self._connection_rates.pop(protocol.client_id, None)
        connection = protocol.connection
        if connection is not None:
            key = (protocol.app_name, protocol.transport_name)
            bytes_in, bytes_out = self.closed_bytes.get(key, (0, 0))
            self.closed_bytes[key] = (
                bytes_in + connection.bytes_received,
                bytes_out + connection.bytes_sent,
            )

    def http_client_gone(self, viewer: HTTPClient) -> None:
        """An HTTP viewer left: keep its bytes in the totals."""
        self.http_clients.pop(viewer.client_id, None)
        key = (viewer.app_name, viewer.transport_name)
        bytes_in, bytes_out = self.closed_bytes.get(key, (0, 0))
        self.closed_bytes[key] = (bytes_in, bytes_out + viewer.bytes_sent)

    def ping_all(self) -> None:
        """Send every connected RTMP client a PingRequest (RTT comes back as ``rtt_ms``)."""
        for protocol in list(self.factory.connections):
            protocol.ping()

    def ping_some(self) -> None:
        """Ping the next of :data:`PING_SLICES` slices of the clients (by id).

        Each client is pinged once per ``ping_interval``, but not all at
        once: pinging thousands of clients in one go, and handling their
        answers, held the reactor long enough to delay every player's media
        by milliseconds each time.
        """
        current = self._ping_slice
        self._ping_slice = (current + 1) % PING_SLICES
        for protocol in list(self.factory.connections):
            if protocol.client_id % PING_SLICES == current:
                protocol.ping()

    def sample(self) -> None:
        """Take one sample of every counter."""
        now = self.clock.seconds()
        for protocol in self.factory.connections:
            connection = protocol.connection
            if connection is None:
                continue
            rates = self._connection_rates.get(protocol.client_id)
            if rates is None:
                window = self.config.rate_window
                rates = self._connection_rates[protocol.client_id] = _ConnectionRates(
                    Rate(window), Rate(window)
                )
            rates.bytes_in.sample(now, connection.bytes_received)
            rates.bytes_out.sample(now, connection.bytes_sent)
        total_in, total_out = self.total_bytes()
        self._server_in.sample(now, total_in)
        self._server_out.sample(now, total_out)
        live = set(self.hub.publications())
        for publication in list(self._streams):
            if publication not in live:
                del self._streams[publication]
        for stats in self._streams.values():
            stats.sample(now)
        self._cpu.append((now, self._cpu_seconds()))
        while len(self._cpu) > 2 and now - self._cpu[1][0] >= self.config.rate_window:
            self._cpu.popleft()

    # -- figures --------------------------------------------------------------

    @staticmethod
    def _cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    @staticmethod
    def memory_bytes() -> int:
        """Resident memory now (``/proc/self/statm``), else the peak from getrusage."""
        try:
            with open("/proc/self/statm", "rb") as statm:
                pages = int(statm.read().split()[1])
            return pages * resource.getpagesize()
        except (OSError, ValueError, IndexError):
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return peak if sys.platform == "darwin" else peak * 1024

    def cpu_percent(self) -> float:
        """CPU time used per wall-clock time over the rate window, in percent of one core."""
        if len(self._cpu) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self._cpu[0], self._cpu[-1]
        return 0.0 if t1 <= t0 else 100.0 * (c1 - c0) / (t1 - t0)

    def total_bytes(self) -> tuple[int, int]:
        """Bytes received and sent by every client (RTMP and HTTP-FLV), live and gone."""
        total_in = sum(v[0] for v in self.closed_bytes.values())
        total_out = sum(v[1] for v in self.closed_bytes.values())
        for protocol in self.factory.connections:
            if protocol.connection is not None:
                total_in += protocol.connection.bytes_received
                total_out += protocol.connection.bytes_sent
        total_out += sum(v.bytes_sent for v in self.http_clients.values())
        return total_in, total_out

    def _rtmp_clients(self) -> Iterator[RTMPServerProtocol]:
        return iter(sorted(self.factory.connections, key=lambda p: p.client_id))

    def client(self, protocol: RTMPServerProtocol) -> dict[str, Any]:
        """The QoS figures of one RTMP connection."""
        now = self.clock.seconds()
        connection = protocol.connection
        rates = self._connection_rates.get(protocol.client_id)
        bytes_in = connection.bytes_received if connection is not None else 0
        bytes_out = connection.bytes_sent if connection is not None else 0
        unacknowledged = None
        if protocol.acknowledged is not None:
            unacknowledged = (bytes_out - protocol.acknowledged) % 2**32
            if unacknowledged >= 2**31:  # the peer counted more than we did (handshake)
                unacknowledged = 0
        streams = []
        for stream_id, stream in sorted(protocol.streams.items()):
            mode = connection.stream_mode(stream_id) if connection is not None else None
            streams.append(
                {
                    "id": stream_id,
                    "name": stream.name,
                    "mode": mode.value if isinstance(mode, StreamMode) else None,
                    "messages_out": stream.messages_out,
                    "bytes_out": stream.bytes_out,
                    "bytes_in": stream.bytes_in,
                    "frames_dropped": stream.frames_dropped,
                    "paused": stream.paused,
                }
            )
        flash_version = protocol.client_properties.get("flashVer")
        return {
            "id": protocol.client_id,
            "transport": protocol.transport_name,
            "address": protocol.peer,
            "client_version": flash_version if isinstance(flash_version, str) else None,
            "app": protocol.app_name or None,
            "state": connection.state.value if connection is not None else None,
            "streams": streams,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "bitrate_in": round(rates.bytes_in.bits_per_second()) if rates else 0,
            "bitrate_out": round(rates.bytes_out.bits_per_second()) if rates else 0,
            "rtt_ms": _round(protocol.rtt_ms),
            "unacknowledged_bytes": unacknowledged,
            "send_backlog": protocol.send_backlog(),
            "congested": protocol.is_congested(),
            "frames_dropped": sum(s.frames_dropped for s in protocol.streams.values()),
            "bandwidth": attrs.asdict(protocol.bandwidth) if protocol.bandwidth else None,
            "uptime": round(now - protocol.connected_at, 1),
        }

    def http_client(self, viewer: HTTPClient) -> dict[str, Any]:
        """The figures of one HTTP-FLV viewer."""
        return {
            "id": viewer.client_id,
            "transport": viewer.transport_name,
            "address": viewer.peer,
            "client_version": viewer.user_agent or None,
            "app": viewer.app_name,
            "state": "playing",
            "streams": [{"id": 0, "name": viewer.stream_name, "mode": "playing"}],
            "bytes_in": 0,
            "bytes_out": viewer.bytes_sent,
            "bitrate_in": 0,
            "bitrate_out": None,
            "rtt_ms": None,
            "unacknowledged_bytes": None,
            "send_backlog": None,
            "congested": None,
            "frames_dropped": viewer.frames_dropped,
            "bandwidth": None,
            "uptime": round(self.clock.seconds() - viewer.connected_at, 1),
        }

    def clients(self) -> list[dict[str, Any]]:
        """Every connected client, RTMP and HTTP-FLV, by id."""
        out = [self.client(p) for p in self._rtmp_clients()]
        out.extend(self.http_client(v) for v in self.http_clients.values())
        out.sort(key=lambda c: int(c["id"]))
        return out

    def find_client(self, client_id: int) -> RTMPServerProtocol | HTTPClient | None:
        """The RTMP connection or HTTP viewer with this id."""
        for protocol in self.factory.connections:
            if protocol.client_id == client_id:
                return protocol
        return self.http_clients.get(client_id)

    def _owners(self) -> dict[int, RTMPServerProtocol]:
        return {
            id(stream): protocol
            for protocol in self.factory.connections
            for stream in protocol.streams.values()
        }

    def _viewers(self, publication: Publication, owners: dict[int, Any]) -> list[dict[str, Any]]:
        viewers = []
        for subscriber in publication.subscribers:
            owner = owners.get(id(subscriber), subscriber)
            viewers.append(
                {
                    "client": getattr(owner, "client_id", None),
                    "transport": getattr(owner, "transport_name", "other"),
                    "address": getattr(owner, "peer", None),
                    # Played by a lockstep group (flashstream.lockstep).
                    "lockstep": getattr(subscriber, "lockstep", None) is not None,
                }
            )
        return viewers

    def stream(self, publication: Publication, owners: dict[int, Any]) -> dict[str, Any]:
        """The figures of one live stream."""
        stats = self._streams.get(publication) or StreamStats(self.config.rate_window)
        meta = metadata_fields(publication.metadata)
        publisher = publication.publisher
        viewers = self._viewers(publication, owners)
        by_transport: dict[str, int] = {}
        for viewer in viewers:
            by_transport[viewer["transport"]] = by_transport.get(viewer["transport"], 0) + 1
        video_bps = stats.video_rate.bits_per_second()
        audio_bps = stats.audio_rate.bits_per_second()
        frame_rate = stats.frame_rate.per_second()

        def number(key: str) -> float | None:
            value = meta.get(key)
            return float(value) if isinstance(value, (int, float)) else None

        width = stats.width or number("width")
        height = stats.height or number("height")
        return {
            "app": publication.app,
            "name": publication.name,
            "publisher": {
                "client": getattr(publisher, "client_id", None),
                "transport": getattr(publisher, "transport_name", None),
                "address": getattr(publisher, "peer", None),
                "encoder": meta.get("encoder"),
            },
            "video": {
                "codec": stats.video_codec,
                "width": int(width) if width else None,
                "height": int(height) if height else None,
                "frame_rate": _round(frame_rate, 2) if frame_rate else number("framerate"),
                "bitrate": round(video_bps),
                "keyframe_interval_ms": stats.keyframe_interval_ms,
                "frames": stats.video_frames,
                "keyframes": stats.keyframes,
            },
            "audio": {
                "codec": stats.audio_codec,
                "sample_rate": stats.audio_sample_rate or number("audiosamplerate"),
                "channels": stats.audio_channels,
                "bitrate": round(audio_bps),
            },
            "bitrate": round(video_bps + audio_bps),
            "bytes_in": publication.bytes_in,
            "messages_in": publication.messages_in,
            "metadata": meta,
            "viewers": viewers,
            "viewers_by_transport": by_transport,
            "lockstep_groups": sum(1 for group in publication.groups if group.members),
        }

    def streams(self) -> list[dict[str, Any]]:
        """Every live stream, by application and name."""
        owners: dict[int, Any] = self._owners()
        publications = sorted(self.hub.publications(), key=lambda p: (p.app, p.name))
        return [self.stream(p, owners) for p in publications]

    def find_stream(self, app: str, name: str) -> Publication | None:
        """The live stream ``app/name``."""
        return self.hub.get(app, name)

    def connections_by(self) -> dict[tuple[str, str], int]:
        """Connected clients by (application, transport)."""
        counts: dict[tuple[str, str], int] = {}
        clients: Iterable[Any] = list(self.factory.connections) + list(self.http_clients.values())
        for client in clients:
            key = (client.app_name, client.transport_name)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def server(self) -> dict[str, Any]:
        """Server-wide figures."""
        now = self.clock.seconds()
        bytes_in, bytes_out = self.total_bytes()
        by_transport: dict[str, int] = {}
        for (_, transport), count in self.connections_by().items():
            by_transport[transport] = by_transport.get(transport, 0) + count
        publications = self.hub.publications()
        return {
            "version": __version__,
            "uptime": round(now - self.started_at, 1),
            "connections": len(self.factory.connections) + len(self.http_clients),
            "connections_by_transport": by_transport,
            "streams": len(publications),
            "viewers": sum(len(p.subscribers) for p in publications),
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "bitrate_in": round(self._server_in.bits_per_second()),
            "bitrate_out": round(self._server_out.bits_per_second()),
            "cpu_percent": round(self.cpu_percent(), 1),
            "cpu_seconds": round(self._cpu_seconds(), 2),
            "memory_bytes": self.memory_bytes(),
        }
