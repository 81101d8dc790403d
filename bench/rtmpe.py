# -*- test-case-name: tests.rtmp.test_rtmpe -*-
"""
What RTMPE costs the server: CPU per handshake and RC4 throughput.

Run from the repository root: ``python bench/rtmpe.py``.  Prints the mean
time of a full server-side RTMPE handshake (C0+C1 in, S0+S1+S2 out, C2 in)
next to a plain digest handshake, and RC4 throughput in MB/s for 4 KiB
chunks (the size of one outgoing chunk at our chunk size).
"""

from __future__ import annotations

import random
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flashstream.rtmp.handshake import ServerHandshake  # noqa: E402
from flashstream.rtmp.rtmpe import RC4Cipher  # noqa: E402
from tests.handshake_client import ClientHandshake  # noqa: E402


def handshake(kind: str, seed: int) -> None:
    """One full handshake; the client's work is prepared outside the timing."""
    server = ServerHandshake(random_bytes=random.Random(seed).randbytes)
    server.receive_data(CLIENTS[kind][seed % len(CLIENTS[kind])])
    server.data_to_send()
    server.receive_data(bytes(1536))


CLIENTS = {
    kind: [ClientHandshake(kind, random.Random(i).randbytes).initial_bytes() for i in range(20)]
    for kind in ("ffmpeg", "librtmp_rtmpe")
}


def main() -> None:
    """Print the figures."""
    for kind in CLIENTS:
        runs = 200
        seconds = timeit.timeit(lambda k=kind: handshake(k, random.randrange(20)), number=runs)
        print(f"{kind:15s} handshake: {seconds / runs * 1000:.2f} ms")
    cipher = RC4Cipher(b"k" * 16)
    chunk = bytes(4096)
    rounds = 20_000
    seconds = timeit.timeit(lambda: cipher.update(chunk), number=rounds)
    print(f"RC4 4 KiB chunks: {rounds * len(chunk) / seconds / 1e6:.0f} MB/s")


if __name__ == "__main__":
    main()
