"""
The RTMPT rules of :mod:`flashstream.rtmp.tunnel`: session ids, sequence
numbers, the polling byte's back-off, the session table's limit and expiry,
all on plain values and a fake clock number.
"""

from __future__ import annotations

import unittest

from flashstream.rtmp.tunnel import (
    Command,
    Delivery,
    PollBackoff,
    Sequencer,
    SessionTable,
    TunnelLimits,
    TunnelSession,
    new_session_id,
)
from tests.helpers import seeded_random


class SessionIdTests(unittest.TestCase):
    """Session ids come from the injected random source."""

    def test_hex_from_random_source(self) -> None:
        """The id is the hex of 16 random bytes: same seed, same id; no '/' and under 64 chars."""
        first = new_session_id(seeded_random(7))
        self.assertEqual(first, new_session_id(seeded_random(7)))
        self.assertNotEqual(first, new_session_id(seeded_random(8)))
        self.assertEqual(len(first), 32)
        self.assertEqual(first, seeded_random(7)(16).hex())


class SequencerTests(unittest.TestCase):
    """Ordering request bodies by sequence number."""

    def test_in_order_from_zero(self) -> None:
        """ffmpeg/librtmp numbering from 0: each body is delivered as it comes."""
        seq = Sequencer()
        self.assertEqual(seq.accept(0, b"a", 0.0), Delivery(bodies=(b"a",)))
        self.assertEqual(seq.accept(1, b"", 0.0), Delivery())
        self.assertEqual(seq.accept(2, b"b", 0.0), Delivery(bodies=(b"b",)))
        self.assertEqual(seq.expected, 3)

    def test_first_number_sets_the_start(self) -> None:
        """A client numbering from 1 (or anything) is followed from its first request."""
        seq = Sequencer()
        self.assertEqual(seq.accept(1, b"a", 0.0).bodies, (b"a",))
        self.assertEqual(seq.accept(2, b"b", 0.0).bodies, (b"b",))

    def test_out_of_order_is_reordered(self) -> None:
        """A request overtaking its predecessor waits for it, then both go in order."""
        seq = Sequencer()
        seq.accept(0, b"a", 0.0)
        self.assertEqual(seq.accept(2, b"c", 0.1), Delivery())
        self.assertEqual(seq.held, 1)
        self.assertEqual(seq.accept(1, b"b", 0.2), Delivery(bodies=(b"b", b"c")))
        self.assertEqual(seq.held, 0)

    def test_duplicate_body_is_dropped(self) -> None:
        """A repeated number (a proxy's retry) is reported and its body not fed twice."""
        seq = Sequencer()
        seq.accept(0, b"a", 0.0)
        seq.accept(1, b"b", 0.0)
        self.assertEqual(seq.accept(1, b"b", 0.0), Delivery(duplicate=True))
        self.assertEqual(seq.accept(0, b"a", 0.0), Delivery(duplicate=True))
        seq.accept(3, b"d", 0.0)
        self.assertEqual(seq.accept(3, b"d", 0.0), Delivery(duplicate=True))
        self.assertEqual(seq.accept(2, b"c", 0.0).bodies, (b"c", b"d"))

    def test_gap_given_up_after_too_many_held(self) -> None:
        """More than max_reorder held requests: the missing one is skipped, nothing wedges."""
        seq = Sequencer(max_reorder=3, reorder_timeout=100.0)
        seq.accept(0, b"a", 0.0)
        for n in (2, 3, 4):
            self.assertEqual(seq.accept(n, bytes([n]), 0.0), Delivery())
        delivery = seq.accept(5, b"\x05", 0.0)
        self.assertEqual(delivery.bodies, (b"\x02", b"\x03", b"\x04", b"\x05"))
        self.assertEqual(delivery.skipped, (1,))
        self.assertEqual(seq.accept(1, b"late", 0.0), Delivery(duplicate=True))
        self.assertEqual(seq.accept(6, b"f", 0.0).bodies, (b"f",))

    def test_gap_given_up_after_timeout(self) -> None:
        """A gap older than reorder_timeout is skipped at the next request."""
        seq = Sequencer(max_reorder=100, reorder_timeout=2.0)
        seq.accept(0, b"a", 0.0)
        self.assertEqual(seq.accept(2, b"c", 1.0), Delivery())
        self.assertEqual(seq.accept(4, b"e", 2.9), Delivery())
        delivery = seq.accept(5, b"f", 3.0)
        self.assertEqual(delivery.bodies, (b"c",))
        self.assertEqual(delivery.skipped, (1,))
        self.assertEqual(seq.held, 2)
        delivery = seq.accept(6, b"g", 5.0)
        self.assertEqual(delivery.bodies, (b"e", b"f", b"g"))
        self.assertEqual(delivery.skipped, (3,))


