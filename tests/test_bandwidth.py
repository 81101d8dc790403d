# -*- test-case-name: tests.test_bandwidth -*-
"""Tests for :mod:`flashstream.bandwidth`: the rounds and the figures, on a Clock."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from flashstream.bandwidth import BandwidthResult, BandwidthSettings, compute, detect


class DetectTests(SynchronousTestCase):
    """A fake client that answers each onBWCheck after a set time."""

    def test_rounds_and_onbwdone(self) -> None:
        """Latency from the empty round; deltaTime excludes it per payload round."""
        clock = Clock()
        pending: list[tuple[tuple[Any, ...], Deferred[object]]] = []
        done: list[tuple[object, ...]] = []

        def call(method: str, *args: Any, timeout: float) -> Deferred[object]:
            self.assertEqual(method, "onBWCheck")
            deferred: Deferred[object] = Deferred()
            pending.append((args, deferred))
            return deferred

        result = detect(
            call,
            lambda method, *args: done.append((method, *args)),
            clock,
            BandwidthSettings(duration=1.0, max_rounds=8),
        )
        latency, transfer = 0.05, 0.2
        clock.advance(latency)
        pending[0][1].callback(0.0)
        self.assertEqual(pending[0][0], ())
        while not done:
            clock.advance(latency + transfer)
            pending[-1][1].callback(0.0)
        rounds = len(pending) - 1
        self.assertEqual(rounds, 4)  # 4 x 0.25 s reaches the 1 s duration
        self.assertEqual([len(args[0]) for args, _ in pending[1:]], [1200, 12000, 12000, 12000])
        final = self.successResultOf(result)
        assert isinstance(final, BandwidthResult)
        self.assertEqual(final.latency_ms, 50)
        self.assertAlmostEqual(final.delta_time, rounds * transfer)
        method, kbit, delta_down, delta_time, latency_ms = done[0]
        self.assertEqual((method, latency_ms), ("onBWDone", 50.0))
        self.assertEqual(kbit, float(final.kbit_down))

    def test_compute(self) -> None:
        """kbitDown = bytes*8/1000 / (elapsed - latency*rounds), never dividing by zero."""
        self.assertEqual(compute(125_000, 2.0, 0.5, 2), (1000, 1000.0, 1.0))
        kbit, _, delta_time = compute(1000, 0.1, 0.1, 1)
        self.assertEqual(delta_time, 0.001)
        self.assertEqual(kbit, 8000)

    def test_unanswered_round_fails(self) -> None:
        """A client that stops answering ends the detection with the call's failure."""
        clock = Clock()

        def call(method: str, *args: Any, timeout: float) -> Deferred[object]:
            deferred: Deferred[object] = Deferred()
            deferred.addTimeout(timeout, clock)
            return deferred

        result = detect(call, lambda *a: None, clock, BandwidthSettings(round_timeout=3))
        clock.advance(3)
        self.failureResultOf(result)
