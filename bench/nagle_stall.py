"""
When does Nagle's algorithm hold a player's media?  A socket-level experiment.

A loopback TCP pair stands in for server and player: the "server" writes a
"video frame" (50 records) and an "audio message" (1 record) alternately
every 12 ms; the "player" reads everything at once, and once a second from
t = 1 s it *sends* a few bytes (what a ping answer or an RTMP acknowledgement
does).  Each record carries its send time; the script prints the worst delay
per 10 ms after each time the player spoke, for three server settings:

* ``nodelay``: TCP_NODELAY on all the time;
* ``nagle``: Nagle's algorithm on all the time;
* ``window``: Nagle, with TCP_NODELAY for ``--window`` seconds after each
  input from the player (the idea this experiment rejected: the stall only
  moves to the moment Nagle comes back, as the player's kernel stays in
  "ping-pong" delayed-ACK mode while data keeps arriving).

Loopback only, bounded (``--seconds`` per setting), stops by itself::

    python bench/nagle_stall.py [--seconds 4] [--window 0.25]
"""

from __future__ import annotations

import argparse
import socket
import struct
import threading
import time
from collections.abc import Sequence

RECORD = 200
STAMP = struct.Struct("d")


def pair() -> tuple[socket.socket, socket.socket]:
    """A connected loopback (server, client) TCP pair."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    return server, client


def run(mode: str, seconds: float, window: float) -> tuple[list[float], list[tuple[float, float]]]:
    """Stream for ``seconds`` with ``mode``; return when the player spoke and
    each record's (send time, delay), both relative to the start."""
    server, client = pair()
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(mode == "nodelay"))
    server.setblocking(False)
    delays: list[tuple[float, float]] = []

    def read() -> None:
        buffer = b""
        while True:
            try:
                data = client.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            buffer += data
            now = time.monotonic()
            while len(buffer) >= RECORD:
                (sent,) = STAMP.unpack_from(buffer)
                delays.append((sent, now - sent))
                buffer = buffer[RECORD:]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    start = time.monotonic()
    spoke: list[float] = []
    quick_until = 0.0
    frame = 0
    while (now := time.monotonic()) - start < seconds:
        if mode == "window":
            try:
                if server.recv(64):
                    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    quick_until = now + window
            except BlockingIOError:
                pass
            if quick_until and now > quick_until:
                server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
                quick_until = 0.0
        records = 50 if frame % 2 == 0 else 1
        server.send(b"".join(STAMP.pack(now) + bytes(RECORD - STAMP.size) for _ in range(records)))
        frame += 1
        if now - start >= len(spoke) + 1:
            client.send(b"answer")
            spoke.append(now - start)
        time.sleep(0.012)
    server.close()
    reader.join(2)
    client.close()
    return spoke, [(sent - start, delay) for sent, delay in delays]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the three settings and print where records waited."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per setting")
    parser.add_argument("--window", type=float, default=0.25, help="the window setting's length")
    parser.add_argument("--over-ms", type=float, default=2.0, help="delays shown above this")
    args = parser.parse_args(argv)
    for mode in ("nodelay", "nagle", "window"):
        spoke, delays = run(mode, args.seconds, args.window)
        worst: dict[float, float] = {}
        for sent, delay in delays:
            bucket = round(sent, 2)
            worst[bucket] = max(worst.get(bucket, 0.0), delay)
        late = [(t, d) for t, d in sorted(worst.items()) if d * 1000 > args.over_ms]
        print(f"{mode:8} player spoke at {', '.join(f'{t:.2f}' for t in spoke)} s")
        for t, d in late:
            print(f"         records sent at t={t:.2f} s waited up to {d * 1000:5.1f} ms")
        if not late:
            print(f"         no record waited more than {args.over_ms:g} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
