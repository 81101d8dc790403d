# -*- test-case-name: tests.test_tcpinfo -*-
"""
A connection's round-trip time from the kernel (Linux ``TCP_INFO``), with no
traffic; and :func:`set_no_delay` for its TCP_NODELAY option.

QoS used to learn each client's RTT by sending it an RTMP PingRequest every
few seconds.  The answer costs more than the reactor's time: a peer that has
just *sent* something expects to piggyback its next ACK and delays it (up to
40 ms on Linux), and with Nagle's algorithm on, the server's next small
message waits for that ACK.  One such stall per player per ping was the
whole of the latency p99 at 100 players (8-10 ms against 2 ms without the
pings, ``docs/performance.rst``).  The kernel already keeps a smoothed RTT
for every TCP socket, measured on every ACK; reading it is one
``getsockopt`` and sends nothing.

:func:`kernel_rtt_ms` finds the TCP socket under a Twisted transport (plain
TCP, or TLS over it) and returns that RTT in milliseconds, or None where
there is none to read (RTMPT sessions, test transports, other systems):
callers fall back to the PingRequest there.
"""

from __future__ import annotations

import socket
import struct

from twisted.internet import tcp

__all__ = ["kernel_rtt_ms", "set_no_delay", "tcp_socket"]

_TCP_INFO = getattr(socket, "TCP_INFO", None)
#: ``struct tcp_info`` is 8 one-byte fields, then ``__u32`` fields of which
#: ``tcpi_rtt`` (microseconds, smoothed) is the 16th: its offset in bytes.
_RTT_OFFSET = 8 + 15 * 4
#: Bytes of ``struct tcp_info`` read: up to and including ``tcpi_rtt``.
_INFO_BYTES = _RTT_OFFSET + 4
#: Transports wrapped around a TCP connection (TLS, protocol wrappers)
#: looked through before giving up.
_MAX_WRAPPERS = 3


def tcp_socket(transport: object) -> socket.socket | None:
    """The TCP socket under ``transport``, looking through up to
    :data:`_MAX_WRAPPERS` wrappers (TLS), or None."""
    current = transport
    for _ in range(_MAX_WRAPPERS + 1):
        if isinstance(current, tcp.Connection):
            sock = getattr(current, "socket", None)
            return sock if isinstance(sock, socket.socket) else None
        current = getattr(current, "transport", None)
        if current is None:
            return None
    return None


def set_no_delay(transport: object, enabled: bool) -> None:
    """Set or clear TCP_NODELAY through ``transport.setTcpNoDelay``, where the
    transport has it (TCP, and TLS over TCP); an error (not a TCP socket
    after all, or closed) is ignored."""
    setter = getattr(transport, "setTcpNoDelay", None)
    if setter is not None:
        try:
            setter(enabled)
        except OSError:
            pass


def kernel_rtt_ms(transport: object) -> float | None:
    """The kernel's smoothed RTT of ``transport``'s TCP socket, in ms.

    None if there is no TCP socket under it, the system has no ``TCP_INFO``,
    the socket is closed, or the kernel has no RTT sample yet.
    """
    if _TCP_INFO is None:
        return None
    sock = tcp_socket(transport)
    if sock is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _INFO_BYTES)
    except OSError:
        return None
    if len(info) < _INFO_BYTES:
        return None
    (rtt_us,) = struct.unpack_from("=I", info, _RTT_OFFSET)
    return rtt_us / 1000 if rtt_us else None
