"""
Helpers for the monitoring interop tests: a server with ``--http`` and a
config file, HTTP requests to it, and FLV capture analysis.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .interop_kit import FlashstreamServer, ffmpeg_publish_args, require_tool, running_server

ADMIN_TOKEN = "interop-admin-token-0123456789"


@contextmanager
def monitored_server(workdir: Path) -> Iterator[tuple[FlashstreamServer, str]]:
    """A server with an HTTP listener, an access log and 1 s pings; yields (server, base URL)."""
    config = workdir / "flashstream.toml"
    config.write_text(
        f"""
[api]
admin_token = "{ADMIN_TOKEN}"

[tracking]
access_log = "access.log"

[qos]
ping_interval = 1.0
rate_window = 4.0
"""
    )
    media = workdir / "media"
    media.mkdir(exist_ok=True)
    args = ["--config", str(config), "--http", "tcp:0:interface=127.0.0.1"]
    with running_server(args, media_root=media) as server:
        match = server.wait_for(r"flashstream http listening on ([\d.]+):(\d+)")
        yield server, f"http://127.0.0.1:{match.group(2)}"


def get_json(url: str) -> Any:
    """GET a JSON document."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def post(url: str, token: str | None = None) -> tuple[int, Any]:
    """POST with an optional bearer token; (status, JSON body)."""
    request = urllib.request.Request(url, method="POST", data=b"")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def ffprobe_packets(path: Path, stream: str) -> list[dict[str, Any]]:
    """ffprobe's packets of the ``v`` or ``a`` stream of a file."""
    result = subprocess.run(
        [
            require_tool("ffprobe"),
            "-v",
            "error",
            "-select_streams",
            stream,
            "-show_entries",
            "packet=pts_time,size,flags",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    packets: list[dict[str, Any]] = json.loads(result.stdout)["packets"]
    return packets


def flv_tags(data: bytes) -> list[tuple[int, int]]:
    """(tag type, body size) of every complete tag of an FLV byte string."""
    assert data[:3] == b"FLV", data[:16]
    position = int.from_bytes(data[5:9], "big") + 4
    tags = []
    while position + 11 <= len(data):
        size = int.from_bytes(data[position + 1 : position + 4], "big")
        if position + 15 + size > len(data):
            break
        tags.append((data[position], size))
        position += 15 + size
    return tags


def publish_args(url: str, seconds: float, video_kbps: int) -> list[str]:
    """ffmpeg publishing 320x240 25 fps H.264 held near ``video_kbps`` plus 64k AAC."""
    return ffmpeg_publish_args(
        url,
        seconds,
        video_args=(
            "-b:v",
            f"{video_kbps}k",
            "-maxrate",
            f"{video_kbps}k",
            "-bufsize",
            f"{video_kbps // 2}k",
        ),
    )
