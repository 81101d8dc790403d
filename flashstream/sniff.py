# -*- test-case-name: tests.test_sniff -*-
"""
First-bytes dispatch: one port, several protocols, told apart by how they start.

A :class:`SniffingProtocol` reads the first bytes of a connection, decides
with :func:`classify`, builds the right protocol, connects it to the same
transport and hands it every byte read so far (as Twisted's HAProxy wrapper
forwards what follows the PROXY header):

* C0 = ``0x03``, ``0x06``, ``0x08`` or ``0x09``: RTMP (the RTMP protocol
  handles RTMPE itself); named ``rtmp``, or ``rtmps`` inside TLS;
* an HTTP request line (``GET ``, ``POST `` ...): the web :class:`Site`,
  so RTMPT (RTMPTS inside TLS) and the other HTTP routes work on this port;
* a TLS ClientHello (``0x16``) on a plain port, or anything else: a log line
  saying what arrived, and the connection is closed.

Waiting is bounded: at most :data:`MAX_PREFIX` bytes (the longest method
token) and ``timeout`` seconds on the injected reactor.
"""

from __future__ import annotations

import enum
from typing import cast

from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocolFactory, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .protocol import CONNECTION_DONE

#: C0 values of RTMP and RTMPE (plain, XTEA- and Blowfish-wrapped).
RTMP_FIRST_BYTES = frozenset({0x03, 0x06, 0x08, 0x09})
#: First byte of a TLS record carrying a handshake (the ClientHello).
TLS_HANDSHAKE = 0x16
#: HTTP methods recognised, each followed by a space.
HTTP_METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT")
#: Most bytes read before a decision ("OPTIONS " and "CONNECT " are 8 bytes).
MAX_PREFIX = max(len(method) for method in HTTP_METHODS) + 1


class Kind(enum.Enum):
    """What the first bytes of a connection say."""

    #: Not enough bytes yet.
    UNDECIDED = "undecided"
    RTMP = "rtmp"
    HTTP = "http"
    TLS = "tls"
    UNKNOWN = "unknown"


def classify(prefix: bytes) -> Kind:
    """Decide what a connection speaks from its first bytes (pure)."""
    if not prefix:
        return Kind.UNDECIDED
    first = prefix[0]
    if first in RTMP_FIRST_BYTES:
        return Kind.RTMP
    if first == TLS_HANDSHAKE:
        return Kind.TLS
    for method in HTTP_METHODS:
        token = method + b" "
        if prefix.startswith(token):
            return Kind.HTTP
        if token.startswith(prefix):
            return Kind.UNDECIDED
    return Kind.UNKNOWN


class SniffingFactory(Factory):
    """Builds a :class:`SniffingProtocol` for each connection of one listener."""

    noisy = False

    def __init__(
        self,
        rtmp_factory: IProtocolFactory,
        http_factory: IProtocolFactory | None,
        reactor: IReactorTime,
        *,
        tls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.rtmp_factory = rtmp_factory
        self.http_factory = http_factory
        self.reactor = reactor
        #: Connections arrive through TLS (rtmps / rtmpts).
        self.tls = tls
        self.timeout = timeout

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        """One sniffer per connection."""
        protocol = SniffingProtocol(cast(IAddress, addr))
        protocol.factory = self
        return protocol


class SniffingProtocol(Protocol):
    """Reads the first bytes, then passes the connection on to the right protocol."""

    _log = Logger()
    factory: SniffingFactory

    def __init__(self, addr: IAddress) -> None:
        self.addr = addr
        self.inner: Protocol | None = None
        self._buffer = b""
        self._timer: IDelayedCall | None = None
        self._closed = False

    @property
    def peer(self) -> str:
        """host:port of the client."""
        return f"{getattr(self.addr, 'host', '?')}:{getattr(self.addr, 'port', '?')}"

    def connectionMade(self) -> None:
        """Start the decision timer."""
        self._timer = self.factory.reactor.callLater(self.factory.timeout, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        """Forward once decided; until then, collect and classify."""
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        if self._closed:
            return
        self._buffer += data
        kind = classify(self._buffer[:MAX_PREFIX])
        if kind is Kind.UNDECIDED:
            return
        self._cancel_timer()
        if kind is Kind.RTMP:
            self._hand_over(self.factory.rtmp_factory, "rtmps" if self.factory.tls else "rtmp")
        elif kind is Kind.HTTP and self.factory.http_factory is not None:
            self._hand_over(self.factory.http_factory, None)
        elif kind is Kind.TLS and not self.factory.tls:
            self._reject(
                "a TLS ClientHello on a plain port (rtmps:// belongs on the --rtmps listener)"
            )
        elif kind is Kind.HTTP:
            self._reject("HTTP, but no web site is served here")
        else:
            self._reject(
                "first bytes {prefix!r} are neither RTMP (C0 0x03/0x06/0x08/0x09) nor HTTP",
                prefix=self._buffer[:MAX_PREFIX],
            )

    def connectionLost(self, reason: Failure = CONNECTION_DONE) -> None:
        """Pass the loss on, or just stop waiting."""
        self._cancel_timer()
        if self.inner is not None:
            self.inner.connectionLost(reason)

    def _hand_over(self, factory: IProtocolFactory, transport_name: str | None) -> None:
        inner = factory.buildProtocol(self.addr)
        if inner is None:
            self._reject("the listener refused the connection")
            return
        if transport_name is not None:
            inner.transport_name = transport_name  # type: ignore[attr-defined]
        assert isinstance(inner, Protocol)
        self.inner = inner
        data, self._buffer = self._buffer, b""
        assert self.transport is not None
        inner.makeConnection(self.transport)
        if data:
            inner.dataReceived(data)

    def _reject(self, why: str, **fields: object) -> None:
        self._closed = True
        self._buffer = b""
        where = "TLS port" if self.factory.tls else "port"
        self._log.warn("Dropping {peer} on the " + where + ": " + why, peer=self.peer, **fields)
        assert self.transport is not None
        self.transport.loseConnection()

    def _timed_out(self) -> None:
        self._timer = None
        if self.inner is None and not self._closed:
            self._reject(
                "nothing recognisable within {timeout}s (got {prefix!r})",
                timeout=self.factory.timeout,
                prefix=self._buffer[:MAX_PREFIX],
            )

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
