"""
One slow viewer next to normal ones: does it cost the server more memory than
its backlog limit, or the other viewers latency?

Starts flashstream pinned to core 0 (``--max-send-backlog`` bytes per player),
publishes the 720p30 H.264 + AAC clip of ``bench/fanout.py`` (about 2.5
Mbit/s) and opens ``--players`` normal players on core 1 (``rtmp_load``).
Then, in windows of ``--window`` seconds:

1. baseline: normal players only;
2. slow: a slow reader is added first (a separate process on core 1: a
   blocking socket with a small SO_RCVBUF that reads at ``--slow-share`` of
   the stream rate, acknowledging now and then so it is not idle), given
   ``--slow-warmup`` seconds to fill its backlog, then the window is measured;
3. without: the slow reader is gone, normal players only;

and steps 2-3 again, ``--repeat`` times in all.

Reported: the normal players' latency p50/p99 per window (publisher to
player, including the load client's own scheduling), the server's RSS during
each window, what the slow reader received, whether the server skipped or
dropped it (its log), and the server's own figure for what it holds for the
slow reader: the largest ``send_backlog`` any client showed in the HTTP API
(``/api/v1/clients``, polled once a second in every window so each window
carries the same load).

RSS is an upper bound on what a slow reader costs, not the cost itself: it
also moves with unrelated growth, and memory the allocator keeps after the
reader left (so the first slow window's growth over the baseline includes
allocator slack that later slow readers reuse).  So the growth is reported
per cycle -- each slow window against the window just before it -- next to
the noise: how much RSS moved between windows without a slow reader.
One JSON line goes to ``bench/results/slow-<UTC time>.jsonl``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence

import rtmp_load
from fanout import CLIP, Flashstream, ensure_clip, percentile, rss_bytes, save_result
from rtmp_load import Publisher, c0c1, open_players, read_flv

from flashstream.rtmp import messages as msg
from flashstream.rtmp.chunks import ChunkWriter


def slow_worker(port: int, rate: float, rcvbuf: int, seconds: float) -> None:
    """The slow reader (its own process): play live/bench, read ``rate`` bytes/s."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(c0c1())
    handshake = b""
    while len(handshake) < 1 + 2 * rtmp_load.HANDSHAKE_SIZE:
        handshake += sock.recv(65536)
    writer = ChunkWriter()
    s1 = handshake[1 : 1 + rtmp_load.HANDSHAKE_SIZE]
    sock.sendall(
        s1
        + rtmp_load._connect(writer, "live", port)
        + rtmp_load._command(writer, 0, 3, "createStream", 2.0)
        + rtmp_load._command(writer, 1, 8, "play", 0.0, "bench", -1000.0)
    )
    received = len(handshake) - 1 - 2 * rtmp_load.HANDSHAKE_SIZE
    started = time.monotonic()
    last_ack = started
    step = min(4096, max(512, int(rate / 20)))
    closed = False
    while time.monotonic() - started < seconds:
        budget = rate * (time.monotonic() - started) - received
        if budget < step:
            time.sleep((step - budget) / rate)
            continue
        data = sock.recv(step)
        if not data:
            closed = True
            break
        received += len(data)
        now = time.monotonic()
        if now - last_ack >= 5.0:  # input, so the idle timeout does not apply
            last_ack = now
            ack = msg.encode_control(msg.Acknowledgement(received % 2**32))
            try:
                sock.sendall(writer.write(ack, 2))
            except OSError:
                closed = True
                break
    elapsed = time.monotonic() - started
    print(json.dumps({"received": received, "seconds": elapsed, "closed_by_server": closed}))
    sock.close()


class ServerWithAPI(Flashstream):
    """flashstream with its HTTP API on an ephemeral loopback port too."""

    http_port = 0

    def _spawn(self, args: Sequence[str], cwd: object) -> None:
        args = list(args)
        args[args.index("--http") + 1] = "tcp:0:interface=127.0.0.1"
        super()._spawn(args, cwd)  # type: ignore[arg-type]

    def start(self) -> None:
        super().start()
        pattern = re.compile(r"flashstream http listening on [\d.]+:(\d+)")
        for line in self.lines:
            match = pattern.search(line)
            if match:
                self.http_port = int(match.group(1))
        if not self.http_port:
            raise RuntimeError("flashstream did not say where its HTTP API listens")

    def largest_backlog(self) -> int:
        """The largest send_backlog of any client now (bytes the server holds for it)."""
        url = f"http://127.0.0.1:{self.http_port}/api/v1/clients"
        with urllib.request.urlopen(url, timeout=5) as response:
            clients = json.load(response)
        if isinstance(clients, dict):
            clients = clients.get("clients", [])
        return max((int(c.get("send_backlog") or 0) for c in clients), default=0)


