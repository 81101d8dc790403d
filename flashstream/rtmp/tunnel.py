# -*- test-case-name: tests.rtmp.test_tunnel -*-
"""
The rules of RTMPT (RTMP tunnelled in HTTP POSTs), without HTTP and without I/O.

An RTMPT client opens a session (``POST /open/1``, answered with the session
id and a newline), then carries its RTMP bytes in ``/send/SID/SEQ`` bodies and
polls with ``/idle/SID/SEQ``; every answer is one *polling byte* followed by
the server's pending RTMP bytes; ``/close/SID/SEQ`` ends the session.

This module holds what that takes, as plain objects the HTTP adapter
(:mod:`flashstream.rtmpt`) drives:

* :func:`new_session_id`: ids from an injected random source;
* :class:`Sequencer`: request sequence numbers.  ffmpeg and librtmp number
  the requests after ``/open/1`` from 0 and librtmp pipelines them; Red5 does
  not check them at all.  Here requests are delivered in sequence order when
  they arrive out of order (a proxy spreading requests over several
  connections), a duplicate's body is never fed twice, and a missing request
  is waited for only a bounded number of requests and seconds, so a session
  never wedges;
* :class:`PollBackoff`: the polling byte, ``0x01`` while data flows and
  backing off ``0x03, 0x05 ... 0x21`` after ten empty answers in a row (Red5's
  rule; ffmpeg and librtmp ignore the value);
* :class:`TunnelSession` and :class:`SessionTable`: the per-session output
  buffer, the session limit and expiry on a caller-supplied clock value.

Reference: ``rtmp-protocol.md`` section 8.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

__all__ = [
    "Command",
    "Delivery",
    "PollBackoff",
    "SessionTable",
    "Sequencer",
    "TunnelLimits",
    "TunnelSession",
    "new_session_id",
]


@attrs.frozen
class TunnelLimits:
    """Bounds on what RTMPT clients may hold on the server."""

    #: Most RTMPT sessions open at once (further ``/open`` get HTTP 503).
    max_sessions: int = 1000
    #: Largest request body accepted, in bytes (larger get HTTP 413).
    max_request_body: int = 16 * 1024 * 1024
    #: Largest response body (server bytes per poll); the rest waits for the next poll.
    max_response_body: int = 1024 * 1024
    #: Seconds without a request after which a session is torn down.
    session_timeout: float = 30.0
    #: Most requests held back while waiting for a missing sequence number.
    max_reorder: int = 16
    #: Seconds a missing sequence number is waited for before it is given up.
    reorder_timeout: float = 2.0
    #: Seconds an empty ``idle`` poll is held waiting for server data (answered
    #: at once when data comes); stops clients that ignore the polling byte
    #: (librtmp) from spinning.
    idle_hold: float = 0.1
    #: Queued server bytes above which the session reports congestion (players
    #: then drop inter frames); it clears once half of them are fetched.
    write_buffer_high: int = 4 * 1024 * 1024


class Command(enum.Enum):
    """The RTMPT request kinds after ``/open``."""

    SEND = "send"
    IDLE = "idle"
    CLOSE = "close"


def new_session_id(random_bytes: Callable[[int], bytes]) -> str:
    """A fresh session id: 32 hex digits (ffmpeg keeps at most 63 characters)."""
    return bytes(random_bytes(16)).hex()


@attrs.frozen
class Delivery:
    """What to do with one request's body, as decided by the :class:`Sequencer`."""

    #: Bodies to feed to the RTMP connection now, in order.
    bodies: tuple[bytes, ...] = ()
    #: The request repeated a sequence number already handled (its body is dropped).
    duplicate: bool = False
    #: Sequence numbers given up on (never arrived in time) to let later ones through.
    skipped: tuple[int, ...] = ()


class Sequencer:
    """
    Orders request bodies by sequence number without ever wedging.

    The first request fixes the starting number (clients start at 0 or 1).
    A request with the expected number is delivered with any held successors;
    a later number is held until the gap fills, or until more than
    ``max_reorder`` requests are held or the oldest held one waited longer
    than ``reorder_timeout``: then the gap is skipped.  A number already
    passed is a duplicate (a proxy's retry) and its body is dropped.
    """

    def __init__(self, max_reorder: int = 16, reorder_timeout: float = 2.0) -> None:
        self.max_reorder = max_reorder
        self.reorder_timeout = reorder_timeout
        self.expected: int | None = None
        self._held: dict[int, tuple[bytes, float]] = {}

    @property
    def held(self) -> int:
        """How many requests wait for a missing predecessor."""
        return len(self._held)

    def accept(self, seq: int, body: bytes, now: float) -> Delivery:
        """Take request ``seq`` carrying ``body`` (``b""`` for polls) at time ``now``."""
        if self.expected is None:
            self.expected = seq
        if seq < self.expected or seq in self._held:
            return Delivery(duplicate=True)
        self._held[seq] = (body, now)
        bodies = self._release()
        skipped: list[int] = []
        while self._held and self._stalled(now):
            first = min(self._held)
            skipped.extend(range(self.expected, first))
            self.expected = first
            bodies.extend(self._release())
        return Delivery(bodies=tuple(b for b in bodies if b), skipped=tuple(skipped))

    def _stalled(self, now: float) -> bool:
        oldest = min(arrived for _, arrived in self._held.values())
        return len(self._held) > self.max_reorder or now - oldest >= self.reorder_timeout

    def _release(self) -> list[bytes]:
        assert self.expected is not None
        bodies: list[bytes] = []
        while self.expected in self._held:
            body, _ = self._held.pop(self.expected)
            bodies.append(body)
            self.expected += 1
        return bodies


