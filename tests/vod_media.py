"""
Test media for the VOD tests, made once per test process by ffmpeg.

``media_dir()`` returns a directory holding:

* ``clip.mp4``: 20 s of 160x120 H.264 (B-frames, a keyframe every 2.4 s) and AAC;
* ``clip.flv``: the same streams remuxed into FLV by ffmpeg (no keyframe index);
* ``indexed.flv``: the same with ffmpeg's keyframe index in onMetaData;
* ``clip_hi.flv``: a 320x240 rendition with the same keyframe times (for play2);
* ``tone.m4a``: 6 s of AAC only.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

from .interop_kit import require_tool

#: Source facts the tests check against.
DURATION = 20.0
FPS = 25
GOP_FRAMES = 60  # 2.4 s
KEYFRAME_MS = 2400


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [require_tool("ffmpeg"), "-hide_banner", "-v", "error", "-y", *args],
        check=True,
        timeout=120,
    )


def _encode(target: Path, size: str, seconds: float = DURATION) -> None:
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc=size={size}:rate={FPS}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", str(GOP_FRAMES),
        "-keyint_min", str(GOP_FRAMES), "-sc_threshold", "0", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "48k",
        str(target),
    )  # fmt: skip


@functools.cache
def media_dir() -> Path:
    """Make the files once (per process) and return their directory."""
    root = Path(tempfile.mkdtemp(prefix="flashstream-vod-media-"))
    atexit.register(shutil.rmtree, root, True)
    _encode(root / "clip.mp4", "160x120")
    _ffmpeg("-i", str(root / "clip.mp4"), "-c", "copy", str(root / "clip.flv"))
    _ffmpeg(
        "-i", str(root / "clip.mp4"), "-c", "copy", "-flvflags", "add_keyframe_index",
        str(root / "indexed.flv"),
    )  # fmt: skip
    _encode(root / "hi.mp4", "320x240")
    _ffmpeg("-i", str(root / "hi.mp4"), "-c", "copy", str(root / "clip_hi.flv"))
    (root / "hi.mp4").unlink()
    _ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=44100", "-t", "6",
        "-c:a", "aac", "-b:a", "48k", str(root / "tone.m4a"),
    )  # fmt: skip
    return root


def copy_media(target: Path) -> None:
    """Copy the test files into ``target`` (a media root)."""
    for path in media_dir().iterdir():
        shutil.copy(path, target / path.name)
