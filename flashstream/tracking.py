# -*- test-case-name: tests.test_tracking -*-
"""
Real-time tracking: every connect, publish, play, pause, seek, stop and
disconnect becomes a :class:`TrackingEvent`.

The :class:`Tracker` listens to the RTMP factory's event sinks (and is told
about HTTP-FLV viewers directly), stamps each event with the injected clock,
the bytes moved and the duration of what ended, keeps a bounded history and
hands it to its observers:

* :class:`AccessLog` writes one line per event in a W3C extended log format
  modelled on Adobe Media Server's ``access.log`` (tab-separated, ``#Fields``
  header, ``-`` for empty values);
* :class:`EventFeed` streams events to Server-Sent Events clients
  (``/api/v1/events``);
* :class:`Webhooks` POSTs each event as JSON to the configured URLs.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from zope.interface import implementer

from . import __version__

if TYPE_CHECKING:
    from .protocol import RTMPServerFactory, RTMPServerProtocol
    from .qos import HTTPClient

#: Which events are about a connection and which about a stream.
SESSION_EVENTS = ("connect", "disconnect")
STREAM_EVENTS = ("publish", "play", "pause", "unpause", "seek", "stop")


@attrs.frozen
class TrackingEvent:
    """One thing that happened, with the figures an access log line needs."""

    id: int
    kind: str
    time: float
    client_id: int
    transport: str
    address: str
    app: str
    stream: str | None = None
    client_version: str | None = None
    #: Bytes the connection has received from / sent to the client so far.
    bytes_in: int = 0
    bytes_out: int = 0
    #: Payload bytes of this stream (publish: received, play: sent) since it started.
    stream_bytes_in: int | None = None
    stream_bytes_out: int | None = None
    #: Seconds the session or stream lasted (disconnect, stop).
    duration: float | None = None
    #: Stream position in ms (seek, pause).
    position: float | None = None
    status: int = 200
    comment: str | None = None

    @property
    def category(self) -> str:
        """``session`` or ``stream``, as in AMS logs."""
        return "session" if self.kind in SESSION_EVENTS else "stream"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for SSE and webhooks)."""
        out = attrs.asdict(self)
        out["category"] = self.category
        return out


def _ip(address: str) -> str:
    host, sep, _ = address.rpartition(":")
    return host if sep else address


class Tracker:
    """Turns connection activity into :class:`TrackingEvent` values for observers."""

    _log = Logger()

    def __init__(self, clock: IReactorTime, history: int = 200) -> None:
        self.clock = clock
        self.observers: list[Callable[[TrackingEvent], None]] = []
        self.history: deque[TrackingEvent] = deque(maxlen=history)
        self._last_id = 0
        #: (client id, stream id) -> (start time, stream bytes in, out) at publish/play.
        self._starts: dict[tuple[int, int], tuple[float, int, int]] = {}

    def attach(self, factory: RTMPServerFactory) -> None:
        """Listen to the RTMP connections of ``factory``."""
        factory.event_sinks.append(self._on_rtmp_event)

    def record(self, kind: str, **fields: Any) -> TrackingEvent:
        """Make, remember and publish one event."""
        self._last_id += 1
        event = TrackingEvent(self._last_id, kind, self.clock.seconds(), **fields)
        self.history.append(event)
        for observer in list(self.observers):
            try:
                observer(event)
            except Exception:
                self._log.failure("Tracking observer {observer!r} failed", observer=observer)
        return event

    def _on_rtmp_event(
        self, kind: str, protocol: RTMPServerProtocol, fields: dict[str, Any]
    ) -> None:
        connection = protocol.connection
        flash_version = protocol.client_properties.get("flashVer")
        common: dict[str, Any] = {
            "client_id": protocol.client_id,
            "transport": protocol.transport_name,
            "address": protocol.peer,
            "app": protocol.app_name,
            "client_version": flash_version if isinstance(flash_version, str) else None,
            "bytes_in": connection.bytes_received if connection is not None else 0,
            "bytes_out": connection.bytes_sent if connection is not None else 0,
        }
        now = self.clock.seconds()
        if kind == "connect":
            self.record("connect", **common)
        elif kind == "disconnect":
            self.record("disconnect", duration=round(now - protocol.connected_at, 3), **common)
        else:
            stream = fields["stream"]
            key = (protocol.client_id, stream.stream_id)
            if kind in ("publish", "play"):
                base_out = fields.get("bytes_out_before", stream.bytes_out)
                self._starts[key] = (now, stream.bytes_in, base_out)
                self.record(kind, stream=stream.name, **common)
            elif kind == "stop":
                started, base_in, base_out = self._starts.pop(key, (now, 0, 0))
                publishing = fields.get("mode") == "publish"
                self.record(
                    "stop",
                    stream=stream.name,
                    duration=round(now - started, 3),
                    stream_bytes_in=stream.bytes_in - base_in if publishing else None,
                    stream_bytes_out=None if publishing else stream.bytes_out - base_out,
                    comment=fields.get("mode"),
                    **common,
                )
            elif kind == "pause":
                self.record(
                    "pause" if fields.get("paused") else "unpause",
                    stream=stream.name,
                    position=fields.get("position"),
                    **common,
                )
            elif kind == "seek":
                self.record("seek", stream=stream.name, position=fields.get("position"), **common)

    def http_event(self, kind: str, viewer: HTTPClient, **fields: Any) -> TrackingEvent:
        """Record ``play``/``stop`` of an HTTP-FLV viewer."""
        return self.record(
            kind,
            client_id=viewer.client_id,
            transport=viewer.transport_name,
            address=viewer.peer,
            app=viewer.app_name,
            stream=viewer.stream_name,
            client_version=viewer.user_agent or None,
            bytes_out=viewer.bytes_sent,
            **fields,
        )