async def window(
    players: list[rtmp_load.Player], server: ServerWithAPI, seconds: float, poll: float = 1.0
) -> dict[str, float]:
    """Measure the normal players' latency, the server's RSS and its largest
    accounted backlog (read from its API every ``poll`` seconds; 0: never,
    the reads themselves cost both processes time) for ``seconds``."""
    for player in players:
        player.stats = rtmp_load.Stats(latencies=[])
    rss: list[int] = []
    backlog = [0]
    end = time.monotonic() + seconds
    polled = 0.0
    while time.monotonic() < end:
        rss.append(rss_bytes(server.pid))
        if poll and time.monotonic() - polled >= poll:
            polled = time.monotonic()
            backlog.append(await asyncio.to_thread(server.largest_backlog))
        await asyncio.sleep(0.5)
    ms = [x * 1000 for p in players for x in (p.stats.latencies or [])] or [float("nan")]
    frames = [p.stats.frames for p in players]
    return {
        "latency_ms_p50": statistics.median(ms),
        "latency_ms_p99": percentile(ms, 0.99),
        "latency_samples": len(ms),
        "min_frames_per_player": min(frames),
        "rss_max_mb": max(rss) / 2**20,
        "rss_min_mb": min(rss) / 2**20,
        "rss_mean_mb": statistics.fmean(rss) / 2**20,
        "accounted_backlog_max_mb": max(backlog) / 2**20,
    }


