# -*- test-case-name: tests.test_takeover -*-
"""
Publisher takeover: what happens when a second encoder publishes a live name.

An encoder that reconnects after a network drop must not be locked out by its
own dead session (SRS #4173, node-media-server #381; OBS hung on BadName
until it learned to handle it, OBS PR #3078).  Each live application chooses
(``takeover`` in its configuration):

``never``
    The second publisher gets ``NetStream.Publish.BadName`` (FMS, nginx-rtmp).
``idle`` (the default)
    The second publisher replaces the first if the first has sent nothing
    for ``takeover_idle`` seconds.  Otherwise its ``publish`` is answered
    later: ``NetStream.Publish.Start`` as soon as the first one goes away or
    falls silent that long, ``NetStream.Publish.BadName`` if the first one
    is still sending after ``takeover_idle`` seconds.
``always``
    The second publisher replaces the first at once (what Wowza does: the
    last encoder to publish a name wins).

A replaced publisher gets ``NetStream.Publish.BadName`` ("the name is being
published by someone else", the code FMS uses for a name in use) and is
disconnected.  Players stay subscribed: see :meth:`StreamHub.replace_publisher
<flashstream.hub.StreamHub.replace_publisher>`.

:func:`decide` is the pure rule; :class:`TakeoverWaits` keeps the publishers
waiting, on an injected reactor.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from .config import TAKEOVER_MODES as TAKEOVER_MODES


class Decision(enum.Enum):
    """What to do with a publisher of a name that is already published."""

    REFUSE = "refuse"
    REPLACE = "replace"
    WAIT = "wait"


def decide(mode: str, silent: float, idle: float) -> Decision:
    """The rule: ``silent`` is how long the current publisher has sent nothing."""
    if mode == "always":
        return Decision.REPLACE
    if mode == "idle":
        return Decision.REPLACE if silent >= idle else Decision.WAIT
    return Decision.REFUSE


@runtime_checkable
class PublisherSession(Protocol):
    """What takeover needs from a publisher's connection (RTMPServerProtocol has it)."""

    def silent_for(self) -> float:
        """Seconds since the peer last sent anything."""

    def evict_publisher(self, stream_id: int, name: str, code: str, description: str) -> None:
        """Tell the publisher on ``stream_id`` why (``code``) and disconnect it."""


def silent_for(publisher: object) -> float:
    """How long ``publisher`` has been silent (0 if it cannot tell: never idle)."""
    if isinstance(publisher, PublisherSession):
        return publisher.silent_for()
    return 0.0


class WaitOutcome(enum.Enum):
    """Why a waiting publisher may go ahead."""

    #: The old publisher went away.
    FREED = "freed"
    #: The old publisher has been silent for ``takeover_idle`` seconds.
    IDLE = "idle"


class TakeoverRefused(Exception):
    """The old publisher kept sending for the whole wait."""


@attrs.define(eq=False)
class _Waiter:
    deferred: Deferred[WaitOutcome]
    deadline: float
    silent: Callable[[], float]
    idle: float
    timer: IDelayedCall | None = None


class TakeoverWaits:
    """Publishers waiting for a live name (at most one per name)."""

    def __init__(self, reactor: IReactorTime) -> None:
        self.reactor = reactor
        self._waiters: dict[str, _Waiter] = {}

    def waiting(self, name: str) -> bool:
        """Whether a publisher already waits for ``name``."""
        return name in self._waiters

    def wait(self, name: str, silent: Callable[[], float], idle: float) -> Deferred[WaitOutcome]:
        """Wait up to ``idle`` seconds for the current publisher of ``name`` to die or go quiet.

        Fires with a :class:`WaitOutcome`, or fails with
        :class:`TakeoverRefused`; cancelling it (the waiting publisher left)
        forgets the wait.
        """
        if name in self._waiters:
            raise ValueError(f"a publisher already waits for {name}")

        def cancel(_: Deferred[WaitOutcome]) -> None:
            self._forget(name, waiter)

        deferred: Deferred[WaitOutcome] = Deferred(cancel)
        waiter = _Waiter(deferred, self.reactor.seconds() + idle, silent, idle)
        self._waiters[name] = waiter
        self._schedule(name, waiter)
        return deferred

    def released(self, name: str) -> None:
        """The current publisher of ``name`` went away: the waiting one may go."""
        waiter = self._waiters.get(name)
        if waiter is not None:
            self._forget(name, waiter)
            waiter.deferred.callback(WaitOutcome.FREED)

    def _forget(self, name: str, waiter: _Waiter) -> None:
        if self._waiters.get(name) is waiter:
            del self._waiters[name]
        if waiter.timer is not None and waiter.timer.active():
            waiter.timer.cancel()
        waiter.timer = None

    def _schedule(self, name: str, waiter: _Waiter) -> None:
        now = self.reactor.seconds()
        # The earliest moment the old publisher can have been silent long
        # enough, if it sends nothing more; never later than the deadline.
        at = min(waiter.deadline, now + max(0.0, waiter.idle - waiter.silent()))
        waiter.timer = self.reactor.callLater(max(0.0, at - now), self._check, name, waiter)

    def _check(self, name: str, waiter: _Waiter) -> None:
        waiter.timer = None
        if self._waiters.get(name) is not waiter:
            return
        if waiter.silent() >= waiter.idle:
            self._forget(name, waiter)
            waiter.deferred.callback(WaitOutcome.IDLE)
        elif self.reactor.seconds() >= waiter.deadline:
            self._forget(name, waiter)
            waiter.deferred.errback(TakeoverRefused(name))
        else:
            self._schedule(name, waiter)
