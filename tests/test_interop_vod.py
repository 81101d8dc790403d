"""
Interop: on-demand playback, progressive download and recording through the
real server with rtmpdump, ffmpeg, ffprobe and curl.

One server (RTMP and HTTP on ephemeral loopback ports) serves a media root
holding the files of :mod:`tests.vod_media`; ``live`` records every publish
(``record = "all"``) into ``<media root>/recordings``.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from flashstream.rtmp.messages import Message
from flashstream.vod.flv import FlvSource, decode_metadata, parse_tag_header

from .helpers import FlashClient, seeded_random
from .interop_kit import (
    FlashstreamServer,
    ffmpeg_publish_args,
    finish,
    require_tool,
    start,
)
from .vod_media import DURATION, copy_media, media_dir

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The media root (a copy of the test media)."""
    root = tmp_path_factory.mktemp("vodroot")
    copy_media(root)
    return root


def start_server(media: Path, config: Path) -> FlashstreamServer:
    """A server with HTTP on, recording everything published to live."""
    config.write_text('[applications.live]\nrecord = "all"\n')
    server = FlashstreamServer(
        ["--config", str(config), "--http", "tcp:0:interface=127.0.0.1"], media
    )
    server.start()
    match = server.wait_for(r"flashstream http listening on ([\d.]+):(\d+)")
    server.http_port = int(match.group(2))  # type: ignore[attr-defined]
    return server


@pytest.fixture(scope="module")
def server(media: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashstreamServer]:
    """The server shared by this module's tests."""
    require_tool("rtmpdump")
    running = start_server(media, tmp_path_factory.mktemp("conf") / "flashstream.toml")
    try:
        yield running
    finally:
        running.stop()