# -- the access log ---------------------------------------------------------------

#: The columns of the access log, in order (names as in AMS's access.log).
ACCESS_LOG_FIELDS = (
    "x-event",
    "x-category",
    "date",
    "time",
    "tz",
    "x-ctx",
    "c-ip",
    "c-proto",
    "c-client-id",
    "x-app",
    "x-sname",
    "x-duration",
    "x-status",
    "cs-bytes",
    "sc-bytes",
    "cs-stream-bytes",
    "sc-stream-bytes",
    "x-spos",
    "c-user-agent",
    "x-comment",
)


def _field(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        value = f"{value:.3f}".rstrip("0").rstrip(".")
    text = str(value)
    return "".join(" " if c in "\t\r\n" or ord(c) < 32 else c for c in text)


def access_log_line(event: TrackingEvent) -> str:
    """One tab-separated line (no newline) in :data:`ACCESS_LOG_FIELDS` order."""
    stamp = time.gmtime(event.time)
    values = (
        event.kind,
        event.category,
        time.strftime("%Y-%m-%d", stamp),
        time.strftime("%H:%M:%S", stamp),
        "UTC",
        event.stream if event.category == "stream" else event.app,
        _ip(event.address),
        event.transport,
        event.client_id,
        event.app,
        event.stream,
        event.duration,
        event.status,
        event.bytes_in,
        event.bytes_out,
        event.stream_bytes_in,
        event.stream_bytes_out,
        event.position,
        event.client_version,
        event.comment,
    )
    return "\t".join(_field(v) for v in values)


class AccessLog:
    """Appends one line per event to a file, after a W3C ``#Fields`` header."""

    def __init__(self, file: IO[str], clock: IReactorTime) -> None:
        self.file = file
        if file.tell() == 0:
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(clock.seconds()))
            file.write(
                "#Version: 1.0\n"
                f"#Software: flashstream {__version__}\n"
                f"#Date: {started}\n"
                f"#Fields: {' '.join(ACCESS_LOG_FIELDS)}\n"
            )
            file.flush()

    @classmethod
    def open(cls, path: Path, clock: IReactorTime) -> AccessLog:
        """Open (append) the log at ``path``, creating its folder."""
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path.open("a", encoding="utf-8"), clock)

    def __call__(self, event: TrackingEvent) -> None:
        """Write the event's line."""
        self.file.write(access_log_line(event) + "\n")
        self.file.flush()

    def close(self) -> None:
        """Close the file."""
        self.file.close()


# -- Server-Sent Events ---------------------------------------------------------------