async def run(args: argparse.Namespace, server: ServerWithAPI) -> dict[str, object]:
    clip = read_flv(CLIP)
    loop = asyncio.get_event_loop()
    _, publisher = await loop.create_connection(
        lambda: Publisher("live", "bench", server.port, clip), "127.0.0.1", server.port
    )
    await asyncio.wait_for(publisher.ready, 10)
    publisher.start()
    await asyncio.sleep(3)
    crowd = await open_players(args.players, server.port, "live", "bench", publisher.sent_at)
    await asyncio.sleep(args.warmup)
    players = crowd.players
    results: dict[str, object] = {"stream_bit_rate": clip.bitrate}
    results["baseline"] = await window(players, server, args.window, args.poll_api)
    rate = clip.bitrate / 8 * args.slow_share
    results["slow_reader_rate_bytes_s"] = rate
    cycles: list[dict[str, object]] = []
    for _ in range(args.repeat):
        marks = len(server.lines)
        slow = await asyncio.create_subprocess_exec(
            "taskset", "-c", str(args.client_core), sys.executable, __file__, "--slow-worker",
            str(server.port), str(rate), str(args.rcvbuf), str(args.slow_warmup + args.window + 1),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(args.slow_warmup)
        measured = await window(players, server, args.window, args.poll_api)
        cycle: dict[str, object] = {"slow": measured}
        out, _ = await slow.communicate()
        cycle["slow_reader"] = json.loads(out.decode().strip().splitlines()[-1])
        cycle["server_lines_about_slow_reader"] = [
            line for line in server.lines[marks:] if "Dropping" in line or "Aborting" in line
        ][:5]
        await asyncio.sleep(2)
        cycle["without"] = await window(players, server, args.window, args.poll_api)
        cycles.append(cycle)
    results["cycles"] = cycles
    crowd.close()
    publisher.stop()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--slow-worker":
        slow_worker(int(argv[1]), float(argv[2]), int(argv[3]), float(argv[4]))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--players", type=int, default=50, help="normal players")
    parser.add_argument("--window", type=float, default=15.0, help="measured seconds per window")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--slow-warmup", type=float, default=15.0, help="seconds to fill backlog")
    parser.add_argument("--slow-share", type=float, default=0.25, help="of the stream rate")
    parser.add_argument("--rcvbuf", type=int, default=8192, help="slow reader's SO_RCVBUF")
    parser.add_argument("--max-send-backlog", type=int, default=2 * 1024 * 1024)
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2, help="slow/without cycles")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="the players' event loop (auto: uvloop if importable, as bench/fanout.py)",
    )
    parser.add_argument(
        "--poll-api",
        type=float,
        default=1.0,
        help="seconds between reads of the server's accounted backlog (0: none; "
        "the reads add latency spikes of their own)",
    )
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)
    ensure_clip()
    os.sched_setaffinity(0, {args.client_core})
    server = ServerWithAPI(args.server_core)
    server.limits = (*server.limits, f"max_send_backlog = {args.max_send_backlog}")
    server.start()
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    event_loop, loop_factory = rtmp_load.event_loop_factory(args.loop)
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            results = runner.run(run(args, server))
    finally:
        server.stop()
    results["event_loop"] = event_loop
    base = results["baseline"]
    cycles = results["cycles"]
    assert isinstance(base, dict) and isinstance(cycles, list)
    windows = [("baseline", base)]
    for number, cycle in enumerate(cycles, 1):
        windows += [(f"slow {number}", cycle["slow"]), (f"without {number}", cycle["without"])]
    for name, w in windows:
        print(
            f"{name:11} latency p50/p99 {w['latency_ms_p50']:6.1f}/{w['latency_ms_p99']:6.1f} ms"
            f"  RSS max {w['rss_max_mb']:.2f} MB (min {w['rss_min_mb']:.2f})"
            f"  accounted backlog max {w['accounted_backlog_max_mb']:.2f} MB"
            f"  min frames/player {w['min_frames_per_player']}"
        )
    for number, cycle in enumerate(cycles, 1):
        print(f"slow reader {number}: {cycle['slow_reader']}")
        for line in cycle["server_lines_about_slow_reader"]:
            print(f"server: {line}")
    cap_mb = args.max_send_backlog / 2**20
    before = [base] + [cycle["without"] for cycle in cycles[:-1]]
    growth = [
        c["slow"]["rss_max_mb"] - b["rss_max_mb"] for b, c in zip(before, cycles, strict=True)
    ]
    p99 = [
        c["slow"]["latency_ms_p99"] - b["latency_ms_p99"]
        for b, c in zip(before, cycles, strict=True)
    ]
    quiet = [base] + [cycle["without"] for cycle in cycles]
    rss_noise = max(
        [w["rss_max_mb"] - w["rss_min_mb"] for w in quiet]
        + [
            abs(b["rss_max_mb"] - a["rss_max_mb"])
            for a, b in zip(quiet[1:], quiet[2:], strict=False)
        ]
    )
    p99_noise = max(abs(w["latency_ms_p99"] - base["latency_ms_p99"]) for w in quiet[1:])
    results.update(
        kind="slow_reader",
        started=started,
        label=args.label,
        players=args.players,
        max_send_backlog=args.max_send_backlog,
        load_average=os.getloadavg(),
        rss_growth_per_cycle_mb=growth,
        rss_growth_over_first_baseline_mb=max(c["slow"]["rss_max_mb"] for c in cycles)
        - base["rss_max_mb"],
        rss_noise_mb=rss_noise,
        accounted_backlog_max_mb=max(c["slow"]["accounted_backlog_max_mb"] for c in cycles),
        p99_change_ms=p99,
        p99_noise_ms=p99_noise,
    )
    print(
        "RSS growth with the slow reader, per cycle: "
        + ", ".join(f"{g:+.2f}" for g in growth)
        + f" MB (noise without it: {rss_noise:.2f} MB; over the first baseline: "
        f"{results['rss_growth_over_first_baseline_mb']:+.2f} MB); the server's accounted "
        f"backlog peaked at {results['accounted_backlog_max_mb']:.2f} MB; cap {cap_mb:.2f} MB"
    )
    print(
        "p99 change with the slow reader, per cycle: "
        + ", ".join(f"{d:+.1f}" for d in p99)
        + f" ms (noise without it: {p99_noise:.1f} ms); load average {os.getloadavg()[0]:.2f}"
    )
    save_result("slow", started, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