def probe_duration(path: Path) -> float:
    """ffprobe's idea of the file's duration."""
    out = subprocess.run(
        [require_tool("ffprobe"), "-v", "error", "-show_entries", "format=duration",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return float(out.strip())


def decode(path_or_url: str, *extra: str) -> tuple[int, int]:
    """Decode every frame with ffmpeg -xerror; return (video, audio) frame counts."""
    args = [require_tool("ffmpeg"), "-hide_banner", "-v", "error", "-xerror", *extra,
            "-i", path_or_url, "-f", "framecrc", "-"]  # fmt: skip
    code, out, err = finish(start(args), timeout=60)
    assert code == 0 and err == "", err
    lines = out.splitlines()
    video = sum(line.startswith("0,") for line in lines)
    return video, sum(line.startswith("1,") for line in lines)


def rtmpdump(server: FlashstreamServer, target: Path, *args: str) -> None:
    """Run rtmpdump against vod; it must say the download is complete."""
    code, _, err = finish(
        start([require_tool("rtmpdump"), "-q", "-r", server.url("vod"), *args, "-o", str(target)]),
        timeout=60,
    )
    assert code == 0, f"rtmpdump exited {code}:\n{err}"


@pytest.mark.parametrize("playpath", ["clip", "mp4:clip.mp4"])
def test_rtmpdump_downloads_whole_files(
    server: FlashstreamServer, media: Path, tmp_path: Path, playpath: str
) -> None:
    """rtmpdump saves the whole file: same duration (within 0.1 s) and every frame decodes."""
    dump = tmp_path / "dump.flv"
    rtmpdump(server, dump, "-y", playpath)
    source = media / ("clip.mp4" if playpath.startswith("mp4:") else "clip.flv")
    assert abs(probe_duration(dump) - probe_duration(source)) < 0.1
    (video, audio), (source_video, source_audio) = decode(str(dump)), decode(str(source))
    assert video == source_video == int(DURATION * 25)
    assert 0 <= audio - source_audio <= 1  # the MP4 edit list hides AAC priming


def test_rtmpdump_start_at_10s_gets_the_keyframe_before(
    server: FlashstreamServer, media: Path, tmp_path: Path
) -> None:
    """``rtmpdump -A 10`` starts on the keyframe at 9.6 s (the GOP is 2.4 s)."""
    dump = tmp_path / "from10.flv"
    rtmpdump(server, dump, "-y", "clip", "-A", "10")
    clip = FlvSource.scan(media / "clip.flv")
    expected = clip.open(clip.seek_point(10000)).read()
    got = FlvSource.scan(dump)
    first = got.open(got.seek_point(0)).read()
    assert expected is not None and first is not None
    assert first.payload == expected.payload and first.payload[:2] == b"\x17\x01"
    assert 10000 - 2400 <= expected.timestamp <= 10000


def test_ffmpeg_plays_mp4_decoding_every_frame(server: FlashstreamServer, media: Path) -> None:
    """ffmpeg plays ``mp4:clip.mp4`` (B-frames, AAC) and decodes every frame without errors."""
    url = server.url("vod", "mp4:clip.mp4")
    video, audio = decode(url, "-rtmp_buffer", "60000")
    source_video, source_audio = decode(str(media / "clip.mp4"))
    assert video == source_video == int(DURATION * 25)
    assert 0 <= audio - source_audio <= 1  # the MP4 edit list hides AAC priming


def curl(server: FlashstreamServer, path: str, *args: str) -> tuple[str, bytes]:
    """(response headers, body) of curl against the HTTP listener."""
    result = subprocess.run(
        [require_tool("curl"), "-s", "--path-as-is", "-D", "/dev/stderr", *args,
         f"http://127.0.0.1:{server.http_port}{path}"],  # type: ignore[attr-defined]
        capture_output=True, timeout=30, check=True,
    )  # fmt: skip
    return result.stderr.decode("latin-1"), result.stdout


def test_curl_ranges(server: FlashstreamServer, media: Path) -> None:
    """curl's Range requests get 206, Content-Range and the exact bytes; HEAD the length."""
    data = (media / "clip.mp4").read_bytes()
    headers, body = curl(server, "/vod/clip.mp4", "-r", "1000-4999")
    assert headers.startswith("HTTP/1.1 206")
    assert f"Content-Range: bytes 1000-4999/{len(data)}" in headers
    assert "Content-Type: video/mp4" in headers and body == data[1000:5000]
    headers, body = curl(server, "/vod/clip.mp4", "-r", "0-9,-10")
    assert headers.startswith("HTTP/1.1 206") and "multipart/byteranges" in headers
    assert data[:10] in body and data[-10:] in body
    headers, _ = curl(server, "/vod/clip.mp4", "-I")
    assert headers.startswith("HTTP/1.1 200") and f"Content-Length: {len(data)}" in headers
    etag = re.search(r"ETag: (\S+)", headers)
    assert etag is not None
    headers, _ = curl(server, "/vod/clip.mp4", "-H", f"If-None-Match: {etag.group(1)}")
    assert headers.startswith("HTTP/1.1 304")


def test_traversal_refused_over_http_and_rtmp(server: FlashstreamServer, tmp_path: Path) -> None:
    """``..`` (plain and encoded) and absolute paths get 404 / StreamNotFound."""
    for path in ("/vod/../../etc/passwd", "/vod/%2e%2e/%2e%2e/etc/passwd", "/vod//etc/passwd"):
        headers, body = curl(server, path)
        assert headers.startswith("HTTP/1.1 404") and b"root:" not in body, path
    code, _, err = finish(
        start([require_tool("rtmpdump"), "-r", server.url("vod"), "-y", "../../../etc/passwd",
               "-o", str(tmp_path / "x.flv")]),
        timeout=30,
    )  # fmt: skip
    assert code != 0 and "StreamNotFound" in err


class RealSocketClient:
    """A FlashClient driven over a blocking loopback socket."""

    def __init__(self, port: int) -> None:
        self.client = FlashClient("ffmpeg_publish", seeded_random(7))
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)

    def flush(self) -> None:
        """Send what the client queued."""
        self.sock.sendall(self.client.data_to_send())

    def until(self, code: str) -> None:
        """Read until an onStatus with ``code`` arrives."""
        while code not in self.client.status_codes():
            self.flush()
            data = self.sock.recv(65536)
            assert data, "server closed the connection"
            self.client.receive(data)
        self.flush()


def publish_clip(port: int, name: str, seconds: float, kind: str) -> RealSocketClient:
    """Publish the first ``seconds`` of clip.flv as fast as possible with ``kind``."""
    peer = RealSocketClient(port)
    peer.client.connect("live")
    txn = peer.client.create_stream()
    peer.flush()
    while not peer.client.results(txn):
        peer.client.receive(peer.sock.recv(65536))
        peer.flush()
    stream_id = int(cast(float, peer.client.result(txn).arguments[0]))
    peer.client.publish(stream_id, name, kind)
    peer.until("NetStream.Publish.Start")
    source = FlvSource.scan(media_dir() / "clip.flv")
    for header in source.headers:
        peer.client.send_message(Message(header.type_id, stream_id, 0, header.payload), 6)
    reader = source.open(source.seek_point(0))
    while (frame := reader.read()) is not None and frame.timestamp < seconds * 1000:
        message = Message(frame.type_id, stream_id, frame.timestamp, frame.payload)
        peer.client.send_message(message, 6)
    peer.flush()
    return peer


def test_record_by_scripted_client_then_play(server: FlashstreamServer, media: Path) -> None:
    """
    publish(record) from a scripted client that then vanishes: the recording
    is finished (duration, index) and plays at once through vod.
    """
    mark = server.mark()
    peer = publish_clip(server.port, "scripted", 6.0, "record")
    peer.sock.close()  # like a killed publisher: no unpublish, no deleteStream
    server.wait_for(r"Recorded .*scripted\.flv", start=mark, timeout=20)
    recording = media / "recordings" / "live" / "scripted.flv"
    assert abs(probe_duration(recording) - 6.0) < 0.1
    data = recording.read_bytes()
    _, size, _ = parse_tag_header(data[13:24])
    metadata = decode_metadata(data[24 : 24 + size])
    assert metadata is not None and "keyframes" in metadata
    video, _ = decode(
        server.url("vod"), "-rtmp_buffer", "60000", "-rtmp_app", "vod",
        "-rtmp_playpath", "recordings/live/scripted",
    )  # fmt: skip
    assert video == 150


def test_record_all_with_ffmpeg_and_killed_publisher(
    server: FlashstreamServer, media: Path
) -> None:
    """record = "all": a live ffmpeg publish is recorded; also when ffmpeg is killed midway."""
    mark = server.mark()
    publisher = start(ffmpeg_publish_args(server.url("live", "whole"), seconds=4))
    code, _, err = finish(publisher, timeout=30)
    assert code == 0, err
    server.wait_for(r"Recorded .*whole\.flv", start=mark, timeout=20)
    assert abs(probe_duration(media / "recordings" / "live" / "whole.flv") - 4.0) < 0.15

    mark = server.mark()
    args = ffmpeg_publish_args(server.url("live", "killed"), seconds=60)
    args[1:1] = ["-progress", "pipe:1", "-stats_period", "0.5"]
    killed = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert killed.stdout is not None
    for line in killed.stdout:  # ffmpeg's own progress: wait for 3 s sent
        found = re.match(r"out_time_us=(\d+)", line)
        if found and int(found.group(1)) >= 3_000_000:
            break
    killed.kill()
    killed.wait(10)
    server.wait_for(r"Recorded .*killed\.flv", start=mark, timeout=20)
    duration = probe_duration(media / "recordings" / "live" / "killed.flv")
    assert 2.5 < duration < 5.0
    video, _ = decode(str(media / "recordings" / "live" / "killed.flv"))
    assert abs(video / 25 - duration) < 0.2


def test_sigterm_and_kill9_leave_playable_recordings(media: Path, tmp_path: Path) -> None:
    """
    SIGTERM finishes a recording in progress (duration and keyframe index);
    after kill -9 the file is readable to its last complete tag.
    """
    for how in ("term", "kill"):
        server = start_server(media, tmp_path / f"{how}.toml")
        try:
            mark = server.mark()
            peer = publish_clip(server.port, f"cut-{how}", 5.0, "record")
            # the server has every tag once it answers a ping-like round trip:
            peer.client.call("getStreamLength", 99, "x")
            peer.flush()
            while not peer.client.results(99):
                peer.client.receive(peer.sock.recv(65536))
            server.wait_for(rf"Recording live/cut-{how}", start=mark)
            if how == "term":
                server.stop()
            else:
                assert server.process is not None
                server.process.kill()
                server.process.wait(10)
        finally:
            server.stop()
        recording = media / "recordings" / "live" / f"cut-{how}.flv"
        data = recording.read_bytes()
        _, size, _ = parse_tag_header(data[13:24])
        metadata = decode_metadata(data[24 : 24 + size])
        if how == "term":
            assert metadata is not None and "keyframes" in metadata
            assert abs(probe_duration(recording) - 5.0) < 0.1
        source = FlvSource.scan(recording)
        assert abs(source.duration - 5.0) < 0.1
        video, _ = decode(str(recording))
        assert video == 125
