"""
Live fan-out benchmark: flashstream and nginx-rtmp side by side.

    python bench/fanout.py              # both servers, default sweep
    python bench/fanout.py --servers flashstream --steps 25,50,100

Each server runs pinned to core 0 (``taskset -c 0``) on an ephemeral loopback
port with its own temporary directory; this process (publisher and players)
pins itself to core 1.  A synthetic publisher loops a 720p30 H.264 + AAC clip
at about 2.5 Mbit/s (encoded once with ffmpeg and cached), and the sweep opens
N players per step, lets them warm up, then measures a window:

* real time: every player's newest video timestamp is within ``--max-lag``
  ms of the publisher's and it received at least ``--min-frames`` of the
  video frames published in the window;
* server CPU seconds (``/proc/PID/stat``) per delivered GB (bytes the players
  read in the window);
* publisher-to-player latency of video messages (p50/p99), at 100 players;
* server memory per connection: RSS growth over the publisher-only baseline
  divided by N;
* the load client's own CPU use (if it nears 100% of core 1 the step is
  limited by the client, not the server, and the sweep stops there).

To keep the client cheap at large N, players above the latency step (N > 100)
set ``SO_RCVLOWAT`` to ``--rcvlowat-ms`` (100 ms) of the clip's bit rate once
their first frame arrived, so they wake up for a few large reads a second
instead of one per message; that delays what they see by at most about that
long, well inside ``--max-lag``.  The client runs on uvloop if it is importable
(``--loop``).  Each step records the options it used.

Results are appended as JSON lines to ``bench/results/fanout-<date>.jsonl``.
Everything stops by itself; only processes started here are killed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import rtmp_load
from rtmp_load import ROOT, Clip, Publisher, event_loop_factory, open_players, read_flv

CLIP = ROOT / "bench" / ".cache" / "clip-720p30.flv"
RESULTS = ROOT / "bench" / "results"
NGINX_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def ensure_clip() -> Path:
    """The benchmark clip, encoded with ffmpeg the first time it is needed."""
    if not CLIP.exists():
        CLIP.parent.mkdir(parents=True, exist_ok=True)
        print(f"encoding the test clip once into {CLIP} ...")
        rtmp_load.make_clip(CLIP)
    return CLIP


def save_result(kind: str, stamp: str, record: dict[str, object]) -> Path:
    """Write ``record`` as one JSON line to ``bench/results/<kind>-<stamp>.jsonl``,
    say where, and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{kind}-{stamp}.jsonl"
    path.write_text(json.dumps(record) + "\n")
    print(f"results: {path.relative_to(ROOT)}")
    return path


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid``."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def core_times(core: int) -> tuple[int, int]:
    """(busy, total) jiffies of one CPU core so far, from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                values = [int(x) for x in line.split()[1:]]
                idle = values[3] + values[4]
                return sum(values) - idle, sum(values)
    raise RuntimeError(f"no cpu{core} in /proc/stat")


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of the time a core was busy (with anything) between two readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


def free_port() -> int:
    """An unused loopback port (for nginx, which cannot report an ephemeral one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server under test, started pinned to core 0."""

    name = ""

    def __init__(self, core: int) -> None:
        self.core = core
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.lines: list[str] = []
        #: Log lines containing each word, all of them (``lines`` keeps the first 2000).
        self.counted = {"Traceback": 0, "Dropping": 0, "Refusing": 0, "Unhandled": 0}
        self.tmp = Path(tempfile.mkdtemp(prefix=f"fanout-{self.name}-"))

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _spawn(self, args: Sequence[str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            ["taskset", "-c", str(self.core), *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            for word in self.counted:
                if word in line:
                    self.counted[word] += 1
            if len(self.lines) < 2000:
                self.lines.append(line.rstrip())

    def start(self) -> None:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)


class Flashstream(Server):
    name = "flashstream"
    #: ``[limits]`` lines for the benchmark's config file: every load client
    #: connects from 127.0.0.1, past the default per-address limit.
    limits: Sequence[str] = ("max_connections = 100000", "max_connections_per_address = 100000")
    #: More TOML tables for the config file (``--flashstream-toml``), to
    #: measure a setting's effect; the ``[limits]`` table is taken.
    extra_toml = ""

    def start(self) -> None:
        config = self.tmp / "flashstream.toml"
        config.write_text(
            "[limits]\n" + "".join(line + "\n" for line in self.limits) + self.extra_toml
        )
        self._spawn(
            [
                sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=", "--logfile=-",
                "flashstream", "--config", str(config), "--rtmp", "tcp:0:interface=127.0.0.1",
                "--http", "none", "--rtmps", "none",
            ],
            ROOT,
        )  # fmt: skip
        pattern = re.compile(r"flashstream rtmp listening on [\d.]+:(\d+)")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for line in self.lines:
                match = pattern.search(line)
                if match:
                    self.port = int(match.group(1))
                    return
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("flashstream did not start:\n" + "\n".join(self.lines[-20:]))

    def version(self) -> str:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        return f"git {head.stdout.strip()}"


class Nginx(Server):
    name = "nginx-rtmp"

    def start(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists() or not NGINX_MODULE.exists():
            raise RuntimeError(
                "nginx with the RTMP module is missing: "
                "apt-get install -y nginx-light libnginx-mod-rtmp"
            )
        self.port = free_port()
        (self.tmp / "logs").mkdir()
        config = self.tmp / "nginx.conf"
        config.write_text(
            f"""
load_module {NGINX_MODULE};
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid {self.tmp}/nginx.pid;
error_log {self.tmp}/logs/error.log warn;
events {{ worker_connections 20000; }}
rtmp {{
    server {{
        listen 127.0.0.1:{self.port};
        chunk_size 4096;
        application live {{
            live on;
        }}
    }}
}}
"""
        )
        self._spawn(
            [nginx, "-p", str(self.tmp), "-e", f"{self.tmp}/logs/error.log", "-c", str(config)],
            self.tmp,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process is not None and self.process.poll() is not None:
                    break
                time.sleep(0.05)
        log = (
            (self.tmp / "logs" / "error.log").read_text()
            if (self.tmp / "logs" / "error.log").exists()
            else ""
        )
        raise RuntimeError("nginx did not start:\n" + "\n".join(self.lines[-20:]) + log)

    def version(self) -> str:
        out = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
        return (out.stderr or out.stdout).strip()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run_server(server: Server, clip: Clip, args: argparse.Namespace, out: list[dict]) -> dict:
    """Publish to ``server`` and sweep the player count; return the summary."""
    loop = asyncio.get_event_loop()
    _, publisher = await loop.create_connection(
        lambda: Publisher("live", "bench", server.port, clip), "127.0.0.1", server.port
    )
    await asyncio.wait_for(publisher.ready, 10)
    publisher.start()
    await asyncio.sleep(3)  # past the first keyframe group
    baseline_rss = rss_bytes(server.pid)
    steps: list[dict] = []
    started = time.monotonic()
    for count in args.steps:
        if time.monotonic() - started > args.max_seconds:
            print(f"  {server.name}: time limit reached, sweep stops before N={count}")
            break
        rcvlowat = rcvlowat_bytes(clip, args) if count > args.rcvlowat_above else 0
        step = await run_step(server, publisher, count, baseline_rss, rcvlowat, args)
        steps.append(step)
        out.append(step)
        latency = (
            f"{step['latency_ms_p50']:.1f}/{step['latency_ms_p99']:.1f} ms"
            if step["latency_ms_p50"] is not None
            else "- (rcvlowat)"
        )
        print(
            f"  {server.name:12} N={count:5} realtime={step['all_realtime']!s:5} "
            f"ok={step['realtime_players']:5} cpu={step['server_cpu_share']:.0%} "
            f"client={step['client_cpu_share']:.0%} cores={step['server_core_busy']:.0%}/"
            f"{step['client_core_busy']:.0%} cpu_s/GB={step['cpu_seconds_per_gb']:.2f} "
            f"lat p50/p99={latency} rss/conn={step['rss_per_connection_kb']:.0f} kB "
            f"reads/s={step['client_reads_per_player_s']:.0f} rcvlowat={rcvlowat} "
            f"loop_late={step['client_loop_late_ms_max']:.0f}ms "
            f"load={step['loadavg'][0]:.2f}"
        )
        if not step["all_realtime"] or step["client_saturated"]:
            break
    publisher.stop()
    passed = [s for s in steps if s["all_realtime"]]
    at100 = next(
        (s for s in steps if s["players"] == 100 and not s["client"]["rcvlowat_bytes"]), None
    )
    best = max(passed, key=lambda s: s["players"]) if passed else None
    return {
        "kind": "summary",
        "server": server.name,
        "version": server.version(),
        "max_realtime_players": best["players"] if best else 0,
        # The last step's client was saturated: whether it passed or not, the
        # server's limit is not known past the largest passing step.
        "limited_by_client": bool(steps and steps[-1]["client_saturated"]),
        # Every step passed: the real limit is higher than the largest step.
        "limited_by_steps": bool(
            steps and steps[-1]["all_realtime"] and steps[-1]["players"] == args.steps[-1]
        ),
        "cpu_seconds_per_gb": best["cpu_seconds_per_gb"] if best else None,
        "latency_ms_p50_at_100": at100["latency_ms_p50"] if at100 else None,
        "latency_ms_p99_at_100": at100["latency_ms_p99"] if at100 else None,
        "rss_per_connection_kb": best["rss_per_connection_kb"] if best else None,
        "contended_steps": [s["players"] for s in steps if s["client_core_contended"]],
        "cpu_seconds_per_gb_by_n": {
            str(s["players"]): s["cpu_seconds_per_gb"] for s in steps if s["all_realtime"]
        },
    }


def rcvlowat_bytes(clip: Clip, args: argparse.Namespace) -> int:
    """``--rcvlowat-ms`` of the clip's media bit rate, in bytes (0: off)."""
    return int(clip.bitrate / 8 * args.rcvlowat_ms / 1000)


async def watch_loop(lateness: list[float], tick: float = 0.05) -> None:
    """Append how late each ``tick`` s timer fired (seconds), until cancelled."""
    while True:
        before = time.perf_counter()
        await asyncio.sleep(tick)
        lateness.append(time.perf_counter() - before - tick)


async def run_step(
    server: Server,
    publisher: Publisher,
    count: int,
    baseline_rss: int,
    rcvlowat: int,
    args: argparse.Namespace,
) -> dict:
    """Open ``count`` players, warm up, measure one window, close them."""
    crowd = await open_players(
        count, server.port, "live", "bench", publisher.sent_at, rcvlowat=rcvlowat
    )
    try:
        await asyncio.wait_for(asyncio.gather(*(p.started for p in crowd.players)), 30)
    except TimeoutError:
        pass
    await asyncio.sleep(args.warmup)
    players = crowd.players
    # Players read everything waiting below SO_RCVLOWAT at the window's start
    # and end, so the frames counted and the lag are an eager reader's.
    await crowd.drain()
    # SO_RCVLOWAT delays what a player sees: no latency figures with it.
    for player in players:
        player.stats = rtmp_load.Stats(latencies=None if rcvlowat else [])
    bytes0 = [p.bytes for p in players]
    reads0 = sum(p.reads for p in players)
    cpu0 = cpu_seconds(server.pid)
    client0 = time.process_time()
    cores0 = core_times(args.server_core), core_times(args.client_core)
    wall0 = time.monotonic()
    sent0 = publisher.video_sent
    # How late the client's event loop runs a 50 ms timer: a late loop delays
    # every player (and the publisher), whatever its CPU share says.
    lateness: list[float] = []
    watcher = asyncio.ensure_future(watch_loop(lateness))
    await asyncio.sleep(args.window)
    watcher.cancel()
    await crowd.drain()
    wall = time.monotonic() - wall0
    cpu = cpu_seconds(server.pid) - cpu0
    client = time.process_time() - client0
    server_core = busy_share(cores0[0], core_times(args.server_core))
    client_core = busy_share(cores0[1], core_times(args.client_core))
    rss = rss_bytes(server.pid)
    published = publisher.video_sent - sent0
    head = publisher.last_video
    delivered = sum(p.bytes - b for p, b in zip(players, bytes0, strict=True))
    reads = sum(p.reads for p in players) - reads0
    realtime = 0
    latencies: list[float] = []
    lags: list[int] = []
    for player in players:
        stats = player.stats
        lag = head - stats.last_video
        lags.append(lag)
        if (
            player.transport is not None
            and not player.transport.is_closing()
            and lag <= args.max_lag
            and stats.frames >= args.min_frames * published
        ):
            realtime += 1
        latencies.extend(stats.latencies or [])
    crowd.close()
    await asyncio.sleep(1.0)
    ms = [x * 1000 for x in latencies]
    late_ms = max(lateness, default=0.0) * 1000
    return {
        "kind": "step",
        "server": server.name,
        "players": count,
        "window_s": round(wall, 3),
        "realtime_players": realtime,
        "all_realtime": realtime == count,
        "video_frames_published": published,
        "max_lag_ms": max(lags),
        "delivered_bytes": delivered,
        "delivered_mbit_s": delivered * 8 / wall / 1e6,
        "server_cpu_s": cpu,
        "server_cpu_share": cpu / wall,
        "cpu_seconds_per_gb": cpu / (delivered / 1e9) if delivered else float("inf"),
        "client_cpu_share": client / wall,
        "server_core_busy": server_core,
        "client_core_busy": client_core,
        "client_loop_late_ms_max": late_ms,
        "client_saturated": client / wall > args.client_limit or late_ms > args.client_max_late,
        # Other processes on the load client's core (a shared machine) make
        # the step's figures a lower bound for the server.
        "client_core_contended": client_core - client / wall > 0.25,
        "latency_ms_p50": statistics.median(ms) if ms else None,
        "latency_ms_p99": percentile(ms, 0.99) if ms else None,
        "latency_samples": len(latencies),
        "rss_per_connection_kb": (rss - baseline_rss) / count / 1024,
        "client_reads_per_player_s": reads / count / wall,
        "client": {
            "event_loop": args.event_loop,
            "rcvlowat_bytes": rcvlowat,
            "rcvlowat_ms": args.rcvlowat_ms if rcvlowat else 0,
        },
        "loadavg": os.getloadavg(),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return a / b


def fmt(value: object, spec: str = ".2f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--servers", default="flashstream,nginx", help="comma-separated: flashstream,nginx"
    )
    parser.add_argument(
        "--steps",
        default="25,50,100,200,400,800,1200,1600,2400,3200",
        help="player counts to try, in order",
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each window")
    parser.add_argument("--window", type=float, default=8.0, help="measured seconds per step")
    parser.add_argument("--max-lag", type=int, default=1000, help="ms a real-time player may trail")
    parser.add_argument(
        "--min-frames", type=float, default=0.98, help="share of frames a real-time player must get"
    )
    parser.add_argument(
        "--client-limit",
        type=float,
        default=0.90,
        help="client CPU (or client core busy) share that stops the sweep",
    )
    parser.add_argument(
        "--client-max-late",
        type=float,
        default=250.0,
        help="ms the client's event loop may run a timer late before the sweep stops",
    )
    parser.add_argument(
        "--rcvlowat-ms",
        type=float,
        default=100.0,
        help="players' SO_RCVLOWAT as ms of the clip's bit rate (0: off)",
    )
    parser.add_argument(
        "--rcvlowat-above",
        type=int,
        default=100,
        help="use SO_RCVLOWAT only at steps with more players than this (the latency step)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="the load client's event loop (auto: uvloop if importable)",
    )
    parser.add_argument("--max-seconds", type=float, default=420.0, help="time limit per server")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument("--label", default="", help="free text stored with the results")
    parser.add_argument(
        "--flashstream-toml",
        default="",
        help="TOML tables added to flashstream's config, e.g. '[rtmp]\\ntcp_nodelay = false'",
    )
    args = parser.parse_args(argv)
    Flashstream.extra_toml = args.flashstream_toml.replace("\\n", "\n") + "\n"
    args.steps = [int(x) for x in args.steps.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if max(args.steps) * 2 + 100 > hard:
        parser.error(f"RLIMIT_NOFILE hard limit {hard} is too low for {max(args.steps)} players")
    os.sched_setaffinity(0, {args.client_core})
    clip = read_flv(ensure_clip())
    args.event_loop, loop_factory = event_loop_factory(args.loop)
    print(
        f"clip: {len(clip.frames)} frames, {clip.duration_ms} ms, {clip.bitrate / 1e6:.2f} Mbit/s"
    )
    print(
        f"load client: {args.event_loop} event loop, SO_RCVLOWAT "
        f"{rcvlowat_bytes(clip, args)} bytes ({args.rcvlowat_ms:g} ms) "
        f"above N={args.rcvlowat_above}"
    )
    run_id = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    records: list[dict] = []
    summaries: dict[str, dict] = {}
    kinds = {"flashstream": Flashstream, "nginx": Nginx}
    for key in args.servers.split(","):
        server = kinds[key](args.server_core)
        print(f"{server.name}: starting on core {args.server_core}")
        try:
            server.start()
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                summary = runner.run(run_server(server, clip, args, records))
        finally:
            server.stop()
        summaries[server.name] = summary
        records.append(summary)
    fs = summaries.get("flashstream")
    ng = summaries.get("nginx-rtmp")
    rows = [
        ("largest real-time N", "max_realtime_players", "d"),
        ("CPU s per delivered GB", "cpu_seconds_per_gb", ".2f"),
        ("latency p50 at 100 (ms)", "latency_ms_p50_at_100", ".1f"),
        ("latency p99 at 100 (ms)", "latency_ms_p99_at_100", ".1f"),
        ("memory per connection (kB)", "rss_per_connection_kb", ".0f"),
    ]
    print()
    print(f"{'':28} {'flashstream':>12} {'nginx-rtmp':>12} {'ratio':>8}")
    comparison: dict[str, float | None] = {}
    for label, key, spec in rows:
        a = fs.get(key) if fs else None
        b = ng.get(key) if ng else None
        r = ratio(a, b)
        comparison[key] = r
        print(f"{label:28} {fmt(a, spec):>12} {fmt(b, spec):>12} {fmt(r):>8}")
    if fs and ng:
        # CPU per GB falls with N (fixed costs spread): compare at the same N.
        common = set(fs["cpu_seconds_per_gb_by_n"]) & set(ng["cpu_seconds_per_gb_by_n"])
        if common:
            n = max(common, key=int)
            a = fs["cpu_seconds_per_gb_by_n"][n]
            b = ng["cpu_seconds_per_gb_by_n"][n]
            comparison[f"cpu_seconds_per_gb_at_{n}"] = ratio(a, b)
            label = f"CPU s per GB at N={n}"
            print(f"{label:28} {fmt(a):>12} {fmt(b):>12} {fmt(ratio(a, b)):>8}")
    for summary in summaries.values():
        if summary["limited_by_client"]:
            print(
                f"note: {summary['server']}'s sweep was stopped by the load client (its CPU or "
                "its event loop's lateness), not the server: the limit is a lower bound"
            )
        if summary["limited_by_steps"] and not summary["limited_by_client"]:
            print(
                f"note: {summary['server']} kept real time at every step: its limit is above "
                f"N={summary['max_realtime_players']} (add --steps)"
            )
        if summary["contended_steps"]:
            print(
                f"note: other processes used the load client's core during {summary['server']}"
                f" steps N={summary['contended_steps']}: those figures are lower bounds"
            )
    records.append({"kind": "ratios", "flashstream_over_nginx": comparison})
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"fanout-{run_id}.jsonl"
    meta = {
        "kind": "run",
        "run": run_id,
        "label": args.label,
        "clip_mbit_s": clip.bitrate / 1e6,
        "args": {k: v for k, v in vars(args).items()},
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    with path.open("w") as f:
        for record in [meta, *records]:
            f.write(json.dumps({"run": run_id, **record}) + "\n")
    print(f"results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
