"""
Hold many idle RTMP connections to flashstream and report memory per connection.

    python bench/idle_connections.py              # 10,000 connections
    python bench/idle_connections.py --count 2000

The server runs on core 0 (``taskset``) on an ephemeral loopback port; this
process raises its RLIMIT_NOFILE (and the server's, which inherits it), opens
``--count`` connections that each complete the handshake and ``connect`` and
then stay silent, and reports the server's RSS growth divided by the count.
It then checks the server still answers: one more client connects and a
publisher plus player exchange a frame, timed.  The connections stay well
inside the server's idle timeout.  Results are appended as one JSON line to
``bench/results/idle-<UTC time>.jsonl``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import resource
import sys
import time
from collections.abc import Sequence

import rtmp_load
from fanout import CLIP, Flashstream, cpu_seconds, ensure_clip, rss_bytes, save_result
from rtmp_load import Player, Publisher, read_flv


class Idle(rtmp_load._Base):
    """Handshake and connect, then stay silent."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.connected = asyncio.get_event_loop().create_future()

    def after_handshake(self) -> bytes:
        return rtmp_load._connect(self.writer, "live", self.port)

    def on_message(self, type_id: int, timestamp: int, length: int) -> None:
        if type_id == 20 and not self.connected.done():
            self.connected.set_result(None)


async def run(port: int, pid: int, count: int, batch: int) -> dict:
    loop = asyncio.get_event_loop()
    await asyncio.sleep(1)
    baseline = rss_bytes(pid)
    started = time.monotonic()
    idle: list[Idle] = []
    for first in range(0, count, batch):
        made = await asyncio.gather(
            *(
                loop.create_connection(lambda: Idle(port), "127.0.0.1", port)
                for _ in range(min(batch, count - first))
            )
        )
        batch_protocols = [protocol for _, protocol in made]
        await asyncio.wait_for(asyncio.gather(*(p.connected for p in batch_protocols)), 60)
        idle.extend(batch_protocols)
    opened = time.monotonic() - started
    await asyncio.sleep(2)
    rss = rss_bytes(pid)
    cpu0 = cpu_seconds(pid)
    await asyncio.sleep(5)
    idle_cpu = (cpu_seconds(pid) - cpu0) / 5
    # Still responsive: a publisher and a player exchange frames.
    clip = read_flv(CLIP)
    t0 = time.monotonic()
    _, publisher = await loop.create_connection(
        lambda: Publisher("live", "probe", port, clip), "127.0.0.1", port
    )
    await asyncio.wait_for(publisher.ready, 10)
    publisher.start()
    _, player = await loop.create_connection(
        lambda: Player("live", "probe", port, publisher.sent_at), "127.0.0.1", port
    )
    await asyncio.wait_for(player.started, 10)
    first_frame = time.monotonic() - t0
    publisher.stop()
    alive = sum(1 for p in idle if p.transport is not None and not p.transport.is_closing())
    for p in idle:
        if p.transport is not None:
            p.transport.close()
    if player.transport is not None:
        player.transport.close()
    await asyncio.sleep(1)
    return {
        "connections": count,
        "still_open": alive,
        "seconds_to_open": opened,
        "rss_baseline_mb": baseline / 2**20,
        "rss_mb": rss / 2**20,
        "rss_per_connection_kb": (rss - baseline) / count / 1024,
        "idle_server_cpu_share": idle_cpu,
        "publish_to_first_frame_s": first_frame,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < args.count + 200:
        parser.error(f"RLIMIT_NOFILE hard limit {hard} is below {args.count + 200}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {args.client_core})
    ensure_clip()
    server = Flashstream(args.server_core)
    try:
        server.start()
        result = asyncio.run(run(server.port, server.pid, args.count, args.batch))
    finally:
        server.stop()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "kind": "idle",
        "run": now,
        "server": "flashstream",
        "version": server.version(),
        **result,
    }
    for key, value in result.items():
        print(f"{key:28} {value:.2f}" if isinstance(value, float) else f"{key:28} {value}")
    save_result("idle", now, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
