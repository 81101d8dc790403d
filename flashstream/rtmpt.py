# -*- test-case-name: tests.test_rtmpt -*-
"""
RTMPT and RTMPTS: RTMP tunnelled in HTTP POSTs, served by a Klein app.

:class:`RTMPTGateway` answers ``POST /fcs/ident2``, ``/open/1``,
``/send/SID/SEQ``, ``/idle/SID/SEQ`` and ``/close/SID/SEQ``.  Each session
drives an unchanged :class:`~flashstream.protocol.RTMPServerProtocol` through
a :class:`PollingTransport` (an ``ITransport`` whose ``write`` queues bytes
for the next poll, as Twisted's ``H2Stream`` runs ``twisted.web`` over one
HTTP/2 stream): a body goes to ``dataReceived``, and every answer is the
polling byte plus the queued bytes.  The rules (ids, sequence numbers,
back-off, limits, expiry) live in :mod:`flashstream.rtmp.tunnel`; this module
only moves bytes and runs the expiry timer on the injected reactor.

The same gateway serves RTMPTS: a request that came over TLS makes an
``rtmpts`` session.  Mounted on the ``--http`` web root by ``tap.py``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any, cast

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    ITransport,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from .protocol import RTMPServerFactory, RTMPServerProtocol
from .rtmp.tunnel import Command, SessionTable, TunnelLimits, TunnelSession
from .tcpinfo import set_no_delay

#: The first path segments RTMPT uses (mounted on the web root).
SEGMENTS = ("fcs", "open", "send", "idle", "close")

CONTENT_TYPE = b"application/x-fcs"


@implementer(ITransport, IConsumer)
class PollingTransport:
    """
    The transport of one RTMPT session's RTMP protocol.

    ``write`` queues bytes in the :class:`~flashstream.rtmp.tunnel.TunnelSession`
    for the next poll; a registered push producer is paused while too much
    waits and resumed once polls drained it; ``loseConnection`` lets the
    client fetch what is left, then ends the session.
    """

    def __init__(
        self, gateway: RTMPTGateway, session: TunnelSession, peer: IAddress, host: IAddress
    ) -> None:
        self.gateway = gateway
        self.session = session
        self.peer = peer
        self.host = host
        self.producer: IPushProducer | None = None
        self.paused = False
        self.disconnecting = False

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the client's next poll."""
        if self.disconnecting and self.session.finished():
            return
        self.session.queue(data)
        self.gateway.data_ready(self.session)
        if self.producer is not None and not self.paused and self.session.congested:
            self.paused = True
            self.producer.pauseProducing()

    def writeSequence(self, data: Any) -> None:
        """Queue several pieces."""
        for piece in data:
            self.write(piece)

    def drained(self) -> None:
        """A poll fetched bytes: resume a paused producer if little is left."""
        if self.producer is not None and self.paused and self.session.drained:
            self.paused = False
            self.producer.resumeProducing()

    def loseConnection(self) -> None:
        """The server side is done: the client gets what is queued, then the session ends."""
        if not self.disconnecting:
            self.disconnecting = True
            self.gateway.closing(self.session)

    def abortConnection(self) -> None:
        """End the session now, dropping what is queued."""
        self.disconnecting = True
        self.gateway.teardown(self.session, Failure(ConnectionLost("aborted")))

    def getPeer(self) -> IAddress:
        """The HTTP client that opened the session (a proxy, behind one)."""
        return self.peer

    def getHost(self) -> IAddress:
        """Our side of the HTTP connection that opened the session."""
        return self.host

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """Remember the producer to pause while the client is behind."""
        self.producer = producer

    def unregisterProducer(self) -> None:
        """Forget the producer."""
        self.producer = None


class _Remount(Resource):
    """Hands a Klein resource the whole path, its own first segment included."""

    isLeaf = True

    def __init__(self, wrapped: IResource) -> None:
        super().__init__()
        self.wrapped = wrapped

    def render(self, request: IRequest) -> Any:
        """Put the segment we were mounted at back in front of the path."""
        request.postpath.insert(0, request.prepath.pop())
        return self.wrapped.render(request)


