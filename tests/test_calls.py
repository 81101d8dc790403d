# -*- test-case-name: tests.test_calls -*-
"""Tests for :mod:`flashstream.calls`: correlation, timeouts, limits, late answers."""

from __future__ import annotations

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from flashstream.calls import CallFailed, CallTracker, bounded
from flashstream.rtmp import commands as cmd


class TrackerTests(SynchronousTestCase):
    """CallTracker with a Clock."""

    def setUp(self) -> None:
        """A tracker that records what it sends."""
        self.clock = Clock()
        self.sent: list[cmd.Command] = []
        self.tracker = CallTracker(self.sent.append, self.clock, timeout=5, max_pending=2)

    def test_answers_limit_and_close(self) -> None:
        """Answers fire their own call; the pending count is bounded; close fails the rest."""
        first = self.tracker.call("a", 1.0)
        second = self.tracker.call("b")
        self.failureResultOf(self.tracker.call("c"), CallFailed)
        self.assertEqual([(c.name, c.transaction_id) for c in self.sent], [("a", 1.0), ("b", 2.0)])
        self.assertFalse(self.tracker.answer(cmd.Command("_result", 9.0, None, (1.0,))))
        self.assertTrue(self.tracker.answer(cmd.Command("_result", 1.0, None, ("x",))))
        self.assertEqual(self.successResultOf(first), "x")
        self.tracker.close()
        self.failureResultOf(second, CallFailed)
        self.failureResultOf(self.tracker.call("d"), CallFailed)

    def test_timeout_and_notify(self) -> None:
        """An unanswered call times out; notify uses transaction 0."""
        call = self.tracker.call("slow")
        self.clock.advance(5)
        self.failureResultOf(call, TimeoutError)
        self.assertEqual(self.tracker.pending, 0)
        self.tracker.notify("hello", 1.0)
        self.assertEqual(self.sent[-1], cmd.Command("hello", 0.0, None, (1.0,)))


class BoundedTests(SynchronousTestCase):
    """bounded(): a timeout that leaves the application's Deferred alone."""

    def test_late_answer_is_ignored(self) -> None:
        """After the timeout the application may still fire its Deferred without error."""
        clock = Clock()
        inner: Deferred[object] = Deferred()
        outer = bounded(lambda: inner, 2.0, clock)
        clock.advance(2.0)
        self.failureResultOf(outer, TimeoutError)
        inner.callback("late")  # no AlreadyCalledError for the application

    def test_synchronous_values_and_errors(self) -> None:
        """Plain values and exceptions come back at once."""
        clock = Clock()
        self.assertEqual(self.successResultOf(bounded(lambda: 3, 1.0, clock)), 3)
        self.failureResultOf(bounded(lambda: 1 / 0, 1.0, clock), ZeroDivisionError)