class PollBackoff:
    """
    The polling byte: how long the client may wait before its next poll.

    ``0x01`` while there is data; after more than ten empty answers in a row the
    delay doubles per further empty answer (bytes 3, 5, 9, 17, then 33 = 0x21
    at most); data brings it back to 1.
    """

    #: Empty answers tolerated before backing off.
    PATIENCE = 10
    #: Largest delay (the byte is delay + 1).
    MAX_DELAY = 32

    def __init__(self) -> None:
        self._empty = 0
        self._delay = 0

    def next_byte(self, has_data: bool) -> int:
        """The polling byte for an answer that carries data or not."""
        if has_data:
            self._empty = 0
            self._delay = 0
        else:
            self._empty += 1
            if self._empty > self.PATIENCE:
                self._delay = min(max(self._delay, 1) * 2, self.MAX_DELAY)
        return self._delay + 1


class TunnelSession:
    """One RTMPT session: its sequencing, back-off and queued server bytes."""

    def __init__(self, session_id: str, now: float, limits: TunnelLimits = TunnelLimits()) -> None:
        self.session_id = session_id
        self.limits = limits
        self.last_seen = now
        self.sequencer = Sequencer(limits.max_reorder, limits.reorder_timeout)
        self.backoff = PollBackoff()
        #: The server has finished (its RTMP side closed): answer what is left, then end.
        self.closing = False
        self._out = bytearray()

    @property
    def pending(self) -> int:
        """Server bytes waiting for the next poll."""
        return len(self._out)

    @property
    def congested(self) -> bool:
        """More than ``write_buffer_high`` bytes wait for the client."""
        return len(self._out) > self.limits.write_buffer_high

    @property
    def drained(self) -> bool:
        """Few enough bytes wait that a congested producer may resume."""
        return len(self._out) <= self.limits.write_buffer_high // 2

    def queue(self, data: bytes) -> None:
        """Server bytes for the client, sent with the next answers."""
        self._out += data

    def receive(self, command: Command, seq: int, body: bytes, now: float) -> Delivery:
        """A request arrived: note the time and order its body (only ``send`` carries data)."""
        self.last_seen = now
        return self.sequencer.accept(seq, body if command is Command.SEND else b"", now)

    def answer(self) -> bytes:
        """The next response body: polling byte, then up to ``max_response_body`` bytes."""
        size = min(len(self._out), self.limits.max_response_body)
        data = bytes(self._out[:size])
        del self._out[:size]
        poll = 0 if self.closing else self.backoff.next_byte(bool(data))
        return bytes([poll]) + data

    def finished(self) -> bool:
        """The server closed and the client fetched everything."""
        return self.closing and not self._out


class SessionTable:
    """Open sessions by id, bounded by ``max_sessions``, expiring on a supplied clock."""

    def __init__(
        self, random_bytes: Callable[[int], bytes], limits: TunnelLimits = TunnelLimits()
    ) -> None:
        self.random_bytes = random_bytes
        self.limits = limits
        self._sessions: dict[str, TunnelSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def full(self) -> bool:
        """No session may be opened now."""
        return len(self._sessions) >= self.limits.max_sessions

    def open(self, now: float) -> TunnelSession | None:
        """A new session with a fresh id, or None at the session limit."""
        if self.full():
            return None
        session_id = new_session_id(self.random_bytes)
        while session_id in self._sessions:  # pragma: no cover - 128 random bits
            session_id = new_session_id(self.random_bytes)
        session = TunnelSession(session_id, now, self.limits)
        self._sessions[session_id] = session
        return session

    def get(self, session_id: str) -> TunnelSession | None:
        """The session with this id, if open."""
        return self._sessions.get(session_id)

    def remove(self, session_id: str) -> TunnelSession | None:
        """Forget a session (closed or expired)."""
        return self._sessions.pop(session_id, None)

    def expired(self, now: float) -> list[TunnelSession]:
        """Sessions without a request for ``session_timeout`` seconds at ``now``."""
        timeout = self.limits.session_timeout
        return [s for s in self._sessions.values() if now - s.last_seen >= timeout]

    def next_deadline(self) -> float | None:
        """When the next session expires if nothing arrives, or None without sessions."""
        if not self._sessions:
            return None
        return min(s.last_seen for s in self._sessions.values()) + self.limits.session_timeout
