# -*- test-case-name: tests.test_sendqueue -*-
"""
A slow plain-TCP player's bytes, held by reference instead of copied.

Twisted's TCP transport queues written pieces in a list, and each time fewer
than 128 KiB of its own string is left to send it joins *everything* queued
into one new string, which it keeps whole (already-sent prefix included)
until the next join.  For a player that reads slower than the stream that
string is a private copy of the player's whole backlog: measured with a 2 MiB
``max_send_backlog`` and a reader at a quarter of the stream rate, the
transport held up to 1.8 MiB while the backlog it reported was 1.17 MiB, and
each join briefly added another copy on top (``bench/slow_reader.py``).  The
live chunk bodies it copied are shared objects (:mod:`.rtmp.prechunk`), so
the copy was pure extra memory.

:class:`HeldPieces` keeps a congested player's pieces itself, by reference,
and gives Twisted only a little at a time: when the transport asks for more
(``resumeProducing``, its queue is empty) the pieces go out through
:func:`~flashstream.writethrough.write_through` -- straight to the socket
with ``sendmsg`` -- until the transport pauses again, so Twisted never holds
(or joins) more than about its 64 KiB buffer and one write.  What a slow
player costs is then :meth:`HeldPieces.held_bytes` plus :func:`transport_held`,
and that is what the protocol checks against ``max_send_backlog``.

Only plain TCP (:func:`~flashstream.writethrough.can_write_through`) uses
this; TLS and RTMPT keep writing to their transport.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Sequence

from twisted.internet.interfaces import ITransport

from .writethrough import MAX_PIECES, write_through

__all__ = ["BATCH_BYTES", "PIECE_OVERHEAD", "HeldPieces", "transport_held"]

#: Bytes handed to the transport per write while feeding it (at least one
#: piece): with Twisted's 64 KiB buffer, what the transport holds stays
#: about 128 KiB plus one piece.
BATCH_BYTES = 64 * 1024

#: Memory one queued piece costs besides its bytes: the bytes object's header
#: and its slot in the queue (a shared piece costs less; this is the bound).
PIECE_OVERHEAD = sys.getsizeof(b"") + 8


def transport_held(transport: object) -> int:
    """Bytes a Twisted TCP transport holds for sending: its joined string
    (whole, the sent part is freed only at the next join) and its list of
    pieces.  0 for a transport without that queue."""
    buffer = getattr(transport, "dataBuffer", None)
    if not isinstance(buffer, bytes):
        return 0
    pieces = getattr(transport, "_tempDataBuffer", ())
    return len(buffer) + int(getattr(transport, "_tempDataLen", 0)) + PIECE_OVERHEAD * len(pieces)


class HeldPieces:
    """Pieces waiting while a plain TCP transport is paused, in order."""

    def __init__(self, transport: ITransport, direct: bool = True) -> None:
        self._transport = transport
        self._direct = direct
        #: The pieces waiting, in order (read-only outside this class).
        self.waiting: deque[bytes] = deque()
        self._bytes = 0

    def __bool__(self) -> bool:
        """True while pieces wait here."""
        return bool(self.waiting)

    def held_bytes(self) -> int:
        """Memory the waiting pieces cost (their lengths plus :data:`PIECE_OVERHEAD` each)."""
        return self._bytes

    def hold(self, pieces: Sequence[bytes]) -> None:
        """Keep ``pieces`` (references, not copies) behind those already waiting."""
        self.waiting.extend(pieces)
        self._bytes += sum(map(len, pieces)) + PIECE_OVERHEAD * len(pieces)

    def feed(self, paused: Callable[[], bool]) -> None:
        """Write waiting pieces until ``paused()`` says the transport is full again.

        Called when the transport resumes us: its own queue is empty, so
        :func:`write_through` hands each batch to the socket first and queues
        only what the socket did not take; once that passes the transport's
        buffer size it pauses us (synchronously) and the rest stays here.
        """
        pieces = self.waiting
        while pieces and not paused():
            batch: list[bytes] = []
            size = 0
            while pieces and len(batch) < MAX_PIECES and size < BATCH_BYTES:
                piece = pieces.popleft()
                batch.append(piece)
                size += len(piece)
            self._bytes -= size + PIECE_OVERHEAD * len(batch)
            write_through(self._transport, batch, self._direct)

    def clear(self) -> int:
        """Forget every waiting piece; returns the bytes dropped."""
        dropped = self._bytes
        self.waiting.clear()
        self._bytes = 0
        return dropped
