"""
The kit for interop tests: the real server as a subprocess, real clients.

``FlashstreamServer`` starts ``twistd -n flashstream`` on an ephemeral
loopback port (``tcp:0``) and learns the port from the server's own
"listening on" log line; it records every log line so tests can wait for an
event instead of sleeping.  ``require_tool`` fails (never skips) when a client
such as ffmpeg or rtmpdump is missing and ``CI`` is set.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_LISTENING = re.compile(r"flashstream rtmp listening on ([\d.]+):(\d+)")


def require_tool(name: str) -> str:
    """Return the tool's path; fail in CI, skip elsewhere, if it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (the README's test command installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class FlashstreamServer:
    """A flashstream server process on 127.0.0.1 with an ephemeral port."""

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        media_root: Path | None = None,
        extra_path: Sequence[Path] = (),
    ) -> None:
        self.extra_args = list(extra_args)
        self.media_root = media_root
        #: Folders put on the server's PYTHONPATH (packages with their own twisted/plugins/).
        self.extra_path = list(extra_path)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        #: The exit status once :meth:`stop` has waited for the process.
        self.returncode: int | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Start twistd and wait for the listening line."""
        args = [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "-n",
            "--pidfile=",
            "--logfile=-",
            "flashstream",
            "--rtmp",
            "tcp:0:interface=127.0.0.1",
            "--rtmps",
            "none",
            "--http",
            "none",
        ]
        if self.media_root is not None:
            args += ["--media-root", str(self.media_root)]
        args += self.extra_args
        env = dict(os.environ)
        if self.extra_path:
            paths = [str(p) for p in self.extra_path]
            if env.get("PYTHONPATH"):
                paths.append(env["PYTHONPATH"])
            env["PYTHONPATH"] = os.pathsep.join(paths)
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._read, daemon=True).start()
        match = self.wait_for(_LISTENING.pattern, timeout)
        self.port = int(match.group(2))

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<<process exited>>")
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 10.0, start: int = 0) -> re.Match[str]:
        """Wait for a log line matching ``pattern`` (from line ``start`` on)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    match = regex.search(line)
                    if match:
                        return match
                    if line == "<<process exited>>":
                        raise AssertionError("server exited:\n" + "\n".join(self.lines[-40:]))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no log line matching {pattern!r} within {timeout}s; last lines:\n"
                        + "\n".join(self.lines[-40:])
                    )
                self._cond.wait(remaining)

    def mark(self) -> int:
        """The current log position, for ``wait_for(start=...)``."""
        with self._cond:
            return len(self.lines)

    def port_of(self, kind: str, timeout: float = 20.0) -> int:
        """The port of the ``kind`` listener (rtmp, rtmps, http), from its log line."""
        match = self.wait_for(rf"flashstream {kind} listening on [\d.]+:(\d+)", timeout)
        return int(match.group(1))

    def url(self, app: str, name: str = "") -> str:
        """An rtmp:// URL on this server."""
        return f"rtmp://127.0.0.1:{self.port}/{app}" + (f"/{name}" if name else "")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM our own process (by pid), then wait for it (SIGKILL after ``timeout``)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.returncode = self.process.returncode
        self.process = None

    def log_text(self) -> str:
        """Everything the server logged so far."""
        with self._cond:
            return "\n".join(self.lines)


@contextmanager
def running_server(
    extra_args: Sequence[str] = (),
    media_root: Path | None = None,
    extra_path: Sequence[Path] = (),
) -> Iterator[FlashstreamServer]:
    """Run a server for the duration of the block."""
    server = FlashstreamServer(extra_args, media_root, extra_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def ffmpeg_publish_args(
    url: str,
    seconds: float,
    size: str = "320x240",
    rate: int = 25,
    video_args: Sequence[str] = (),
) -> list[str]:
    """An ffmpeg command publishing H.264 + AAC testsrc at real time to ``url``.

    ``video_args`` go after the H.264 settings (e.g. a bitrate to hold).
    """
    return [
        require_tool("ffmpeg"),
        "-hide_banner",
        "-v",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size={size}:rate={rate}",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        str(seconds),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-g",
        str(rate),
        *video_args,
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        "-f",
        "flv",
        url,
    ]


def ffmpeg_play_args(
    url: str, seconds: float | None = None, extra: Sequence[str] = ()
) -> list[str]:
    """An ffmpeg player of ``url`` writing framecrc lines to stdout.

    ``-xerror`` makes any decoding error fail the process; ``extra`` input
    options go before ``-i``; ``seconds`` bounds the output duration.
    """
    duration = ["-t", str(seconds)] if seconds is not None else []
    return [
        require_tool("ffmpeg"),
        "-hide_banner",
        "-v",
        "error",
        "-xerror",
        *extra,
        "-i",
        url,
        *duration,
        "-f",
        "framecrc",
        "-",
    ]


def assert_flv_decodes(path: Path, min_video: int = 50, min_audio: int = 80) -> None:
    """A saved file decodes with ffmpeg (-xerror), no errors, with enough video and audio."""
    code, out, err = finish(start(ffmpeg_play_args(str(path))), timeout=30)
    assert code == 0 and err == "", err
    assert sum(1 for line in out.splitlines() if line.startswith("0,")) >= min_video
    assert sum(1 for line in out.splitlines() if line.startswith("1,")) >= min_audio


def start(args: Sequence[str]) -> subprocess.Popen[str]:
    """Start a client process with captured output."""
    return subprocess.Popen(
        list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )


def finish(process: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, str, str]:
    """Wait for a client process; kill it (ours, by pid) if it overruns."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"{process.args!r} did not finish in {timeout}s:\n{err}") from None
    return process.returncode, out, err


def stop_process(process: subprocess.Popen[str]) -> None:
    """End a client we started (SIGTERM by pid, then SIGKILL) once a test has what it needs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
