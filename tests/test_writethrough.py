"""
Write-through (:mod:`flashstream.writethrough`): bytes go to the socket at
once only while Twisted's queue is empty, the rest is queued in order, and
anything but a plain TCP connection takes the ordinary path.  A real
``socketpair`` stands in for the peer; the reactor is a MemoryReactor.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import cast

import pytest
from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport

from flashstream.writethrough import _unsent, can_write_through, send_at_once, write_through
from tests.helpers import read_available


@pytest.fixture
def pair() -> Iterator[tuple[tcp.Connection, socket.socket, MemoryReactor]]:
    """A connected tcp.Connection over one end of a socketpair, and the other end."""
    ours, peer = socket.socketpair()
    reactor = MemoryReactor()
    connection = tcp.Connection(ours, Protocol(), reactor)
    connection.connected = True
    yield connection, peer, reactor
    ours.close()
    peer.close()


def test_only_plain_tcp_qualifies(
    pair: tuple[tcp.Connection, socket.socket, MemoryReactor],
) -> None:
    """A tcp.Connection with a socket may write through; a StringTransport may not."""
    connection, _, _ = pair
    assert can_write_through(connection)
    assert not can_write_through(StringTransport())


Writer = Callable[[tcp.Connection, list[bytes]], None]


def _through(connection: tcp.Connection, pieces: list[bytes]) -> None:
    write_through(connection, pieces, True)


def _at_once(connection: tcp.Connection, pieces: list[bytes]) -> None:
    send_at_once(connection, b"".join(pieces))


@pytest.fixture(params=[_through, _at_once], ids=["write_through", "send_at_once"])
def writer(request: pytest.FixtureRequest) -> Writer:
    """Both ways of writing at once: pieces (sendmsg) and one string (send)."""
    return cast(Writer, request.param)


def test_empty_queue_sends_at_once(
    pair: tuple[tcp.Connection, socket.socket, MemoryReactor], writer: Writer
) -> None:
    """With nothing queued the pieces reach the peer now; the reactor is not involved."""
    connection, peer, reactor = pair
    writer(connection, [b"head", b"body"])
    assert read_available(peer) == b"headbody"
    assert connection._tempDataBuffer == []
    assert connection not in reactor.getWriters()


def test_queued_bytes_stay_in_front(
    pair: tuple[tcp.Connection, socket.socket, MemoryReactor], writer: Writer
) -> None:
    """While Twisted has bytes queued, new pieces queue behind them (order kept)."""
    connection, peer, _ = pair
    connection.write(b"first ")
    writer(connection, [b"second"])
    assert read_available(peer) == b""
    connection.doWrite()
    assert read_available(peer) == b"first second"


def test_partial_send_queues_the_rest_in_order(
    pair: tuple[tcp.Connection, socket.socket, MemoryReactor], writer: Writer
) -> None:
    """What the socket does not take is queued; the peer gets every byte once, in order."""
    connection, peer, reactor = pair
    pieces = [bytes([n]) * 300_000 for n in range(1, 5)]
    writer(connection, pieces)
    assert connection._tempDataBuffer, "a socketpair buffer cannot take 1.2 MB"
    assert connection in reactor.getWriters()
    received = b""
    for _ in range(10_000):
        received += read_available(peer)
        if not connection.dataBuffer and not connection._tempDataBuffer:
            break
        connection.doWrite()
    received += read_available(peer)
    assert received == b"".join(pieces)


def test_not_direct_or_closing_takes_the_ordinary_path(
    pair: tuple[tcp.Connection, socket.socket, MemoryReactor],
) -> None:
    """direct=False, or a connection being closed, only queues."""
    connection, peer, _ = pair
    write_through(connection, [b"a"], False)
    assert connection._tempDataBuffer == [b"a"]
    connection.doWrite()
    connection.disconnecting = True
    write_through(connection, [b"b"], True)
    assert connection._tempDataBuffer == [b"b"]
    send_at_once(connection, b"c")
    assert connection._tempDataBuffer == [b"b", b"c"]
    assert read_available(peer) == b"a"


def test_string_transport_gets_the_pieces() -> None:
    """Transports that cannot write through receive the pieces through writeSequence."""
    transport = StringTransport()
    write_through(transport, [b"x", b"y"], can_write_through(transport))
    assert transport.value() == b"xy"


@pytest.mark.parametrize(
    ("sent", "rest"),
    [
        (0, [b"ab", b"cd", b"ef"]),
        (1, [b"b", b"cd", b"ef"]),
        (2, [b"cd", b"ef"]),
        (3, [b"d", b"ef"]),
        (5, [b"f"]),
        (6, []),
    ],
)
def test_unsent(sent: int, rest: list[bytes]) -> None:
    """The pieces left after ``sent`` bytes went out, split mid-piece where needed."""
    assert _unsent([b"ab", b"cd", b"ef"], sent) == rest
