# -*- test-case-name: tests.test_protocol -*-
"""
The Twisted adapter for RTMP bytes: one :class:`RTMPServerProtocol` per
connection, built by :class:`RTMPServerFactory` for every listener.

It parses nothing and decides nothing about the protocol: ``dataReceived``
feeds :class:`~flashstream.rtmp.connection.ServerConnection`, each event is
turned into an application or hub call, and ``data_to_send()`` goes to
``transport.write``.  Timers (handshake timeout, ping, dead-peer timeout) use
the factory's injected reactor.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, cast

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .applications import Rejected
from .hub import StreamHub
from .interfaces import IStreamApplication, ISwitchablePlayback
from .rtmp import events as ev
from .rtmp.connection import ServerConnection, StreamMode
from .rtmp.errors import RemoteProtocolError
from .rtmp.limits import Limits
from .streams import NetStream

CONNECTION_DONE = Failure(ConnectionDone())


class RTMPServerFactory(Factory):
    """Shared state of every RTMP connection on a listener."""

    noisy = False

    def __init__(
        self,
        hub: StreamHub,
        applications: dict[str, IStreamApplication],
        reactor: IReactorTime,
        *,
        limits: Limits = Limits(),
        chunk_size: int = 4096,
        random_bytes: Callable[[int], bytes] = os.urandom,
        transport_name: str = "rtmp",
    ) -> None:
        self.hub = hub
        self.applications = applications
        self.reactor = reactor
        self.limits = limits
        self.chunk_size = chunk_size
        self.random_bytes = random_bytes
        self.transport_name = transport_name
        self.connections: set[RTMPServerProtocol] = set()

    def shutdown(self) -> None:
        """Say goodbye to every client (Play.Stop, Unpublish.Success) and close."""
        for protocol in list(self.connections):
            protocol.goodbye()

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        """Make the protocol of one connection."""
        protocol = RTMPServerProtocol()
        protocol.factory = self
        return protocol


@implementer(IPushProducer)
class RTMPServerProtocol(Protocol):
    """One RTMP connection: bytes to the core, events to applications."""

    _log = Logger()
    factory: RTMPServerFactory

    def __init__(self) -> None:
        self.connection: ServerConnection | None = None
        self.app: IStreamApplication | None = None
        self.app_name = ""
        self.streams: dict[int, NetStream] = {}
        self.client_properties: dict[str, object] = {}
        self._timer: IDelayedCall | None = None
        self._last_input = 0.0
        self._congested = False
        self._backlog = 0
        self._full_since: float | None = None
        self._dropped = False
        self.peer = "?"

    # -- Twisted callbacks ---------------------------------------------------

    def connectionMade(self) -> None:
        """Start the handshake timer and register for backpressure."""
        factory = self.factory
        factory.connections.add(self)
        address = self._transport().getPeer()
        self.peer = f"{getattr(address, 'host', '?')}:{getattr(address, 'port', '?')}"
        now = factory.reactor.seconds()
        self._last_input = now
        self.connection = ServerConnection(
            random_bytes=factory.random_bytes,
            limits=factory.limits,
            time_ms=int(now * 1000) % 2**32,
            chunk_size=factory.chunk_size,
        )
        cast(IConsumer, self.transport).registerProducer(self, True)
        self._timer = factory.reactor.callLater(factory.limits.handshake_timeout, self._tick)

    def dataReceived(self, data: bytes) -> None:
        """Feed the core and act on what it reports."""
        if self.connection is None or self._dropped:
            return
        self._last_input = self.factory.reactor.seconds()
        try:
            events = self.connection.receive_data(data)
            for event in events:
                self._handle(event)
        except RemoteProtocolError as error:
            self._drop("protocol error: {error}", error=error)
            return
        self._flush()

    def connectionLost(self, reason: Failure = CONNECTION_DONE) -> None:
        """Release every stream and tell the application."""
        self.factory.connections.discard(self)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.close()
        if self.app is not None:
            app, self.app = self.app, None
            try:
                app.disconnect(self)
            except Exception:
                self._log.failure("Application {app} failed on disconnect", app=self.app_name)
        if self.connection is not None:
            self.connection.close()
        self._log.info("Connection from {peer} closed", peer=self.peer)

    # -- IPushProducer: the transport tells us when it is full ----------------

    def pauseProducing(self) -> None:
        """The transport's buffer passed its high-water mark: watch the backlog."""
        self._congested = True
        self._backlog = 0

    def resumeProducing(self) -> None:
        """The transport drained its buffer."""
        self._congested = False
        self._backlog = 0
        self._full_since = None

    def stopProducing(self) -> None:
        """The transport is going away."""
        self._congested = True

    def is_congested(self) -> bool:
        """True while the transport asks us to stop writing."""
        return self._congested

    def send_backlog(self) -> int:
        """Bytes written to the transport and not yet sent (0 unless congested).

        A TCP transport's buffer is measured directly; for other transports
        (TLS) it is the bytes written since the transport asked us to pause.
        """
        if not self._congested:
            return 0
        transport = self.transport
        buffer = getattr(transport, "dataBuffer", None)
        if isinstance(buffer, bytes):
            return (
                len(buffer)
                - cast(int, getattr(transport, "offset", 0))
                + cast(int, getattr(transport, "_tempDataLen", 0))
            )
        return self._backlog

    def backlog_full(self) -> bool:
        """True while ``max_send_backlog`` bytes or more wait to be sent.

        Players then skip video to the next keyframe.
        """
        return self._congested and self.send_backlog() >= self.factory.limits.max_send_backlog

    def _check_backlog(self, adding: int) -> bool:
        """Before writing ``adding`` bytes to a congested transport: drop a
        player that would pass twice ``max_send_backlog`` or that stayed past
        it for ``slow_player_timeout`` seconds.  False if it was dropped."""
        limits = self.factory.limits
        backlog = self.send_backlog()
        if backlog + adding > 2 * limits.max_send_backlog:
            self._drop(
                "too far behind ({backlog} bytes waiting, limit {limit})",
                backlog=backlog + adding,
                limit=2 * limits.max_send_backlog,
            )
            return False
        if backlog < limits.max_send_backlog:
            self._full_since = None
            return True
        now = self.factory.reactor.seconds()
        if self._full_since is None:
            self._full_since = now
        elif now - self._full_since >= limits.slow_player_timeout:
            self._drop(
                "too far behind ({backlog} bytes waiting for {seconds:.0f}s)",
                backlog=backlog,
                seconds=now - self._full_since,
            )
            return False
        return True

    # -- helpers ---------------------------------------------------------------

    def _transport(self) -> ITCPTransport:
        assert self.transport is not None
        return cast(ITCPTransport, self.transport)

    def _flush(self) -> None:
        if self.connection is None:
            return
        out = self.connection.data_to_send_sequence()
        if out:
            if self._congested:
                size = sum(map(len, out))
                if not self._dropped and not self._check_backlog(size):
                    return  # dropped: these bytes are discarded
                self._backlog += size
            self._transport().writeSequence(out)

    def _drop(self, reason_format: str, *, quiet: bool = False, **fields: object) -> None:
        """Log why (a format string with ``fields``), send what is queued, close.

        ``quiet`` logs at info level: nothing went wrong (server shutdown).
        """
        if self._dropped:
            return
        self._dropped = True
        log = self._log.info if quiet else self._log.warn
        log("Dropping {peer}: " + reason_format, peer=self.peer, **fields)
        self._flush()
        self._transport().loseConnection()

    def goodbye(self) -> None:
        """The server is stopping: end every stream politely, then close."""
        connection = self.connection
        if connection is not None and connection.state.value == "connected":
            for stream_id, stream in self.streams.items():
                mode = connection.stream_mode(stream_id)
                if mode is StreamMode.PLAYING:
                    connection.stop_play(stream_id, stream.name)
                elif mode is StreamMode.PUBLISHING:
                    connection.end_publish(stream_id, stream.name)
        self._drop("server shutting down", quiet=True)

    def _tick(self) -> None:
        """Handshake timeout, keep-alive pings and the dead-peer timeout."""
        self._timer = None
        connection = self.connection
        if connection is None or self._dropped:
            return
        limits = self.factory.limits
        reactor = self.factory.reactor
        if connection.state.value == "handshake":
            self._drop(
                "handshake not completed within {timeout}s", timeout=limits.handshake_timeout
            )
            return
        now = reactor.seconds()
        silent = now - self._last_input
        if silent >= limits.idle_timeout:
            self._drop("no data for {silent:.0f}s", silent=silent)
            return
        if silent >= limits.ping_interval:
            connection.send_ping(int(now * 1000))
            self._flush()
            delay = min(limits.ping_interval, self._last_input + limits.idle_timeout - now)
        else:
            delay = self._last_input + limits.ping_interval - now
        self._timer = reactor.callLater(delay, self._tick)

    # -- events ------------------------------------------------------------------

    def _handle(self, event: ev.Event) -> None:
        handler = self._HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def _on_handshake(self, event: ev.HandshakeCompleted) -> None:
        self._log.debug(
            "Handshake with {peer} done (C0 {version}, scheme {scheme})",
            peer=self.peer,
            version=event.client_version,
            scheme=event.scheme,
        )
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.factory.reactor.callLater(self.factory.limits.ping_interval, self._tick)

    def _on_connect(self, event: ev.ConnectRequested) -> None:
        assert self.connection is not None
        app = self.factory.applications.get(event.app)
        if app is None:
            self.connection.reject_connect(
                event.transaction_id,
                f"Application {event.app!r} does not exist.",
                code="NetConnection.Connect.InvalidApp",
            )
            self._drop("unknown application {app!r}", app=event.app)
            return
        self.client_properties = event.properties
        try:
            app.connect(self)
        except Rejected as rejected:
            self.connection.reject_connect(
                event.transaction_id, rejected.description, rejected.code
            )
            self._drop("connect refused by {app}: {why}", app=event.app, why=rejected.description)
            return
        self.app = app
        self.app_name = event.app
        self._log.info(
            "{peer} connected to {app} ({flash_version})",
            peer=self.peer,
            app=event.app,
            flash_version=event.properties.get("flashVer", "?"),
        )
        for replayed in self.connection.accept_connect(event.transaction_id):
            self._handle(replayed)

    def _on_stream_created(self, event: ev.StreamCreated) -> None:
        assert self.connection is not None
        stream = NetStream(self.connection, event.stream_id, self._flush)
        stream.congested = self.is_congested
        stream.backlog_full = self.backlog_full
        self.streams[event.stream_id] = stream

    def _on_publish(self, event: ev.PublishRequested) -> None:
        assert self.connection is not None and self.app is not None
        if self.connection.stream_mode(event.stream_id) is None:
            return  # deleted later in the same read; its StreamClosed follows
        stream = self.streams[event.stream_id]
        stream.close()
        stream.name = event.name
        try:
            self.app.publish(self, stream, event.name, event.publish_type)
        except Rejected as rejected:
            self._log.info(
                "{peer} may not publish {app}/{name}: {why}",
                peer=self.peer,
                app=self.app_name,
                name=event.name,
                why=rejected.description,
            )
            self.connection.send_status(
                event.stream_id, "error", rejected.code, rejected.description, details=event.name
            )
            return
        stream.add_cleanup(lambda: self._end_publish(stream))
        self.connection.accept_publish(event.stream_id, event.name)
        self._log.info(
            "{peer} publishes {app}/{name} ({kind})",
            peer=self.peer,
            app=self.app_name,
            name=event.name,
            kind=event.publish_type,
        )

    def _end_publish(self, stream: NetStream) -> None:
        if self.connection is not None and not self._dropped and self.streams.get(stream.stream_id):
            self.connection.end_publish(stream.stream_id, stream.name)

    def _on_play(self, event: ev.PlayRequested) -> None:
        assert self.connection is not None and self.app is not None
        if self.connection.stream_mode(event.stream_id) is None:
            return  # deleted later in the same read; its StreamClosed follows
        stream = self.streams[event.stream_id]
        stream.close()
        stream.name = event.name
        connection = self.connection

        def start() -> None:
            connection.start_play(
                event.stream_id, event.name, reset=event.reset, recorded=stream.recorded
            )

        stream.pending_start = start
        stream.play_duration = event.duration
        try:
            self.app.play(self, stream, event.name, event.start)
        except Rejected as rejected:
            stream.pending_start = None
            self._log.info(
                "{peer} cannot play {app}/{name}: {why}",
                peer=self.peer,
                app=self.app_name,
                name=event.name,
                why=rejected.description,
            )
            self.connection.send_status(
                event.stream_id, "error", rejected.code, rejected.description, details=event.name
            )
            return
        stream.ensure_started()
        self._log.info(
            "{peer} plays {app}/{name}", peer=self.peer, app=self.app_name, name=event.name
        )

    def _on_stream_closed(self, event: ev.StreamClosed) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        stream.close()
        if event.deleted:
            del self.streams[event.stream_id]

    def _on_media(self, event: ev.MediaReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None and stream.media_sink is not None:
            stream.media_sink(event.message)

    def _on_data(self, event: ev.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        if event.data.name == "onMetaData" and stream.metadata_sink is not None:
            stream.metadata_sink(event.message)
        elif stream.media_sink is not None:
            stream.media_sink(event.message)

    def _on_receive_toggle(self, event: ev.ReceiveMediaToggled) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.set_receive(event.kind, event.enabled)

    def _on_pause(self, event: ev.PauseRequested) -> None:
        assert self.connection is not None
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        if stream.playback is not None:
            stream.playback.pause(event.paused, event.position)
            return
        if event.paused:
            stream.pause()
            code, text = "NetStream.Pause.Notify", "Paused live"
        else:
            stream.resume()
            code, text = "NetStream.Unpause.Notify", "Unpaused live"
        self.connection.send_status(event.stream_id, "status", code, f"{text} {stream.name}.")

    def _on_seek(self, event: ev.SeekRequested) -> None:
        assert self.connection is not None
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        if stream.playback is not None:
            stream.playback.seek(event.position)
            return
        self.connection.send_status(
            event.stream_id, "warning", "NetStream.Seek.Failed", "Live streams cannot seek."
        )

    def _on_play2(self, event: ev.Play2Requested) -> None:
        assert self.connection is not None
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        if ISwitchablePlayback.providedBy(stream.playback):
            cast(ISwitchablePlayback, stream.playback).play2(event.options)
            return
        self.connection.send_status(
            event.stream_id, "error", "NetStream.Play.Failed", "play2 needs a file being played."
        )

    def _on_buffer_length(self, event: ev.BufferLengthSet) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.buffer_ms = event.buffer_ms

    def _on_call(self, event: ev.CallReceived) -> None:
        assert self.connection is not None
        command = event.command
        if command.name in ("_result", "_error") or command.transaction_id <= 0:
            return
        if command.name == "getStreamLength" and self.app is not None:
            name = command.arguments[0] if command.arguments else ""
            length = self.app.stream_length(self, name if isinstance(name, str) else "")
            self.connection.send_result(command.transaction_id, None, float(length))
            return
        self.connection.send_error(
            command.transaction_id, f"Method {command.name!r} is not available."
        )

    _HANDLERS: dict[type, Callable[[RTMPServerProtocol, Any], None]] = {
        ev.HandshakeCompleted: _on_handshake,
        ev.ConnectRequested: _on_connect,
        ev.StreamCreated: _on_stream_created,
        ev.PublishRequested: _on_publish,
        ev.PlayRequested: _on_play,
        ev.StreamClosed: _on_stream_closed,
        ev.MediaReceived: _on_media,
        ev.DataReceived: _on_data,
        ev.ReceiveMediaToggled: _on_receive_toggle,
        ev.PauseRequested: _on_pause,
        ev.SeekRequested: _on_seek,
        ev.Play2Requested: _on_play2,
        ev.BufferLengthSet: _on_buffer_length,
        ev.CallReceived: _on_call,
    }
