"""
Interop: live RTMP through the real server with ffmpeg, ffprobe and rtmpdump.

One server process (``twistd -n flashstream``) on an ephemeral loopback port
serves every test in this module; each test publishes its own stream with
``ffmpeg -re`` (H.264 + AAC testsrc) and checks what real players get.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .interop_kit import (
    FlashstreamServer,
    assert_flv_decodes,
    ffmpeg_play_args,
    ffmpeg_publish_args,
    finish,
    require_tool,
    running_server,
    start,
    stop_process,
)

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashstreamServer]:
    """A flashstream server shared by the tests of this module."""
    require_tool("ffmpeg")
    media = tmp_path_factory.mktemp("media")
    with running_server(media_root=media) as running:
        yield running


def wait_published(server: FlashstreamServer, name: str, mark: int) -> None:
    """Wait until the server logs that ``live/name`` is being published."""
    server.wait_for(rf"Publishing live/{name}\b", timeout=15, start=mark)


def decode_frames(url: str, seconds: float, extra: tuple[str, ...] = ()) -> tuple[int, int, str]:
    """Play ``url`` with ffmpeg for ``seconds``; return (video, audio) frame counts and stderr."""
    args = ffmpeg_play_args(url, seconds, extra)
    code, out, err = finish(start(args), timeout=seconds + 25)
    assert code == 0, f"ffmpeg player failed ({code}):\n{err}"
    video = sum(1 for line in out.splitlines() if line.startswith("0,"))
    audio = sum(1 for line in out.splitlines() if line.startswith("1,"))
    return video, audio, err


def test_ffmpeg_and_rtmpdump_play_one_live_stream_together(
    server: FlashstreamServer, tmp_path: Path
) -> None:
    """
    A stream published by ffmpeg is played at once by an ffmpeg player and by
    ``rtmpdump --live``; both get decodable video and audio, with no decoder
    errors.
    """
    rtmpdump = require_tool("rtmpdump")
    mark = server.mark()
    publisher = start(ffmpeg_publish_args(server.url("live", "both"), seconds=9))
    wait_published(server, "both", mark)
    dump = tmp_path / "dump.flv"
    dumper = start(
        [rtmpdump, "--live", "-q", "-r", server.url("live", "both"), "-o", str(dump), "--stop", "4"]
    )
    video, audio, err = decode_frames(server.url("live", "both"), 4)
    assert err == ""
    assert video >= 60, video  # 4 s at 25 fps, less what ffmpeg's probing consumes
    assert audio >= 100, audio  # 4 s of 1024-sample AAC frames at 44.1 kHz is ~172
    code, _, dump_err = finish(dumper, timeout=30)
    assert code in (0, 2), f"rtmpdump failed ({code}):\n{dump_err}"  # 2 = incomplete (stopped)
    assert_flv_decodes(dump, min_video=50, min_audio=80)
    stop_process(publisher)


def test_two_ffmpeg_players_at_once(server: FlashstreamServer) -> None:
    """Two ffmpeg players of the same stream both decode it fully."""
    mark = server.mark()
    publisher = start(ffmpeg_publish_args(server.url("live", "two"), seconds=7))
    wait_published(server, "two", mark)
    players = [start(ffmpeg_play_args(server.url("live", "two"), 3)) for _ in range(2)]
    for player in players:
        code, out, err = finish(player, timeout=30)
        assert code == 0 and err == "", err
        assert sum(1 for line in out.splitlines() if line.startswith("0,")) >= 45
        assert sum(1 for line in out.splitlines() if line.startswith("1,")) >= 80
    stop_process(publisher)


def test_late_joiner_decodes_its_first_frame_within_a_second(server: FlashstreamServer) -> None:
    """
    A player joining mid-stream gets metadata, codec headers and the current
    keyframe group at once: it decodes a first frame, without errors, in
    under a second.
    """
    mark = server.mark()
    publisher = start(ffmpeg_publish_args(server.url("live", "late"), seconds=8))
    wait_published(server, "late", mark)
    time.sleep(2.5)  # deliberately join in the middle of a keyframe group
    ffmpeg = require_tool("ffmpeg")
    began = time.monotonic()
    # -fpsprobesize 0: ffmpeg's own frame-rate estimate otherwise waits for 40
    # video frames (1.6 s at 25 fps) whatever the server does; the stream's
    # frame rate comes from onMetaData anyway.
    code, out, err = finish(
        start(
            [
                ffmpeg,
                "-hide_banner",
                "-v",
                "error",
                "-xerror",
                "-fpsprobesize",
                "0",
                "-i",
                server.url("live", "late"),
                "-frames:v",
                "1",
                "-f",
                "framecrc",
                "-",
            ]
        ),
        timeout=20,
    )
    elapsed = time.monotonic() - began
    assert code == 0 and err == "", err
    assert any(line.startswith("0,") for line in out.splitlines())
    assert elapsed < 1.0, f"first frame took {elapsed:.2f}s"
    stop_process(publisher)


def test_ffprobe_sees_the_published_resolution_and_codecs(server: FlashstreamServer) -> None:
    """ffprobe of the live stream reports the publisher's size and codecs (metadata forwarded)."""
    ffprobe = require_tool("ffprobe")
    mark = server.mark()
    publisher = start(ffmpeg_publish_args(server.url("live", "probe"), seconds=6, size="640x360"))
    wait_published(server, "probe", mark)
    code, out, err = finish(
        start(
            [ffprobe, "-v", "error", "-show_streams", "-of", "json", server.url("live", "probe")]
        ),
        timeout=30,
    )
    assert code == 0, err
    streams = {s["codec_type"]: s for s in json.loads(out)["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert (streams["video"]["width"], streams["video"]["height"]) == (640, 360)
    assert streams["audio"]["codec_name"] == "aac"
    assert int(streams["audio"]["sample_rate"]) == 44100
    stop_process(publisher)


def test_second_publisher_of_a_name_gets_badname_and_first_goes_on(
    server: FlashstreamServer,
) -> None:
    """
    A second encoder publishing a name already in use is refused with
    NetStream.Publish.BadName; the first stream keeps playing.
    """
    mark = server.mark()
    first = start(ffmpeg_publish_args(server.url("live", "taken"), seconds=9))
    wait_published(server, "taken", mark)
    second = start(ffmpeg_publish_args(server.url("live", "taken"), seconds=3))
    code, _, err = finish(second, timeout=30)
    assert code != 0
    assert "already being published" in err or "BadName" in err, err
    video, audio, err = decode_frames(server.url("live", "taken"), 2)
    assert err == "" and video >= 30 and audio >= 50
    stop_process(first)


def test_garbage_peer_is_dropped_and_others_are_unaffected(server: FlashstreamServer) -> None:
    """
    A peer sending garbage is dropped with a log line; a player watching a
    stream at the same time keeps decoding without errors.
    """
    mark = server.mark()
    publisher = start(ffmpeg_publish_args(server.url("live", "calm"), seconds=8))
    wait_published(server, "calm", mark)
    player = start(ffmpeg_play_args(server.url("live", "calm"), 3))
    for junk in (b"GET / HTTP/1.0\r\n\r\n", b"\x03" + bytes(1536) + b"\xff" * 3000):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(junk)
            sock.settimeout(5)
            try:
                while sock.recv(65536):
                    pass  # the server answers the handshake part, then closes
            except ConnectionResetError:
                pass
    server.wait_for(r"Dropping .*(not RTMP|protocol error)", timeout=10, start=mark)
    code, out, err = finish(player, timeout=30)
    assert code == 0 and err == "", err
    assert sum(1 for line in out.splitlines() if line.startswith("0,")) >= 45
    stop_process(publisher)


def test_sigterm_says_goodbye_to_players(tmp_path: Path) -> None:
    """
    On SIGTERM the server ends each player's stream with Play.Stop before
    closing, so an ffmpeg player finishes cleanly (exit 0, no errors).
    """
    with running_server(media_root=tmp_path) as own:
        mark = own.mark()
        publisher = start(ffmpeg_publish_args(own.url("live", "bye"), seconds=20))
        wait_published(own, "bye", mark)
        ffmpeg = require_tool("ffmpeg")
        player = start(
            [
                ffmpeg,
                "-hide_banner",
                "-v",
                "error",
                "-i",
                own.url("live", "bye"),
                "-f",
                "framecrc",
                "-",
            ]
        )
        own.wait_for(r"plays live/bye", timeout=10, start=mark)
        own.stop()
        code, out, err = finish(player, timeout=20)
        assert code == 0 and err == "", err
        assert any(line.startswith("0,") for line in out.splitlines())
        assert "Dropping" in own.log_text() and "server shutting down" in own.log_text()
        stop_process(publisher)
