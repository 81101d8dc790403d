# -*- test-case-name: tests.test_bandwidth -*-
"""
Native bandwidth detection, as Flash Media Server and Red5 do it.

When a client calls ``checkBandwidth`` (or on connect, where the application
asks for it) the server calls ``onBWCheck`` on the client: first with no
payload, to measure the latency, then with growing arrays of doubles
(about 10 KB, then about 100 KB per round) until ``duration`` seconds have
passed or ``max_rounds`` rounds were answered.  From the replies::

    deltaDown = payload bytes sent * 8 / 1000                    (kbit)
    deltaTime = (elapsed ms - latency ms * payload rounds) / 1000 (s)
    kbitDown  = round(deltaDown / deltaTime)

and the server calls ``onBWDone(kbitDown, deltaDown, deltaTime, latency)``.
The result is kept on the connection for its QoS figures.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import attrs
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime

from .rtmp import amf0

#: The shortest deltaTime we divide by (loopback can be faster than the clock).
MIN_DELTA_TIME = 0.001


@attrs.frozen
class BandwidthSettings:
    """How long and how hard one detection runs."""

    #: Seconds of payload rounds (Red5 and FMS use about one second).
    duration: float = 1.0
    #: Most payload rounds.
    max_rounds: int = 8
    #: Doubles in the first payload (about 10 KB), then in every later one (about 100 KB).
    first_payload: int = 1200
    payload: int = 12000
    #: Seconds to wait for each ``onBWCheck`` answer.
    round_timeout: float = 10.0


@attrs.frozen
class BandwidthResult:
    """What one detection measured (the four ``onBWDone`` numbers and the rounds)."""

    kbit_down: int
    delta_down: float
    delta_time: float
    latency_ms: int
    rounds: int


Call = Callable[..., "Deferred[object]"]


def payload(count: int) -> list[float]:
    """An onBWCheck payload of ``count`` doubles."""
    return [float(i % 1000) + 0.5 for i in range(count)]


def compute(
    bytes_sent: int, elapsed: float, latency: float, rounds: int
) -> tuple[int, float, float]:
    """``(kbitDown, deltaDown, deltaTime)`` from the measured figures (seconds)."""
    delta_down = bytes_sent * 8 / 1000
    delta_time = max(elapsed - latency * rounds, MIN_DELTA_TIME)
    return round(delta_down / delta_time), delta_down, delta_time


@inlineCallbacks
def detect(
    call: Call,
    notify: Callable[..., None],
    clock: IReactorTime,
    settings: BandwidthSettings = BandwidthSettings(),
) -> Generator[Deferred[Any], Any, BandwidthResult]:
    """Run the onBWCheck rounds, call onBWDone, and return the result."""
    start = clock.seconds()
    yield call("onBWCheck", timeout=settings.round_timeout)
    latency = clock.seconds() - start
    begin = clock.seconds()
    sent = 0
    rounds = 0
    count = settings.first_payload
    while True:
        values = payload(count)
        sent += len(amf0.encode(values))
        rounds += 1
        yield call("onBWCheck", values, timeout=settings.round_timeout)
        elapsed = clock.seconds() - begin
        if elapsed >= settings.duration or rounds >= settings.max_rounds:
            break
        count = settings.payload
    kbit_down, delta_down, delta_time = compute(sent, elapsed, latency, rounds)
    latency_ms = round(latency * 1000)
    notify("onBWDone", float(kbit_down), delta_down, delta_time, float(latency_ms))
    return BandwidthResult(kbit_down, delta_down, delta_time, latency_ms, rounds)
