"""
Interop: SIGTERM on the real server (``twistd -n flashstream``).

The server stops accepting, says goodbye to publishers and players, finishes
recordings and exits with status 0 -- also when a client stopped reading and
so never lets its connection close (it is cut off after ``shutdown_timeout``).
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import AVC_SEQUENCE_HEADER, avc_keyframe
from tests.interop_kit import (
    FlashstreamServer,
    ffmpeg_publish_args,
    require_tool,
    start,
    stop_process,
)
from tests.socket_client import SocketClient

pytestmark = pytest.mark.interop


def test_sigterm_during_recorded_publish(tmp_path: Path) -> None:
    """SIGTERM while ffmpeg publishes a recorded stream: exit 0, the FLV decodes cleanly."""
    config = tmp_path / "flashstream.toml"
    config.write_text('[applications.live]\nrecord = "all"\n')
    server = FlashstreamServer(["--config", str(config)], tmp_path)
    server.start()
    recording = tmp_path / "recordings" / "live" / "term.flv"
    try:
        mark = server.mark()
        publisher = start(ffmpeg_publish_args(server.url("live", "term"), seconds=30))
        server.wait_for(r"Recording live/term", timeout=20, start=mark)
        deadline = time.monotonic() + 20
        while not (recording.exists() and recording.stat().st_size > 100_000):
            assert time.monotonic() < deadline, "the recording did not grow"
            time.sleep(0.1)  # polling the file: the server logs no line per tag
        server.stop(timeout=15)
        stop_process(publisher)
    finally:
        server.stop()
    assert server.returncode == 0, server.log_text()[-2000:]
    assert "Recorded" in server.log_text()
    probe = subprocess.run(
        [require_tool("ffprobe"), "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames:format=duration", "-of", "csv=p=0",
         str(recording)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0 and probe.stderr == "", probe.stderr
    values = [float(v) for v in probe.stdout.replace(",", "\n").split() if v.strip()]
    assert len(values) == 2 and values[0] >= 10 and values[1] > 0.4, probe.stdout


def test_sigterm_with_a_client_that_never_reads(tmp_path: Path) -> None:
    """
    A player that stopped reading holds megabytes the server cannot send;
    on SIGTERM the server waits ``shutdown_timeout`` seconds, cuts it off
    and still exits 0.
    """
    config = tmp_path / "flashstream.toml"
    config.write_text("[limits]\nshutdown_timeout = 2.0\nmax_send_backlog = 268435456\n")
    server = FlashstreamServer(["--config", str(config)], tmp_path)
    server.start()
    try:
        player = SocketClient(server.port, seed=2)
        player.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        player.connect("live")
        stream_id = player.create_stream()
        player.client.play(stream_id, "stuck")
        player.flush()
        mark = server.mark()
        publisher = SocketClient(server.port, kind="ffmpeg_publish", seed=3)
        publisher.connect("live")
        pub_id = publisher.create_stream()
        publisher.client.publish(pub_id, "stuck")
        publisher.wait_status("NetStream.Publish.Start")
        server.wait_for(r"plays live/stuck", timeout=10)
        publisher.client.video(pub_id, 0, AVC_SEQUENCE_HEADER)
        frame = avc_keyframe(0) + bytes(256 * 1024)
        for index in range(64):  # 16 MB, far more than the socket buffers hold
            publisher.client.video(pub_id, 40 * index, frame)
            publisher.flush()
        publisher.call("getStreamLength", "stuck")  # the server has handled every frame
        started = time.monotonic()
        server.stop(timeout=20)
        elapsed = time.monotonic() - started
        publisher.close()
        player.close()
    finally:
        server.stop()
    assert server.returncode == 0, server.log_text()[-2000:]
    log = server.log_text()
    assert "did not close within 2.0s of shutdown" in log, log[-2000:]
    assert 2.0 <= elapsed < 15.0, elapsed
    assert mark > 0
