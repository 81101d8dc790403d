# -*- test-case-name: tests.test_writethrough -*-
"""
Write-through for plain TCP: send a player's bytes now instead of next turn.

Twisted's TCP transport never sends from ``write``: it queues the bytes,
asks the reactor to watch the socket for writability (an ``epoll_ctl``),
and on the next reactor turn joins the queue into one string, sends it and
stops watching (another ``epoll_ctl``).  For a live fan-out that is paid per
player per message, and profiling the fan-out benchmark showed that
bookkeeping costing about as much as the ``send`` itself.

:func:`write_through` does what a C server does instead: when nothing is
queued it hands the pieces straight to the socket with one ``sendmsg``
(scatter/gather, so shared chunk bodies are not even joined), and only what
the socket did not take goes to ``transport.writeSequence``, which queues it
behind nothing and keeps Twisted's backpressure (producer pause/resume)
working as before.  Order is kept because the socket is only written while
Twisted's queue is empty.

Only an exact, plain (non-TLS) :class:`twisted.internet.tcp.Connection`
qualifies; TLS, RTMPT and test transports take the ordinary path
(:func:`can_write_through` says which).  An error from the socket is not
handled here: the bytes are queued and Twisted's own write finds the error
and closes the connection as it always does.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from twisted.internet import tcp
from twisted.internet.interfaces import ITransport

__all__ = ["MAX_PIECES", "can_write_through", "nothing_queued", "send_at_once", "write_through"]

#: Most pieces handed to one ``sendmsg`` (well under any IOV_MAX).
MAX_PIECES = 64

_HAS_SENDMSG = hasattr(socket.socket, "sendmsg")


def can_write_through(transport: object) -> bool:
    """True if ``transport`` is a plain TCP connection :func:`write_through` may use."""
    return (
        _HAS_SENDMSG
        and isinstance(transport, tcp.Connection)
        and isinstance(getattr(transport, "socket", None), socket.socket)
    )


def nothing_queued(conn: tcp.Connection) -> bool:
    """True if bytes written to ``conn``'s socket now would go out in order:
    it is open, not closing, not TLS, and Twisted holds nothing for it."""
    return bool(
        conn.connected
        and not conn.disconnecting
        and not conn.TLS
        and not conn.dataBuffer
        and not conn._tempDataBuffer
    )


def write_through(transport: ITransport, pieces: Sequence[bytes], direct: bool) -> None:
    """Write ``pieces`` to ``transport``, sending at once when ``direct`` allows.

    ``direct`` is what :func:`can_write_through` said about this transport
    (worked out once per connection).  Whatever is not sent now is given to
    ``transport.writeSequence`` in order.
    """
    if direct:
        conn: tcp.Connection = transport  # type: ignore[assignment]
        if len(pieces) <= MAX_PIECES and nothing_queued(conn):
            try:
                sent = conn.socket.sendmsg(pieces)
            except OSError:
                sent = 0  # EAGAIN, or an error Twisted's doWrite will report
            if sent:
                if sent == sum(map(len, pieces)):
                    return
                pieces = _unsent(pieces, sent)
    transport.writeSequence(pieces)


def send_at_once(conn: tcp.Connection, data: bytes) -> None:
    """:func:`write_through` of one string to a connection that qualifies
    (:func:`can_write_through`), without building a list: one ``send``."""
    if not nothing_queued(conn):
        conn.write(data)
        return
    try:
        sent = conn.socket.send(data)
    except OSError:
        sent = 0  # EAGAIN, or an error Twisted's doWrite will report
    if sent != len(data):
        conn.write(data[sent:] if sent else data)


def _unsent(pieces: Sequence[bytes], sent: int) -> list[bytes]:
    """What remains of ``pieces`` after the first ``sent`` bytes went out."""
    for index, piece in enumerate(pieces):
        size = len(piece)
        if sent < size:
            rest = [piece[sent:]] if sent else [piece]
            rest.extend(pieces[index + 1 :])
            return rest
        sent -= size
    return []
