"""
Held pieces (:mod:`flashstream.sendqueue`): while a plain TCP transport is
paused a player's pieces wait by reference, Twisted gets only a batch at a
time (so it never joins the whole backlog into a private copy), and what the
server holds for the player is what ``max_send_backlog`` bounds.

The HeldPieces tests use a real ``tcp.Connection`` over a ``socketpair``
(MemoryReactor, ``doWrite`` called by hand); the protocol tests use the
string-transport kit of ``tests/test_protocol.py`` with a HeldPieces put in
place of the one a plain TCP connection gets.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport

from flashstream.rtmp.limits import Limits
from flashstream.rtmp.messages import MessageType
from flashstream.sendqueue import BATCH_BYTES, PIECE_OVERHEAD, HeldPieces, transport_held
from tests.helpers import aac_frame, avc_inter, avc_keyframe, read_available
from tests.test_protocol import Peer, ProtocolTestCase


class Producer:
    """A streaming producer that records whether the transport paused it."""

    paused = False

    def pauseProducing(self) -> None:
        """The transport's buffer passed its size."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The transport drained its buffer."""
        self.paused = False

    def stopProducing(self) -> None:
        """Not used."""


@pytest.fixture
def pair() -> Iterator[tuple[tcp.Connection, socket.socket, Producer]]:
    """A connected tcp.Connection (producer registered) and the peer's socket."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    connection = tcp.Connection(ours, Protocol(), MemoryReactor())
    connection.connected = True
    producer = Producer()
    connection.registerProducer(producer, True)
    yield connection, peer, producer
    ours.close()
    peer.close()


def test_hold_keeps_references_and_counts_them() -> None:
    """Held pieces are the caller's objects (not copies), counted with their overhead."""
    held = HeldPieces(StringTransport(), direct=False)
    body = bytes(5000)
    held.hold([b"head", body])
    assert held
    assert held.held_bytes() == 5004 + 2 * PIECE_OVERHEAD
    assert held.waiting[1] is body
    assert held.clear() == 5004 + 2 * PIECE_OVERHEAD
    assert not held and held.held_bytes() == 0


def test_feed_stops_when_the_transport_pauses(
    pair: tuple[tcp.Connection, socket.socket, Producer],
) -> None:
    """Feeding a transport whose peer does not read stops once it pauses: Twisted
    holds about its buffer plus one batch, the rest waits here uncopied; then
    everything arrives in order as the peer reads."""
    connection, peer, producer = pair
    pieces = [bytes([i]) * 20_000 for i in range(100)]
    held = HeldPieces(connection, direct=True)
    held.hold(pieces)
    held.feed(lambda: producer.paused)
    assert producer.paused
    assert held, "most pieces still wait here"
    assert transport_held(connection) <= connection.bufferSize + BATCH_BYTES + 20_000
    assert held.held_bytes() + transport_held(connection) <= 100 * (20_000 + PIECE_OVERHEAD)
    received = b""
    for _ in range(10_000):
        received += read_available(peer)
        connection.doWrite()  # the reactor found the socket writable
        if not producer.paused:  # Twisted drained its queue and resumed us
            held.feed(lambda: producer.paused)
        if len(received) == 2_000_000:
            break
    assert received == b"".join(pieces)
    assert not held


def test_transport_held_counts_the_whole_joined_string() -> None:
    """A TCP transport's joined string counts whole (its sent prefix is still in
    memory), plus its list of pieces; other transports hold nothing we can see."""
    transport = StringTransport()
    transport.dataBuffer = b"x" * 700  # type: ignore[attr-defined]
    transport.offset = 600  # type: ignore[attr-defined]
    transport._tempDataBuffer = [b"a" * 30, b"b" * 20]  # type: ignore[attr-defined]
    transport._tempDataLen = 50  # type: ignore[attr-defined]
    assert transport_held(transport) == 750 + 2 * PIECE_OVERHEAD
    assert transport_held(StringTransport()) == 0


class HeldPlayerTests(ProtocolTestCase):
    """A paused plain-TCP player: held, fed on resume, capped, dropped cleanly."""

    limits = Limits(max_send_backlog=4000, slow_player_timeout=5.0)

    def held_player(self) -> tuple[Peer, Peer, HeldPieces]:
        """A publisher and a paused player whose protocol holds its pieces."""
        publisher = self.publisher()
        player = self.peer()
        player.play("cam")
        held = HeldPieces(player.transport, direct=False)
        player.protocol._held = held  # what a plain TCP connection gets
        publisher.video(0, avc_keyframe(0))
        player.client.clear()
        player.protocol.pauseProducing()
        return publisher, player, held

    def test_paused_player_is_held_then_fed_in_order(self) -> None:
        """While paused nothing reaches the transport and the backlog is what is held;
        on resume it all arrives in order."""
        publisher, player, held = self.held_player()
        written = len(player.transport.value())
        publisher.audio(10, aac_frame(1))
        publisher.video(40, avc_inter(2))
        self.assertEqual(len(player.transport.value()), written)
        self.assertGreater(held.held_bytes(), len(aac_frame(1)) + len(avc_inter(2)))
        self.assertEqual(player.protocol.send_backlog(), held.held_bytes())
        player.protocol.resumeProducing()
        self.assertFalse(held)
        publisher.audio(50, aac_frame(3))
        player.deliver()
        self.assertEqual(
            [(m.type_id, m.payload) for m in player.client.media()],
            [
                (MessageType.AUDIO, aac_frame(1)),
                (MessageType.VIDEO, avc_inter(2)),
                (MessageType.AUDIO, aac_frame(3)),
            ],
        )

    def test_held_past_half_the_cap_skips_video(self) -> None:
        """Held bytes count for skipping: past half of max_send_backlog video is skipped."""
        publisher, player, held = self.held_player()
        publisher.video(40, avc_inter(1) + bytes(2100))
        self.assertTrue(player.protocol.backlog_full())
        publisher.video(80, avc_inter(2))
        publisher.audio(90, aac_frame(1))
        player.protocol.resumeProducing()
        player.deliver()
        self.assertEqual(player.video_payloads(), [avc_inter(1) + bytes(2100)])
        self.assertEqual(
            [m.payload for m in player.client.media() if m.type_id == MessageType.AUDIO],
            [aac_frame(1)],
        )

    def test_held_past_the_cap_drops_and_frees(self) -> None:
        """A write that would take the held bytes past max_send_backlog drops the player
        with a log line and frees what was held; the publisher is untouched."""
        publisher, player, held = self.held_player()
        written = len(player.transport.value())
        publisher.audio(10, aac_frame(1) + bytes(2500))
        publisher.audio(20, aac_frame(2) + bytes(2500))
        self.assertFalse(player.connected)
        (dropped,) = self.formats("Dropping")
        self.assertIn("too far behind", str(dropped["log_format"]))
        self.assertEqual(held.held_bytes(), 0, "the stale backlog is freed, not sent")
        self.assertEqual(len(player.transport.value()), written)
        self.assertTrue(publisher.connected)

    def test_dropped_player_gets_a_small_held_backlog(self) -> None:
        """Dropped with less than half the cap held, those bytes still go out first."""
        publisher, player, held = self.held_player()
        publisher.audio(10, aac_frame(1))
        player.protocol.disconnect("closed by the application")
        self.assertFalse(held)
        player.deliver()
        self.assertIn(
            aac_frame(1), [m.payload for m in player.client.media()], "sent before closing"
        )