class PollBackoffTests(unittest.TestCase):
    """The polling byte."""

    def test_backoff_and_reset(self) -> None:
        """1 while data flows and for ten empty answers, then 3, 5, 9, 17, 33 (0x21) at most."""
        backoff = PollBackoff()
        self.assertEqual(backoff.next_byte(True), 1)
        empties = [backoff.next_byte(False) for _ in range(17)]
        self.assertEqual(empties, [1] * 10 + [3, 5, 9, 17, 33, 33, 33])
        self.assertEqual(backoff.next_byte(True), 1)
        self.assertEqual([backoff.next_byte(False) for _ in range(11)], [1] * 10 + [3])


class TunnelSessionTests(unittest.TestCase):
    """One session's answers."""

    def test_answers_carry_poll_byte_and_bounded_data(self) -> None:
        """An answer is the polling byte and at most max_response_body queued bytes."""
        session = TunnelSession("s", 0.0, TunnelLimits(max_response_body=4))
        self.assertEqual(session.answer(), b"\x01")
        session.queue(b"abcdef")
        self.assertEqual(session.answer(), b"\x01abcd")
        self.assertEqual(session.answer(), b"\x01ef")
        self.assertEqual(session.pending, 0)

    def test_only_send_bodies_are_data(self) -> None:
        """idle and close bodies (a 0x00 byte) are never fed as RTMP bytes."""
        session = TunnelSession("s", 0.0)
        self.assertEqual(session.receive(Command.IDLE, 0, b"\x00", 1.0), Delivery())
        self.assertEqual(session.receive(Command.SEND, 1, b"\x03", 2.0).bodies, (b"\x03",))
        self.assertEqual(session.last_seen, 2.0)

    def test_closing_answers_zero_then_finishes(self) -> None:
        """After the server closed: poll byte 0, and the session finishes once drained."""
        session = TunnelSession("s", 0.0)
        session.queue(b"bye")
        session.closing = True
        self.assertFalse(session.finished())
        self.assertEqual(session.answer(), b"\x00bye")
        self.assertTrue(session.finished())

    def test_congestion_marks(self) -> None:
        """Congested above write_buffer_high; drained at half of it."""
        session = TunnelSession("s", 0.0, TunnelLimits(write_buffer_high=10, max_response_body=3))
        session.queue(b"x" * 11)
        self.assertTrue(session.congested)
        self.assertFalse(session.drained)
        session.answer()
        session.answer()
        self.assertTrue(session.drained)


class SessionTableTests(unittest.TestCase):
    """The session limit and expiry."""

    def test_limit(self) -> None:
        """At max_sessions, open returns None until a session is removed."""
        table = SessionTable(seeded_random(1), TunnelLimits(max_sessions=2))
        first = table.open(0.0)
        second = table.open(0.0)
        assert first is not None and second is not None
        self.assertNotEqual(first.session_id, second.session_id)
        self.assertIsNone(table.open(0.0))
        self.assertTrue(table.full())
        self.assertIs(table.remove(first.session_id), first)
        self.assertIsNotNone(table.open(0.0))
        self.assertIsNone(table.get("nope"))

    def test_expiry_on_supplied_clock(self) -> None:
        """A session expires session_timeout after its last request, not before."""
        table = SessionTable(seeded_random(2), TunnelLimits(session_timeout=30.0))
        a = table.open(0.0)
        b = table.open(10.0)
        assert a is not None and b is not None
        self.assertEqual(table.next_deadline(), 30.0)
        a.receive(Command.IDLE, 0, b"", 25.0)
        self.assertEqual(table.expired(39.9), [])
        self.assertEqual(table.expired(40.0), [b])
        table.remove(b.session_id)
        self.assertEqual(table.next_deadline(), 55.0)
        self.assertEqual(table.expired(55.0), [a])
        table.remove(a.session_id)
        self.assertIsNone(table.next_deadline())