class RTMPTGateway:
    """The RTMPT endpoints; one :class:`RTMPServerProtocol` per session."""

    app = Klein()
    _log = Logger()

    def __init__(
        self,
        factory: RTMPServerFactory,
        reactor: IReactorTime,
        limits: TunnelLimits = TunnelLimits(),
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.factory = factory
        self.reactor = reactor
        self.limits = limits
        self.sessions = SessionTable(random_bytes, limits)
        self.protocols: dict[str, RTMPServerProtocol] = {}
        self.transports: dict[str, PollingTransport] = {}
        self._timer: IDelayedCall | None = None
        self._refused = 0
        self._waiters: dict[str, list[Callable[[], None]]] = {}
        self._wake_pending: dict[str, bool] = {}

    def mount_on(self, root: Any) -> None:
        """Mount the RTMPT segments on a :class:`~flashstream.web.WebRoot`."""
        resource = _Remount(self.app.resource())
        for segment in SEGMENTS:
            root.mount(segment, resource)

    # -- routes ------------------------------------------------------------------

    @app.route("/fcs/ident2", methods=["POST"])
    def ident(self, request: IRequest) -> bytes:
        """Flash asks first; like Red5 we have nothing to say (Flash carries on)."""
        return self._reply(request, b"", code=404)

    @app.route("/open/<int:version>", methods=["POST"])
    def open(self, request: IRequest, version: int) -> bytes:
        """Start a session: a new RTMP protocol, and its id plus newline as the answer."""
        if (refusal := self._check_body(request)) is not None:
            return refusal
        session = self.sessions.open(self.reactor.seconds())
        if session is None:
            if self._refused == 0:
                self._log.warn(
                    "RTMPT session limit ({limit}) reached: refusing new sessions from {peer}",
                    limit=self.limits.max_sessions,
                    peer=_describe(request.getClientAddress()),
                )
            self._refused += 1
            return self._reply(request, b"too many sessions\n", code=503)
        if self._refused:
            self._log.info(
                "RTMPT sessions accepted again after {refused} refused", refused=self._refused
            )
            self._refused = 0
        peer = request.getClientAddress()
        transport = PollingTransport(self, session, peer, request.getHost())
        protocol = self.factory.buildProtocol(peer)
        if protocol is None:  # max_connections(_per_address), or shutting down; logged there
            self.sessions.remove(session.session_id)
            return self._reply(request, b"connection refused\n", code=503)
        assert isinstance(protocol, RTMPServerProtocol)
        protocol.transport_name = "rtmpts" if request.isSecure() else "rtmpt"
        self.protocols[session.session_id] = protocol
        self.transports[session.session_id] = transport
        protocol.makeConnection(transport)
        self._log.info(
            "RTMPT session {session} opened for {peer} ({transport})",
            session=session.session_id,
            peer=_describe(peer),
            transport=protocol.transport_name,
        )
        self._schedule()
        return self._reply(request, session.session_id.encode("ascii") + b"\n")

    @app.route("/send/<session_id>/<int:seq>", methods=["POST"])
    def send(self, request: IRequest, session_id: str, seq: int) -> bytes | Deferred[bytes]:
        """RTMP bytes from the client; answer with ours."""
        return self._poll(request, Command.SEND, session_id, seq)

    @app.route("/idle/<session_id>/<int:seq>", methods=["POST"])
    def idle(self, request: IRequest, session_id: str, seq: int) -> bytes | Deferred[bytes]:
        """A poll: answer with what is queued (an empty poll is held briefly)."""
        return self._poll(request, Command.IDLE, session_id, seq)

    @app.route("/close/<session_id>/<int:seq>", methods=["POST"])
    def close(self, request: IRequest, session_id: str, seq: int) -> bytes:
        """The client ends the session."""
        session = self.sessions.get(session_id)
        if session is None:
            return self._unknown(request, session_id)
        self._log.info("RTMPT session {session} closed by the client", session=session_id)
        self.teardown(session, Failure(ConnectionDone("closed by the client")))
        return self._reply(request, b"\x00")

    # -- sessions ------------------------------------------------------------------

    def _poll(
        self, request: IRequest, command: Command, session_id: str, seq: int
    ) -> bytes | Deferred[bytes]:
        session = self.sessions.get(session_id)
        if session is None:
            return self._unknown(request, session_id)
        if (refusal := self._check_body(request)) is not None:
            self._log.warn(
                "Dropping RTMPT session {session}: request body over {limit} bytes",
                session=session_id,
                limit=self.limits.max_request_body,
            )
            self.teardown(session, Failure(ConnectionLost("request body too large")))
            return refusal
        body = request.content.read() if request.content is not None else b""
        delivery = session.receive(command, seq, body, self.reactor.seconds())
        if delivery.duplicate:
            self._log.debug(
                "RTMPT session {session}: request {seq} repeated, body ignored",
                session=session_id,
                seq=seq,
            )
        if delivery.skipped:
            self._log.warn(
                "RTMPT session {session}: requests {skipped} never arrived; going on without them",
                session=session_id,
                skipped=list(delivery.skipped),
            )
        protocol = self.protocols[session_id]
        for data in delivery.bodies:
            if session.closing:
                break
            protocol.dataReceived(data)
        if command is Command.IDLE and not session.pending and not session.closing:
            return self._hold(request, session)
        return self._answer(request, session)

    def _answer(self, request: IRequest, session: TunnelSession) -> bytes:
        answer = session.answer()
        transport = self.transports.get(session.session_id)
        if transport is not None:
            transport.drained()
        if session.finished():
            self.teardown(session, Failure(ConnectionDone("closed by the server")))
        self._schedule()
        return self._reply(request, answer)

    def _hold(self, request: IRequest, session: TunnelSession) -> Deferred[bytes]:
        """
        Keep an empty poll up to ``idle_hold`` seconds, answering as soon as
        data is queued: librtmp polls again at once after an empty answer
        (it ignores the polling byte), which would spin both sides.
        """
        result: Deferred[bytes] = Deferred()
        waiters = self._waiters.setdefault(session.session_id, [])

        def fire() -> None:
            if timer.active():
                timer.cancel()
            if wake in waiters:
                waiters.remove(wake)
                result.callback(self._answer(request, session))

        def abandon(reason: object) -> None:
            if timer.active():
                timer.cancel()
            if wake in waiters:
                waiters.remove(wake)

        wake = fire
        timer = self.reactor.callLater(self.limits.idle_hold, fire)
        waiters.append(wake)
        cast(Any, request).notifyFinish().addErrback(abandon)
        return result

    def data_ready(self, session: TunnelSession) -> None:
        """Bytes were queued: wake one held poll once the current burst is written."""
        waiters = self._waiters.get(session.session_id)
        if waiters and not self._wake_pending.get(session.session_id):
            self._wake_pending[session.session_id] = True

            def wake() -> None:
                self._wake_pending.pop(session.session_id, None)
                if waiters:
                    waiters[0]()

            self.reactor.callLater(0, wake)

    def closing(self, session: TunnelSession) -> None:
        """The protocol closed its side: end now if nothing waits, else after the next poll."""
        session.closing = True
        self._release(session)
        if session.finished() and session.session_id in self.sessions:
            self.teardown(session, Failure(ConnectionDone("closed by the server")))

    def _release(self, session: TunnelSession) -> None:
        """Answer every held poll of the session now."""
        for wake in list(self._waiters.pop(session.session_id, [])):
            wake()

    def teardown(self, session: TunnelSession, reason: Failure) -> None:
        """Forget the session and tell its protocol the connection is gone."""
        if self.sessions.remove(session.session_id) is None:
            return
        session.closing = True
        self._release(session)
        self.transports.pop(session.session_id, None)
        protocol = self.protocols.pop(session.session_id, None)
        if protocol is not None:
            protocol.connectionLost(reason)

    def _schedule(self) -> None:
        deadline = self.sessions.next_deadline()
        if deadline is None:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            return
        delay = max(0.0, deadline - self.reactor.seconds())
        if self._timer is not None and self._timer.active():
            self._timer.reset(delay)
        else:
            self._timer = self.reactor.callLater(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        for session in self.sessions.expired(self.reactor.seconds()):
            self._log.info(
                "RTMPT session {session} expired after {timeout}s without a request",
                session=session.session_id,
                timeout=self.limits.session_timeout,
            )
            self.teardown(session, Failure(ConnectionLost("RTMPT session expired")))
        self._schedule()

    # -- HTTP details ----------------------------------------------------------------

    def _check_body(self, request: IRequest) -> bytes | None:
        content = request.content
        if content is None:
            return None
        size = content.seek(0, os.SEEK_END)
        content.seek(0)
        if size > self.limits.max_request_body:
            return self._reply(request, b"request body too large\n", code=413)
        return None

    def _unknown(self, request: IRequest, session_id: str) -> bytes:
        self._log.info(
            "RTMPT request from {peer} for unknown session {session!r}",
            peer=_describe(request.getClientAddress()),
            session=session_id[:64],
        )
        return self._reply(request, b"unknown session\n", code=404)

    @staticmethod
    def _reply(request: IRequest, body: bytes, code: int = 200) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", CONTENT_TYPE)
        request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"Connection", b"Keep-Alive")
        return body


def _describe(address: IAddress) -> str:
    return f"{getattr(address, 'host', '?')}:{getattr(address, 'port', '?')}"


class BoundedRequest(Request):
    """
    A request whose body may not exceed the site's ``max_request_body``.

    The check runs when the headers announce the length (and per chunk for
    chunked bodies), so a huge body is refused with 413 before it is read.
    """

    _log = Logger()
    _too_large = False

    def _limit(self) -> int:
        site = getattr(self.channel, "site", None)
        return int(getattr(site, "max_request_body", TunnelLimits().max_request_body))

    def gotLength(self, length: int | None) -> None:
        """Refuse at once a body announced too large."""
        if length is not None and length > self._limit():
            self._refuse(length)
            return
        super().gotLength(length)
        self._received = 0

    def handleContentChunk(self, data: bytes) -> None:
        """Count a chunked body as it comes."""
        if self._too_large:
            return
        self._received = getattr(self, "_received", 0) + len(data)
        if self._received > self._limit():
            self._refuse(self._received)
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        """Never serve a refused request."""
        if not self._too_large:
            super().process()

    def _refuse(self, length: int) -> None:
        self._too_large = True
        self.content = io.BytesIO()
        transport = self.channel.transport
        peer = transport.getPeer() if transport is not None else None
        self._log.warn(
            "Dropping {peer}: HTTP request body of {length} bytes is over the limit "
            "of {limit} bytes",
            peer=_describe(peer) if peer is not None else "?",
            length=length,
            limit=self._limit(),
        )
        if transport is not None:
            transport.write(
                b"HTTP/1.1 413 Request Entity Too Large\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            transport.loseConnection()


class LoggingHTTPChannel(HTTPChannel):
    """An HTTP channel that says in the log why it answered 400 and hung up."""

    _log = Logger()

    def connectionMade(self) -> None:
        """Send small answers at once (RTMPT polls are small request/response pairs)."""
        super().connectionMade()
        set_no_delay(self.transport, True)

    def _respondToBadRequestAndDisconnect(self) -> None:
        peer = self.transport.getPeer() if self.transport is not None else None
        self._log.warn(
            "Dropping {peer}: malformed HTTP request (answered 400)",
            peer=_describe(peer) if peer is not None else "?",
        )
        super()._respondToBadRequestAndDisconnect()


class QuietTunnelSite(Site):
    """A ``Site`` whose access log leaves out RTMPT polls (dozens a second per client)."""

    def log(self, request: Any) -> None:
        """Log the request unless it is part of an RTMPT session."""
        segment = request.path.split(b"/", 2)[1:2]
        if request.method == b"POST" and segment and segment[0].decode("latin-1") in SEGMENTS:
            return
        super().log(request)


def make_site(resource: IResource, reactor: Any, max_request_body: int) -> Site:
    """The ``Site`` of the web root: bounded bodies, logged bad requests, quiet polls."""
    site = QuietTunnelSite(resource, requestFactory=BoundedRequest, reactor=reactor)
    site.protocol = LoggingHTTPChannel  # type: ignore[assignment]
    site.max_request_body = max_request_body  # type: ignore[attr-defined]
    site.noisy = False
    return site
