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
from functools import partial
from typing import Any, Literal, cast

from twisted.internet import tcp
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
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
from .bandwidth import BandwidthResult
from .calls import CallTracker, bounded
from .hub import StreamHub
from .interfaces import ICallHandler, ISharedObjectHandler, IStreamApplication, ISwitchablePlayback
from .lockstep import DirectSend
from .rtmp import commands as cmd
from .rtmp import events as ev
from .rtmp.connection import ServerConnection, State, StreamMode
from .rtmp.errors import RemoteProtocolError
from .rtmp.limits import Limits
from .rtmp.sharedobject import SharedObjectMessage
from .sendqueue import HeldPieces, transport_held
from .streams import NetStream
from .tcpinfo import kernel_rtt_ms, set_no_delay
from .writethrough import can_write_through, nothing_queued, send_at_once, write_through

CONNECTION_DONE = Failure(ConnectionDone())
_log = Logger()

#: Told ``(kind, protocol, fields)`` for what happens on a connection:
#: ``connect``, ``publish``/``play``/``pause``/``seek``/``stop`` (with the
#: ``stream``) and ``disconnect``.  Tracking and QoS register here.
ConnectionEventSink = Callable[[str, "RTMPServerProtocol", dict[str, Any]], None]
#: The transport name once a client's handshake shows RTMPE (C0 6, 8 or 9).
ENCRYPTED_NAMES = {"rtmp": "rtmpe", "rtmpt": "rtmpte"}

#: Seconds into a play before ``tcp_nodelay = "setup"`` turns Nagle's
#: algorithm on: the answers to play and the cached start have gone out by
#: then without waiting for the player's (delayed) ACKs.
NAGLE_AFTER_PLAY = 1.0


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
        tcp_nodelay: bool | Literal["setup"] = "setup",
        random_bytes: Callable[[int], bytes] = os.urandom,
        transport_name: str = "rtmp",
        decision_timeout: float = 30.0,
        call_timeout: float = 30.0,
    ) -> None:
        self.hub = hub
        self.applications = applications
        self.reactor = reactor
        self.limits = limits
        self.chunk_size = chunk_size
        #: TCP_NODELAY on RTMP connections (``[rtmp] tcp_nodelay``): always
        #: (True), never (False), or until :data:`NAGLE_AFTER_PLAY` seconds
        #: into a play ("setup").
        self.tcp_nodelay = tcp_nodelay
        self.random_bytes = random_bytes
        self.transport_name = transport_name
        #: Seconds an application may take to decide on connect/publish/play/call.
        self.decision_timeout = decision_timeout
        #: Seconds a client may take to answer a server-to-client call.
        self.call_timeout = call_timeout
        self.connections: set[RTMPServerProtocol] = set()
        #: Observers of connection events (see :data:`ConnectionEventSink`).
        self.event_sinks: list[ConnectionEventSink] = []
        self._last_client_id = 0
        #: Open connections by the peer's IP address.
        self.per_address: dict[str, int] = {}
        #: Connections refused so far, by the name of the limit that refused them.
        self.refused: dict[str, int] = {"max_connections": 0, "max_connections_per_address": 0}
        self._refusal_logged: dict[str, tuple[float, int]] = {}
        self._stopping = False
        self._all_closed: list[Deferred[None]] = []
        self._shutdown_timer: IDelayedCall | None = None

    def next_client_id(self) -> int:
        """A number no other connection of this server has had."""
        self._last_client_id += 1
        return self._last_client_id

    def shutdown(self) -> Deferred[None]:
        """Say goodbye to every client (Play.Stop, Unpublish.Success) and close.

        New connections are refused from now on.  The Deferred fires once
        every connection has closed, or after ``limits.shutdown_timeout``
        seconds, when the connections still open are aborted.
        """
        self._stopping = True
        done: Deferred[None] = Deferred()
        for protocol in list(self.connections):
            protocol.goodbye()
        if not self.connections:
            done.callback(None)
            return done
        self._all_closed.append(done)
        if self._shutdown_timer is None:
            self._shutdown_timer = self.reactor.callLater(
                self.limits.shutdown_timeout, self._abort_the_rest
            )
        return done

    def _abort_the_rest(self) -> None:
        self._shutdown_timer = None
        remaining = list(self.connections)
        _log.warn(
            "{count} clients did not close within {timeout}s of shutdown; cutting them off",
            count=len(remaining),
            timeout=self.limits.shutdown_timeout,
        )
        for protocol in remaining:
            transport = protocol.transport
            if transport is not None:
                cast(ITCPTransport, transport).abortConnection()
        self._closed()

    def _closed(self) -> None:
        """Fire the shutdown Deferreds (every connection is closed or cut off)."""
        if self._shutdown_timer is not None and self._shutdown_timer.active():
            self._shutdown_timer.cancel()
        self._shutdown_timer = None
        waiting, self._all_closed = self._all_closed, []
        for done in waiting:
            done.callback(None)

    def connection_opened(self, protocol: RTMPServerProtocol, host: str) -> None:
        """Count a new connection (called by the protocol)."""
        self.connections.add(protocol)
        self.per_address[host] = self.per_address.get(host, 0) + 1

    def connection_closed(self, protocol: RTMPServerProtocol, host: str) -> None:
        """Forget a closed connection (called by the protocol)."""
        if protocol not in self.connections:
            return
        self.connections.discard(protocol)
        count = self.per_address.get(host, 0) - 1
        if count > 0:
            self.per_address[host] = count
        else:
            self.per_address.pop(host, None)
        if self._stopping and not self.connections and self._all_closed:
            self._closed()

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        """Make the protocol of one connection, or None (refused) past a limit."""
        host = str(getattr(addr, "host", "?"))
        limits = self.limits
        if self._stopping:
            return None
        if len(self.connections) >= limits.max_connections:
            self._refuse("max_connections", host, len(self.connections), limits.max_connections)
            return None
        from_host = self.per_address.get(host, 0)
        if from_host >= limits.max_connections_per_address:
            self._refuse(
                "max_connections_per_address", host, from_host, limits.max_connections_per_address
            )
            return None
        protocol = RTMPServerProtocol()
        protocol.factory = self
        protocol.transport_name = self.transport_name
        return protocol

    def _refuse(self, limit: str, host: str, count: int, value: int) -> None:
        """Count a refusal; log it (at most one line per limit per second)."""
        self.refused[limit] += 1
        now = self.reactor.seconds()
        last, logged_total = self._refusal_logged.get(limit, (float("-inf"), 0))
        if now - last < 1.0:
            return
        self._refusal_logged[limit] = (now, self.refused[limit])
        _log.warn(
            "Refusing a connection from {host}: {count} open, {limit} is {value} "
            "({since} refused since the last such line, {total} in all)",
            host=host,
            count=count,
            limit=limit,
            value=value,
            since=self.refused[limit] - logged_total,
            total=self.refused[limit],
        )