def sse_message(event: TrackingEvent) -> bytes:
    """The event as one SSE message (``id``, ``event``, ``data`` lines)."""
    data = json.dumps(event.to_json(), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


@implementer(IPushProducer)
class _SSEClient:
    """One listener of the feed; dropped if its connection stops draining."""

    def __init__(self, feed: EventFeed, request: IRequest) -> None:
        self.feed = feed
        self.request = request
        self.done: Deferred[bytes] = Deferred(lambda _: self.feed._forget(self))
        self.paused = False

    def send(self, data: bytes) -> None:
        if self.paused:
            self.feed._log.warn(
                "Dropping event feed client {peer}: it does not read its events",
                peer=self.request.getClientAddress(),
            )
            self.feed._forget(self)
            self.done.callback(b"")
            return
        self.request.write(data)

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = True


class EventFeed:
    """Streams tracking events to Server-Sent Events clients."""

    _log = Logger()

    def __init__(
        self,
        tracker: Tracker,
        clock: IReactorTime,
        max_clients: int = 32,
        keepalive: float = 15.0,
    ) -> None:
        self.tracker = tracker
        self.clock = clock
        self.max_clients = max_clients
        self.keepalive = keepalive
        self.clients: list[_SSEClient] = []
        self._timer: IDelayedCall | None = None
        tracker.observers.append(self._publish)

    def serve(self, request: IRequest) -> Deferred[bytes] | bytes:
        """Answer ``GET /api/v1/events``: history after Last-Event-ID, then live events."""
        if len(self.clients) >= self.max_clients:
            request.setResponseCode(503)
            request.setHeader(b"Content-Type", b"text/plain")
            return b"too many event feed clients\n"
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"X-Accel-Buffering", b"no")
        last = request.getHeader(b"last-event-id")
        try:
            after = int(last) if last else 0
        except ValueError:
            after = 0
        client = _SSEClient(self, request)
        cast(IConsumer, request).registerProducer(client, True)
        self.clients.append(client)
        request.write(b"retry: 2000\n\n")
        for event in list(self.tracker.history):
            if event.id > after:
                request.write(sse_message(event))
        if self._timer is None:
            self._timer = self.clock.callLater(self.keepalive, self._ping)
        return client.done

    def _forget(self, client: _SSEClient) -> None:
        if client in self.clients:
            self.clients.remove(client)
            if getattr(client.request, "channel", None) is not None:  # None once disconnected
                cast(IConsumer, client.request).unregisterProducer()

    def _publish(self, event: TrackingEvent) -> None:
        data = sse_message(event)
        for client in list(self.clients):
            client.send(data)

    def _ping(self) -> None:
        self._timer = None
        for client in list(self.clients):
            client.send(b": keep-alive\n\n")
        if self.clients:
            self._timer = self.clock.callLater(self.keepalive, self._ping)

    def close(self) -> None:
        """End every feed (server shutdown)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for client in list(self.clients):
            self._forget(client)
            client.done.callback(b"")


# -- webhooks ---------------------------------------------------------------------


class Webhooks:
    """POSTs every event as JSON to each configured URL, with bounded concurrency.

    ``http`` is treq (or ``StubTreq`` in tests).
    """

    _log = Logger()

    def __init__(self, urls: tuple[str, ...], http: Any, max_in_flight: int = 64) -> None:
        self.urls = urls
        self.http = http
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.dropped = 0

    def __call__(self, event: TrackingEvent) -> None:
        """Send ``event`` to every URL (dropped, and logged, while too many are pending)."""
        body = json.dumps(event.to_json()).encode()
        for url in self.urls:
            if self.in_flight >= self.max_in_flight:
                self.dropped += 1
                self._log.warn(
                    "Webhook {url} skipped for event {id}: {count} requests still pending",
                    url=url,
                    id=event.id,
                    count=self.in_flight,
                )
                continue
            self.in_flight += 1
            deferred = self.http.post(
                url, data=body, headers={b"Content-Type": [b"application/json"]}
            )
            deferred.addCallback(self._answered, url, event)
            deferred.addErrback(self._failed, url, event)
            deferred.addBoth(self._settled)

    def _answered(self, response: Any, url: str, event: TrackingEvent) -> Any:
        if not 200 <= response.code < 300:
            self._log.warn(
                "Webhook {url} answered {code} to event {id}",
                url=url,
                code=response.code,
                id=event.id,
            )
        return response.text()  # read the body so the connection is released

    def _failed(self, failure: Failure, url: str, event: TrackingEvent) -> None:
        self._log.warn(
            "Webhook {url} failed for event {id}: {error}",
            url=url,
            id=event.id,
            error=failure.getErrorMessage(),
        )

    def _settled(self, result: object) -> None:
        self.in_flight -= 1
