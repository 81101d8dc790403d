"""The kernel's RTT of a connection (``flashstream.tcpinfo``) and QoS using it."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest
from twisted.internet import tcp

from flashstream import protocol as protocol_module
from flashstream.rtmp import messages as msg
from flashstream.tcpinfo import kernel_rtt_ms, tcp_socket
from tests.test_protocol import ProtocolTestCase

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="TCP_INFO's layout is Linux's"
)


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected loopback TCP pair that has carried some bytes both ways."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    for a, b in ((server, client), (client, server)):
        a.sendall(b"x" * 100)
        b.recv(100)
    yield server, client
    server.close()
    client.close()


class Wrapper:
    """Something wrapped around a transport (as TLS is)."""

    def __init__(self, transport: object) -> None:
        self.transport = transport


@linux_only
def test_rtt_of_a_tcp_connection(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    """A Twisted TCP connection over loopback has a small positive RTT in ms."""
    server, _ = tcp_pair
    conn = tcp.Connection(server, None)  # type: ignore[arg-type]
    rtt = kernel_rtt_ms(conn)
    assert rtt is not None
    assert 0 < rtt < 100


@linux_only
def test_rtt_through_wrappers(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    """The socket is found under a TLS-like wrapper, but not under too many."""
    server, _ = tcp_pair
    conn = tcp.Connection(server, None)  # type: ignore[arg-type]
    assert tcp_socket(Wrapper(conn)) is server
    assert kernel_rtt_ms(Wrapper(Wrapper(conn))) is not None
    assert tcp_socket(Wrapper(Wrapper(Wrapper(Wrapper(conn))))) is None


def test_no_socket_no_rtt() -> None:
    """Transports without a TCP socket (RTMPT, tests) give None: the caller pings."""
    assert kernel_rtt_ms(object()) is None
    assert kernel_rtt_ms(Wrapper(None)) is None


@linux_only
def test_closed_socket_no_rtt(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    """A socket closed under us gives None instead of raising."""
    server, _ = tcp_pair
    conn = tcp.Connection(server, None)  # type: ignore[arg-type]
    server.close()
    assert kernel_rtt_ms(conn) is None


class QosRttTests(ProtocolTestCase):
    """QoS asks the kernel before it pings."""

    def test_kernel_rtt_replaces_the_ping(self) -> None:
        """With a kernel RTT, ping() sets rtt_ms and sends nothing: a client
        that answers a ping delays its ACKs, and Nagle then holds its media."""
        self.publisher("cam")
        player = self.peer()
        player.play("cam")
        player.client.clear()
        self.patch(protocol_module, "kernel_rtt_ms", lambda transport: 0.25)
        player.protocol.ping()
        player.deliver()
        self.assertEqual(
            [c for c in player.client.controls() if isinstance(c, msg.PingRequest)], []
        )
        self.assertEqual(player.protocol.rtt_ms, 0.25)

    def test_ping_without_kernel_rtt(self) -> None:
        """Without one (RTMPT, other systems) a PingRequest goes out."""
        player = self.peer()
        player.play("cam")
        player.client.clear()
        player.protocol.ping()
        player.deliver()
        self.assertEqual(
            len([c for c in player.client.controls() if isinstance(c, msg.PingRequest)]), 1
        )