@implementer(IPushProducer)
class RTMPServerProtocol(Protocol):
    """One RTMP connection: bytes to the core, events to applications."""

    _log = Logger()
    factory: RTMPServerFactory
    #: How the client reached us (rtmp, rtmps, rtmpt...); transports override it.
    transport_name = "rtmp"

    def __init__(self) -> None:
        self.connection: ServerConnection | None = None
        self.app: IStreamApplication | None = None
        self.app_name = ""
        self.streams: dict[int, NetStream] = {}
        self.client_properties: dict[str, object] = {}
        #: The connect ``?query`` and the extra values after the connect object.
        self.connect_query = ""
        self.connect_arguments: tuple[object, ...] = ()
        #: The last bandwidth detection's result (QoS).
        self.bandwidth: BandwidthResult | None = None
        self.calls: CallTracker | None = None
        #: Application decisions still pending, by stream (0 = connect).
        self._deciding: dict[int, Deferred[object]] = {}
        #: Decisions cancelled because the client left or closed the stream.
        self._stale: set[Deferred[object]] = set()
        #: Keys (0 = connect, else stream id) whose decision is still wanted.
        self._wanted: set[int] = set()
        self._timer: IDelayedCall | None = None
        self._last_input = 0.0
        self._congested = False
        self._backlog = 0
        self._full_since: float | None = None
        self._dropped = False
        #: Plain TCP: bytes go to the socket at once when nothing is queued.
        self._direct = False
        #: Plain TCP: what waits while the transport is paused (not copied;
        #: made when first needed).
        self._held: HeldPieces | None = None
        #: Turns Nagle's algorithm on a while into a play ("setup").
        self._nagle_timer: IDelayedCall | None = None
        #: One bound method, so the hub notes this connection's flush once per batch.
        self._flush_bound = self._flush
        self.host = "?"
        self.peer = "?"
        self.client_id = 0
        self.connected_at = 0.0
        #: Round-trip time of the last answered PingRequest, in ms.
        self.rtt_ms: float | None = None
        #: The peer's last Acknowledgement (bytes it says it received, mod 2**32).
        self.acknowledged: int | None = None
        self._accepted = False
        #: How the client reached us: rtmp, rtmps, rtmpt or rtmpts (set by the
        #: listener), with "e" inserted once the handshake shows RTMPE.
        self.transport_name = "rtmp"

    # -- Twisted callbacks ---------------------------------------------------

    def connectionMade(self) -> None:
        """Start the handshake timer and register for backpressure."""
        factory = self.factory
        address = self._transport().getPeer()
        self.host = str(getattr(address, "host", "?"))
        self.peer = f"{self.host}:{getattr(address, 'port', '?')}"
        factory.connection_opened(self, self.host)
        now = factory.reactor.seconds()
        self._last_input = now
        self.client_id = factory.next_client_id()
        self.connected_at = now
        self.connection = ServerConnection(
            random_bytes=factory.random_bytes,
            limits=factory.limits,
            time_ms=int(now * 1000) % 2**32,
            chunk_size=factory.chunk_size,
        )
        self.calls = CallTracker(
            self._send_call,
            factory.reactor,
            timeout=factory.call_timeout,
            max_pending=factory.limits.max_pending_calls,
        )
        cast(IConsumer, self.transport).registerProducer(self, True)
        self._direct = can_write_through(self.transport)
        # Commands and their answers must not wait for the peer's delayed ACK
        # (Nagle); "setup" turns Nagle back on once media flows (_use_nagle).
        if factory.tcp_nodelay is not False:
            set_no_delay(self.transport, True)
        self._timer = factory.reactor.callLater(factory.limits.handshake_timeout, self._tick)

    def dataReceived(self, data: bytes) -> None:
        """Feed the core and act on what it reports."""
        if self.connection is None or self._dropped:
            return
        self._last_input = self.factory.reactor.seconds()
        try:
            events = self.connection.receive_data(data)
            # What this read fans out reaches each player in one write.
            with self.factory.hub.batch():
                for event in events:
                    self._handle(event)
        except RemoteProtocolError as error:
            self._drop("protocol error: {error}", error=error)
            return
        self._flush()

    def connectionLost(self, reason: Failure = CONNECTION_DONE) -> None:
        """Release every stream and tell the application."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._nagle_timer is not None and self._nagle_timer.active():
            self._nagle_timer.cancel()
        deciding, self._deciding = self._deciding, {}
        self._wanted.clear()
        for pending in deciding.values():
            self._stale.add(pending)
            pending.cancel()
        if self.calls is not None:
            self.calls.close()
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
        if self._held is not None:
            self._held.clear()
        if self._accepted:
            self._notify("disconnect")
        self._log.info("Connection from {peer} closed", peer=self.peer)
        self.factory.connection_closed(self, self.host)

    def _nagle_soon(self) -> None:
        """A play started: with ``tcp_nodelay = "setup"``, turn Nagle's
        algorithm on :data:`NAGLE_AFTER_PLAY` seconds from now."""
        if self.factory.tcp_nodelay == "setup" and self._nagle_timer is None:
            self._nagle_timer = self.factory.reactor.callLater(NAGLE_AFTER_PLAY, self._use_nagle)

    def _use_nagle(self) -> None:
        """Let the kernel join this player's small writes while one is
        unacknowledged: a player that only reads acknowledges at once, so
        this costs no latency, and a lazy reader gets fewer, larger segments
        (less CPU per GB, ``docs/performance.rst``).  Right after the player
        itself sends (an acknowledgement every window, a keep-alive answer)
        its kernel delays its ACK and one message may wait for it; that is
        why QoS no longer pings (:mod:`flashstream.tcpinfo`)."""
        if not self._dropped and self.connection is not None:
            set_no_delay(self.transport, False)

    # -- IPushProducer: the transport tells us when it is full ----------------

    def pauseProducing(self) -> None:
        """The transport's buffer passed its high-water mark: watch the backlog."""
        self._congested = True
        self._backlog = 0

    def resumeProducing(self) -> None:
        """The transport drained its buffer: give it what waits here (plain TCP)."""
        self._congested = False
        self._backlog = 0
        self._full_since = None
        if self._held:
            self._held.feed(self.is_congested)

    def stopProducing(self) -> None:
        """The transport is going away."""
        self._congested = True

    def is_congested(self) -> bool:
        """True while the transport asks us to stop writing."""
        return self._congested

    def send_backlog(self) -> int:
        """Bytes the server holds for sending to this peer (0 unless congested).

        Plain TCP: what waits in :class:`~flashstream.sendqueue.HeldPieces`
        plus what the transport holds (:func:`~flashstream.sendqueue.transport_held`),
        i.e. the memory this player costs.  Another transport with a Twisted
        TCP buffer: that buffer; otherwise (TLS) the bytes written since the
        transport asked us to pause.
        """
        if not self._congested:
            return 0
        held = transport_held(self.transport)
        if self._held is not None:
            return self._held.held_bytes() + held
        if isinstance(getattr(self.transport, "dataBuffer", None), bytes):
            return held
        return self._backlog

    def backlog_full(self) -> bool:
        """True while half of ``max_send_backlog`` or more waits to be sent.

        Players then skip video to the next keyframe, so the backlog stays
        under ``max_send_backlog`` (the hard cap, see :meth:`_check_backlog`).
        """
        return self._congested and self.send_backlog() >= self.factory.limits.max_send_backlog // 2

    def _check_backlog(self, adding: int) -> bool:
        """Before writing ``adding`` bytes to a congested transport: drop a
        player that would pass ``max_send_backlog`` or that stayed past half of
        it (skipping video) for ``slow_player_timeout`` seconds.  False if it
        was dropped."""
        limits = self.factory.limits
        backlog = self.send_backlog()
        if backlog + adding > limits.max_send_backlog:
            self._drop(
                "too far behind ({backlog} bytes waiting, limit {limit})",
                backlog=backlog + adding,
                limit=limits.max_send_backlog,
            )
            return False
        if backlog < limits.max_send_backlog // 2:
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

    # -- what applications may do with the client ----------------------------------

    def call(self, method: str, *args: object, timeout: float | None = None) -> Deferred[object]:
        """Call ``method`` on the client; the Deferred fires with its ``_result`` value."""
        assert self.calls is not None
        return self.calls.call(method, *args, timeout=timeout)

    def notify(self, method: str, *args: object) -> None:
        """Call ``method`` on the client without asking for an answer."""
        if self.calls is not None:
            self.calls.notify(method, *args)

    def _send_call(self, command: cmd.Command) -> None:
        if self._alive():
            assert self.connection is not None
            self.connection.send_command(0, command)
            self._flush()

    def deliver_shared_object(self, message: SharedObjectMessage) -> None:
        """Send a shared object message to the client."""
        if self._alive():
            assert self.connection is not None
            self.connection.send_shared_object(message)
            self._flush()

    def disconnect(self, reason: str = "closed by the application") -> None:
        """Close the connection (asked by the application)."""
        if self.connection is not None and not self._dropped:
            self._drop("{reason}", quiet=True, reason=reason)

    def close_stream(self, stream: NetStream) -> None:
        """End what ``stream`` publishes or plays; its cleanups tell the client."""
        stream.close()
        self._flush()

    def stream_mode(self, stream: NetStream) -> StreamMode | None:
        """What ``stream`` does now (None once it is gone)."""
        if self.connection is None or self.streams.get(stream.stream_id) is not stream:
            return None
        return self.connection.stream_mode(stream.stream_id)

    def _alive(self) -> bool:
        return (
            self.connection is not None
            and not self._dropped
            and self.connection.state is State.CONNECTED
        )

    # -- helpers ---------------------------------------------------------------

    def still_wanted(self, key: int) -> bool:
        """Whether the connect (key 0) or stream ``key`` decision still matters.

        An application that finishes deciding after the client left or closed
        the stream checks this before it installs anything.
        """
        return key in self._wanted

    def _decide(self, key: int, decision: Callable[[], object]) -> Deferred[object]:
        """Run an application decision that may return a Deferred, with a timeout."""
        self._wanted.add(key)
        deferred: Deferred[object] = bounded(
            decision, self.factory.decision_timeout, self.factory.reactor
        )
        if deferred.called:
            self._wanted.discard(key)
        else:
            self._deciding[key] = deferred
        return deferred

    def _settled(self, key: int, deferred: Deferred[object]) -> bool:
        """Forget a settled decision; False if it is stale (cancelled, client gone)."""
        if deferred in self._stale:
            self._stale.discard(deferred)
            return False
        if self._deciding.get(key) is deferred:
            del self._deciding[key]
            self._wanted.discard(key)
        if self.connection is None:
            return False
        return not self._dropped and self.connection.state is not State.CLOSED

    def _refusal(self, failure: Failure, code: str, what: str) -> tuple[str, str]:
        """The (code, description) a client gets for a failed decision; logs surprises."""
        error = failure.value
        if isinstance(error, Rejected):
            return error.code, error.description
        if isinstance(error, (TimeoutError, CancelledError)):
            self._log.warn(
                "Application {app} did not decide on {what} from {peer} within {timeout}s",
                app=self.app_name,
                what=what,
                peer=self.peer,
                timeout=self.factory.decision_timeout,
            )
            return code, "The application did not answer in time."
        self._log.failure(
            "Application {app} failed on {what} from {peer}",
            failure,
            app=self.app_name,
            what=what,
            peer=self.peer,
        )
        return code, "The application failed."

    def _transport(self) -> ITCPTransport:
        assert self.transport is not None
        return cast(ITCPTransport, self.transport)

    def _flush(self) -> None:
        connection = self.connection
        if connection is None:
            return
        out = connection.data_to_send_sequence()
        if out:
            if self._congested:  # the backlog is checked once per write, not per message
                size = sum(map(len, out))
                if not self._dropped and not self._check_backlog(size):
                    return  # dropped: these bytes are discarded
                self._backlog += size
            self._write(out)

    def _write(self, out: list[bytes]) -> None:
        """Send ``out`` now, or hold it (plain TCP) while the transport is paused."""
        held = self._held
        if self._congested or (held is not None and held.waiting):
            if held is None and self._direct:  # made on first need: most never wait
                held = self._held = HeldPieces(self._transport(), direct=True)
            if held is not None:
                held.hold(out)
                return
        transport = self.transport
        assert transport is not None
        write_through(transport, out, self._direct)

    def _send_now(self, data: bytes) -> bool:
        """Write a lockstep group's ``data``.  False if the player must leave
        the group: dropped, or its backlog is filling so its gate must skip
        video.

        Called for every member of every group on every publisher read, so
        the common case -- plain TCP, nothing queued anywhere -- is one
        ``send`` with no further calls (:func:`send_at_once`).
        """
        connection = self.connection
        if connection is None or self._dropped:
            return False
        held = self._held
        if self._direct and not self._congested and (held is None or not held.waiting):
            connection.bytes_sent += len(data)
            send_at_once(self.transport, data)  # type: ignore[arg-type]
            return True
        size = len(data)
        if self._congested:
            if not self._check_backlog(size):
                return False  # dropped: these bytes are discarded
            self._backlog += size
        connection.count_sent(size)
        self._write([data])
        return not self._congested or not self.backlog_full()

    def _direct_send(self) -> DirectSend | None:
        """How a lockstep group may send to our socket itself: only on plain
        TCP with nothing queued (here or in Twisted) and nothing amiss.  The
        group keeps it while we are a member; any other write on the
        connection makes us leave first, and a partial send ends it
        (:meth:`_send_rest`)."""
        transport = self.transport
        connection = self.connection
        if not self._direct or connection is None or self._dropped or self._congested:
            return None
        held = self._held
        conn = cast(tcp.Connection, transport)
        if (held is not None and held.waiting) or not nothing_queued(conn):
            return None
        return DirectSend(conn.socket.send, connection)

    def _send_rest(self, data: bytes, sent: int) -> None:
        """A lockstep group's direct send took ``sent`` bytes of ``data``: count
        it all and queue the rest behind Twisted's (empty) queue."""
        connection = self.connection
        if connection is None:
            return
        connection.bytes_sent += len(data)
        transport = self.transport
        assert transport is not None
        transport.write(data[sent:] if sent else data)

    def _drop(self, reason_format: str, *, quiet: bool = False, **fields: object) -> None:
        """Log why (a format string with ``fields``), send what is queued, close.

        ``quiet`` logs at info level: nothing went wrong (server shutdown).
        """
        if self._dropped:
            return
        self._dropped = True
        for stream in list(self.streams.values()):
            stream.quit_lockstep()  # nothing more goes out past our own queue
        log = self._log.info if quiet else self._log.warn
        log("Dropping {peer}: " + reason_format, peer=self.peer, **fields)
        self._flush()
        held = self._held
        if held:
            # Past half the cap it is stale media (the player was skipping);
            # below, Twisted's copy of it still fits in the cap.
            if held.held_bytes() > self.factory.limits.max_send_backlog // 2:
                held.clear()
            else:
                held.feed(lambda: False)
        # TLS (TLSMemoryBIOProtocol) only closes once no producer is
        # registered; TCP does not care.  Without this an RTMPS client that
        # was refused or dropped stayed connected.
        cast(IConsumer, self.transport).unregisterProducer()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.factory.reactor.callLater(self.factory.limits.close_timeout, self._abort)
        self._transport().loseConnection()

    def _notify(self, kind: str, **fields: Any) -> None:
        for sink in list(self.factory.event_sinks):
            try:
                sink(kind, self, fields)
            except Exception:
                self._log.failure(
                    "Event sink failed on {kind} of {peer}", kind=kind, peer=self.peer
                )

    def ping(self) -> None:
        """Refresh ``rtt_ms``: the kernel's RTT of a TCP socket (sends
        nothing, see :mod:`flashstream.tcpinfo`), else a PingRequest whose
        answer sets it."""
        rtt = kernel_rtt_ms(self.transport)
        if rtt is not None:
            self.rtt_ms = rtt
            return
        if self._alive():
            assert self.connection is not None
            self.connection.send_ping(int(self.factory.reactor.seconds() * 1000))
            self._flush()

    def _abort(self) -> None:
        """A dropped peer did not take its last bytes in time: cut it off."""
        self._timer = None
        self._log.info(
            "Aborting {peer}: its last bytes did not drain within {timeout}s",
            peer=self.peer,
            timeout=self.factory.limits.close_timeout,
        )
        self._transport().abortConnection()

    def goodbye(self, reason: str = "server shutting down") -> None:
        """End every stream politely (Play.Stop, Unpublish.Success), then close.

        The server calls it when stopping; an administrator's drop gives its ``reason``.
        """
        connection = self.connection
        if connection is not None and connection.state.value == "connected":
            for stream_id, stream in self.streams.items():
                mode = connection.stream_mode(stream_id)
                if mode is StreamMode.PLAYING:
                    connection.stop_play(stream_id, stream.name)
                elif mode is StreamMode.PUBLISHING:
                    connection.end_publish(stream_id, stream.name)
        self._drop("{reason}", quiet=True, reason=reason)

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
        if event.encrypted:
            self.transport_name = ENCRYPTED_NAMES.get(self.transport_name, self.transport_name)
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
        self.connect_query = event.query
        self.connect_arguments = event.arguments
        self.app_name = event.app
        connection = self.connection
        deferred = self._decide(0, lambda: app.connect(self))

        def accepted(_: object) -> None:
            if not self._settled(0, deferred) or connection.state is not State.CONNECT_PENDING:
                self._log.info(
                    "{peer} left before {app} accepted it", peer=self.peer, app=event.app
                )
                try:
                    app.disconnect(self)
                except Exception:
                    self._log.failure("Application {app} failed on disconnect", app=event.app)
                return
            self.app = app
            self._accepted = True
            self._notify("connect")
            self._log.info(
                "{peer} connected to {app} over {transport} ({flash_version})",
                peer=self.peer,
                app=event.app,
                transport=self.transport_name,
                flash_version=event.properties.get("flashVer", "?"),
            )
            try:
                for replayed in connection.accept_connect(event.transaction_id):
                    self._handle(replayed)
            except RemoteProtocolError as error:
                self._drop("protocol error: {error}", error=error)
                return
            self._flush()

        def refused(failure: Failure) -> None:
            if not self._settled(0, deferred) or connection.state is not State.CONNECT_PENDING:
                return
            code, description = self._refusal(failure, "NetConnection.Connect.Rejected", "connect")
            connection.reject_connect(event.transaction_id, description, code)
            self._drop("connect refused by {app}: {why}", app=event.app, why=description)

        deferred.addCallbacks(accepted, refused)

    def _on_stream_created(self, event: ev.StreamCreated) -> None:
        assert self.connection is not None
        stream = NetStream(
            self.connection,
            event.stream_id,
            self._flush,
            flush_media=partial(self.factory.hub.flush_soon, self._flush_bound),
        )
        stream.congested = self.is_congested
        stream.backlog_full = self.backlog_full
        stream.send_now = self._send_now
        stream.direct_send = self._direct_send
        stream.send_rest = self._send_rest
        self.streams[event.stream_id] = stream

    def _begin_request(
        self, event: ev.PublishRequested | ev.PlayRequested, busy_code: str
    ) -> NetStream | None:
        """The stream a publish/play is for, reset and renamed; None to ignore it.

        None when the stream was deleted later in the same read (its
        StreamClosed follows) or when a previous request on it is still being
        decided (then ``busy_code`` is sent).
        """
        assert self.connection is not None
        if self.connection.stream_mode(event.stream_id) is None:
            return None
        if event.stream_id in self._deciding:
            self.connection.send_status(
                event.stream_id,
                "error",
                busy_code,
                "The previous request on this stream is still being decided.",
                details=event.name,
            )
            return None
        stream = self.streams[event.stream_id]
        stream.close()
        stream.name = event.name
        stream.query = event.query
        return stream

    def _on_publish(self, event: ev.PublishRequested) -> None:
        assert self.connection is not None and self.app is not None
        stream = self._begin_request(event, "NetStream.Publish.BadName")
        if stream is None:
            return
        connection = self.connection
        app = self.app
        deferred = self._decide(
            event.stream_id, lambda: app.publish(self, stream, event.name, event.publish_type)
        )

        def accepted(_: object) -> None:
            if not self._settled(event.stream_id, deferred) or self.stream_mode(stream) is None:
                stream.close()  # the client left or closed the stream meanwhile
                return
            stream.add_cleanup(lambda: self._end_publish(stream))
            stream.add_cleanup(lambda: self._notify("stop", stream=stream, mode="publish"))
            connection.accept_publish(event.stream_id, stream.name)
            self._notify("publish", stream=stream, publish_type=event.publish_type)
            self._log.info(
                "{peer} publishes {app}/{name} ({kind})",
                peer=self.peer,
                app=self.app_name,
                name=stream.name,
                kind=event.publish_type,
            )
            self._flush()

        def refused(failure: Failure) -> None:
            if not self._settled(event.stream_id, deferred) or self.stream_mode(stream) is None:
                return
            self._report_refusal(
                event, failure, "NetStream.Publish.Denied", "publish", "may not publish"
            )

        deferred.addCallbacks(accepted, refused)

    def _report_refusal(
        self,
        event: ev.PublishRequested | ev.PlayRequested,
        failure: Failure,
        default_code: str,
        action: str,
        verb: str,
    ) -> None:
        """Tell the client (onStatus error) and the log why a publish/play was refused."""
        assert self.connection is not None
        code, description = self._refusal(failure, default_code, action)
        self._log.info(
            "{peer} " + verb + " {app}/{name}: {why}",
            peer=self.peer,
            app=self.app_name,
            name=event.name,
            why=description,
        )
        self.connection.send_status(event.stream_id, "error", code, description, details=event.name)
        self._flush()

    def silent_for(self) -> float:
        """Seconds since this peer last sent anything (takeover asks)."""
        return self.factory.reactor.seconds() - self._last_input

    def evict_publisher(self, stream_id: int, name: str, code: str, description: str) -> None:
        """Another publisher took ``name`` over: tell this one why and disconnect it."""
        if self.connection is not None and not self._dropped and stream_id in self.streams:
            self.connection.send_status(stream_id, "error", code, description, details=name)
        self._drop("{name} taken over by another publisher", name=name, quiet=True)

    def _end_publish(self, stream: NetStream) -> None:
        if self.connection is not None and not self._dropped and self.streams.get(stream.stream_id):
            self.connection.end_publish(stream.stream_id, stream.name)

    def _on_play(self, event: ev.PlayRequested) -> None:
        assert self.connection is not None and self.app is not None
        stream = self._begin_request(event, "NetStream.Play.Failed")
        if stream is None:
            return
        connection = self.connection
        app = self.app

        def start() -> None:
            connection.start_play(
                event.stream_id, stream.name, reset=event.reset, recorded=stream.recorded
            )

        stream.pending_start = start
        stream.play_duration = event.duration
        bytes_out_before = stream.bytes_out  # the cached start goes out inside play()
        deferred = self._decide(
            event.stream_id, lambda: app.play(self, stream, event.name, event.start)
        )

        def accepted(_: object) -> None:
            if not self._settled(event.stream_id, deferred) or self.stream_mode(stream) is None:
                stream.pending_start = None
                stream.close()  # the client left or closed the stream meanwhile
                return
            stream.add_cleanup(lambda: self._notify("stop", stream=stream, mode="play"))
            self._notify(
                "play", stream=stream, start=event.start, bytes_out_before=bytes_out_before
            )
            stream.ensure_started()
            self._nagle_soon()
            self._log.info(
                "{peer} plays {app}/{name}", peer=self.peer, app=self.app_name, name=stream.name
            )

        def refused(failure: Failure) -> None:
            stream.pending_start = None
            if not self._settled(event.stream_id, deferred) or self.stream_mode(stream) is None:
                return
            self._report_refusal(event, failure, "NetStream.Play.Failed", "play", "cannot play")

        deferred.addCallbacks(accepted, refused)

    def _on_stream_closed(self, event: ev.StreamClosed) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        pending = self._deciding.pop(event.stream_id, None)
        self._wanted.discard(event.stream_id)
        if pending is not None:
            self._stale.add(pending)
            pending.cancel()
        stream.close()
        if event.deleted:
            del self.streams[event.stream_id]

    def _on_media(self, event: ev.MediaReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.bytes_in += len(event.message.payload)
        if stream is not None and stream.media_sink is not None:
            stream.media_sink(event.message)

    def _on_data(self, event: ev.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        stream.bytes_in += len(event.message.payload)
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
        self._notify("pause", stream=stream, paused=event.paused, position=event.position)
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
        self._notify("seek", stream=stream, position=event.position)
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

    def _on_ping_answered(self, event: ev.PingAnswered) -> None:
        now_ms = int(self.factory.reactor.seconds() * 1000)
        self.rtt_ms = float((now_ms - event.timestamp) % 2**32)

    def _on_acknowledgement(self, event: ev.AcknowledgementReceived) -> None:
        self.acknowledged = event.sequence_number

    def _on_call(self, event: ev.CallReceived) -> None:
        assert self.connection is not None
        command = event.command
        txn = command.transaction_id
        if command.name in ("_result", "_error"):
            if self.calls is None or not self.calls.answer(command):
                self._log.debug(
                    "{peer} answered a call we did not make ({txn})", peer=self.peer, txn=txn
                )
            return
        if command.name == "getStreamLength" and self.app is not None:
            if txn > 0:
                name = command.arguments[0] if command.arguments else ""
                length = self.app.stream_length(self, name if isinstance(name, str) else "")
                self.connection.send_result(txn, None, float(length))
            return
        handler = ICallHandler(self.app, None)
        if handler is None:
            if txn > 0:
                self.connection.send_error(txn, f"Method {command.name!r} is not available.")
            return
        connection = self.connection
        deferred: Deferred[object] = bounded(
            handler.call,
            self.factory.decision_timeout,
            self.factory.reactor,
            self,
            command.name,
            command.arguments,
        )

        def answered(value: object) -> None:
            if txn > 0 and self._alive():
                connection.send_result(txn, None, value)
                self._flush()

        def failed(failure: Failure) -> None:
            error = failure.value
            if isinstance(error, Rejected):
                description = error.description
            elif isinstance(error, (TimeoutError, CancelledError)):
                description = f"{command.name} was not answered in time."
            else:
                description = str(error) or type(error).__name__
            self._log.info(
                "Call {method} from {peer} failed: {why}",
                method=command.name,
                peer=self.peer,
                why=description,
            )
            if txn > 0 and self._alive():
                connection.send_error(txn, description)
                self._flush()

        deferred.addCallbacks(answered, failed)

    def _on_shared_object(self, event: ev.SharedObjectReceived) -> None:
        handler = ISharedObjectHandler(self.app, None)
        if handler is None:
            self._log.debug(
                "{peer} used shared object {name}, which {app} does not serve",
                peer=self.peer,
                name=event.message.name,
                app=self.app_name,
            )
            return
        handler.shared_object_message(self, event.message)

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
        ev.SharedObjectReceived: _on_shared_object,
        ev.PingAnswered: _on_ping_answered,
        ev.AcknowledgementReceived: _on_acknowledgement,
    }
