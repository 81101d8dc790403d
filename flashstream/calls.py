# -*- test-case-name: tests.test_calls -*-
"""
Server-to-client calls with result correlation.

``NetConnection.call`` works both ways: the server sends ``name(txn, null,
args...)`` and the client answers ``_result(txn, null, value)`` or
``_error(txn, null, info)``.  A :class:`CallTracker` (one per connection)
numbers the calls, keeps a Deferred per unanswered transaction, fires it
when the answer comes back, and fails it after a timeout or when the
connection goes away.  The number of unanswered calls is bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, TimeoutError, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from .rtmp import commands as cmd


class CallFailed(Exception):
    """The client answered ``_error``, or the call could not be made or answered."""

    def __init__(self, description: str, info: object = None) -> None:
        super().__init__(description)
        self.description = description
        #: The ``_error`` info object, when the client sent one.
        self.info = info


class CallTracker:
    """Calls from the server to one client, waiting for their answers."""

    def __init__(
        self,
        send: Callable[[cmd.Command], None],
        clock: IReactorTime,
        *,
        timeout: float = 30.0,
        max_pending: int = 64,
    ) -> None:
        self._send = send
        self._clock = clock
        self.timeout = timeout
        self.max_pending = max_pending
        self._next = 0
        self._pending: dict[float, tuple[Deferred[object], IDelayedCall]] = {}
        self._closed = False

    @property
    def pending(self) -> int:
        """How many calls are waiting for an answer."""
        return len(self._pending)

    def call(self, method: str, *args: object, timeout: float | None = None) -> Deferred[object]:
        """Call ``method`` on the client; the Deferred fires with its ``_result`` value."""
        if self._closed:
            return _failed(CallFailed("the client is gone"))
        if len(self._pending) >= self.max_pending:
            return _failed(CallFailed(f"{self.max_pending} calls are already unanswered"))
        self._next += 1
        txn = float(self._next)
        deferred: Deferred[object] = Deferred(lambda d: self._forget(txn))
        delay = self.timeout if timeout is None else timeout
        timer = self._clock.callLater(delay, self._expire, txn, method, delay)
        self._pending[txn] = (deferred, timer)
        self._send(cmd.Command(method, txn, None, args))
        return deferred

    def notify(self, method: str, *args: object) -> None:
        """Call ``method`` on the client without asking for an answer (transaction 0)."""
        if not self._closed:
            self._send(cmd.Command(method, 0.0, None, args))

    def answer(self, command: cmd.Command) -> bool:
        """Take a ``_result``/``_error``; True if it answered one of our calls."""
        entry = self._pending.pop(command.transaction_id, None)
        if entry is None:
            return False
        deferred, timer = entry
        if timer.active():
            timer.cancel()
        if command.name == "_result":
            deferred.callback(command.arguments[0] if command.arguments else command.command_object)
        else:
            info = command.arguments[0] if command.arguments else command.command_object
            description = "the client answered _error"
            if isinstance(info, dict) and isinstance(info.get("description"), str):
                description = info["description"]
            elif isinstance(info, dict) and isinstance(info.get("code"), str):
                description = info["code"]
            deferred.errback(CallFailed(description, info))
        return True

    def close(self) -> None:
        """The connection is gone: every waiting call fails."""
        self._closed = True
        pending, self._pending = self._pending, {}
        for deferred, timer in pending.values():
            if timer.active():
                timer.cancel()
            deferred.errback(CallFailed("the client went away"))

    def _forget(self, txn: float) -> None:
        entry = self._pending.pop(txn, None)
        if entry is not None and entry[1].active():
            entry[1].cancel()

    def _expire(self, txn: float, method: str, delay: float) -> None:
        entry = self._pending.pop(txn, None)
        if entry is not None:
            entry[0].errback(TimeoutError(f"{method} was not answered within {delay}s"))


def bounded(
    function: Callable[..., object], timeout: float, clock: IReactorTime, *args: object
) -> Deferred[Any]:
    """Call ``function(*args)``; the result (or Deferred's result) within ``timeout`` seconds.

    The returned Deferred fails with ``TimeoutError`` when time runs out and
    may be cancelled; neither touches the Deferred ``function`` returned, so
    an application that answers late (after a timeout, or after the client
    left) is simply not listened to.
    """
    inner = maybeDeferred(function, *args)
    if inner.called:
        return inner
    outer: Deferred[Any] = Deferred()

    def relay(result: object) -> None:
        if not outer.called:
            outer.callback(result)  # a Failure result errbacks

    inner.addBoth(relay)
    outer.addTimeout(timeout, clock)
    return outer


def _failed(error: Exception) -> Deferred[object]:
    deferred: Deferred[object] = Deferred()
    deferred.errback(error)
    return deferred
