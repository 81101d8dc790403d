"""
Memory per VOD viewer: many RTMP players of one large file on loopback.

Makes a large FLV with ffmpeg (default 120 s of 640x360 at about 4 Mbit/s),
starts ``twistd -n flashstream`` with it as the media root, and connects N
players (default 100) that handshake, connect to ``vod``, play the file with
a 3 s buffer and then read and discard what arrives; half of them stop
reading after the start (stalled players, whose TCP windows fill).  The
server's resident memory (VmRSS) is sampled before and while they play, for
a bounded time.  Prints the figures; exits 1 if the growth per viewer
exceeds ``--limit-kib``.

    /work/venv/bin/python bench/vod_memory.py [--viewers 100] [--seconds 15]
"""

from __future__ import annotations

import argparse
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import FlashClient, seeded_random  # noqa: E402
from tests.interop_kit import FlashstreamServer  # noqa: E402


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def make_file(target: Path, seconds: int) -> None:
    """A big FLV: 640x360 H.264 at about 4 Mbit/s and AAC."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-v", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M",
         "-g", "50", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", str(target)],
        check=True,
    )  # fmt: skip


class Viewer:
    """One player: a FlashClient until the play is sent, then raw reads."""

    def __init__(self, port: int, index: int, reads: bool) -> None:
        self.client = FlashClient("ffmpeg", seeded_random(index))
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.reads = reads
        self.playing = False
        self.received = 0
        self.txn = 0.0
        self.client.connect("vod")
        self.txn = self.client.create_stream()
        self.send()

    def send(self) -> None:
        """Write what the client queued (small; loopback takes it at once)."""
        data = self.client.data_to_send()
        if data:
            self.sock.setblocking(True)
            self.sock.sendall(data)
            self.sock.setblocking(False)

    def readable(self) -> bool:
        """Handle input; False once this viewer should no longer be read."""
        try:
            data = self.sock.recv(262144)
        except BlockingIOError:
            return True
        if not data:
            return False
        self.received += len(data)
        if not self.playing:
            self.client.receive(data)
            if self.client.results(self.txn):
                stream_id = int(self.client.result(self.txn).arguments[0])  # type: ignore[arg-type]
                self.client.play(stream_id, "big")
                self.client.set_buffer_length(stream_id, 3000)
                self.playing = True
            self.send()
            return True
        return self.reads


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--file-seconds", type=int, default=120)
    parser.add_argument("--limit-kib", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flashstream-bench-") as tmp:
        media = Path(tmp)
        make_file(media / "big.flv", args.file_seconds)
        size = (media / "big.flv").stat().st_size
        server = FlashstreamServer(media_root=media)
        server.start()
        assert server.process is not None
        pid = server.process.pid
        try:
            warm = Viewer(server.port, 0, True)  # indexes the file, loads the code
            selector = selectors.DefaultSelector()
            selector.register(warm.sock, selectors.EVENT_READ, warm)
            deadline = time.monotonic() + 5
            while not warm.playing and time.monotonic() < deadline:
                for key, _ in selector.select(0.1):
                    key.data.readable()
            baseline = rss_kib(pid)
            viewers = [Viewer(server.port, i + 1, i % 2 == 0) for i in range(args.viewers)]
            for viewer in viewers:
                selector.register(viewer.sock, selectors.EVENT_READ, viewer)
            peak = baseline
            started = time.monotonic()
            next_sample = started
            while time.monotonic() - started < args.seconds:
                for key, _ in selector.select(0.05):
                    if not key.data.readable():
                        selector.unregister(key.fileobj)
                if time.monotonic() >= next_sample:
                    peak = max(peak, rss_kib(pid))
                    next_sample += 0.5
            playing = sum(v.playing for v in viewers)
            received = sum(v.received for v in viewers)
            for viewer in [warm, *viewers]:
                viewer.sock.close()
        finally:
            server.stop()
    per_viewer = (peak - baseline) / args.viewers
    print(f"file: {size / 1e6:.1f} MB, {args.file_seconds} s")
    print(f"viewers: {args.viewers} ({playing} playing; half stop reading after the start)")
    print(f"ran {args.seconds:.0f} s; players received {received / 1e6:.1f} MB in all")
    print(f"server RSS: {baseline / 1024:.1f} MiB with one viewer, peak {peak / 1024:.1f} MiB")
    print(f"growth per viewer: {per_viewer:.0f} KiB (file size per viewer would be "
          f"{size / 1024:.0f} KiB)")  # fmt: skip
    return 0 if per_viewer <= args.limit_kib and playing == args.viewers else 1


if __name__ == "__main__":
    sys.exit(main())
