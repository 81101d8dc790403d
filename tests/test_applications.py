"""
The built-in applications: FMS-style VOD names resolved safely under the
media root, and the decisions of ``live`` and ``vod``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from zope.interface.verify import verifyObject

from flashstream.applications import (
    LiveApplication,
    Rejected,
    VodApplication,
    builtin_application,
    resolve_media_path,
)
from flashstream.config import ApplicationConfig
from flashstream.hub import StreamHub
from flashstream.interfaces import IStreamApplication


@pytest.mark.parametrize(
    ("name", "relative"),
    [
        ("clip", "clip.flv"),
        ("flv:clip", "clip.flv"),
        ("clip.flv", "clip.flv"),
        ("sub/dir/clip", "sub/dir/clip.flv"),
        ("mp4:film.mp4", "film.mp4"),
        ("mp4:film.f4v", "film.f4v"),
        ("mp4:film.mov", "film.mov"),
        ("mp4:song.m4a", "song.m4a"),
        ("mp4:film", "film.mp4"),
        ("mp3:song", "song.mp3"),
    ],
)
def test_fms_names(tmp_path: Path, name: str, relative: str) -> None:
    """Play names map to files the way Flash Media Server maps them."""
    assert resolve_media_path(tmp_path, name) == (tmp_path / relative).resolve()


@pytest.mark.parametrize(
    "name", ["../secret", "sub/../../secret", "/etc/passwd", "mp4:/etc/passwd", "", "a\\b", "a\0b"]
)
def test_nothing_outside_the_root(tmp_path: Path, name: str) -> None:
    """Names escaping the media root (.., absolute, odd characters) resolve to None."""
    assert resolve_media_path(tmp_path / "media", name) is None


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    """A symlink inside the root pointing outside it is not served."""
    root = tmp_path / "media"
    root.mkdir()
    (tmp_path / "secret.flv").write_bytes(b"FLV")
    os.symlink(tmp_path / "secret.flv", root / "link.flv")
    assert resolve_media_path(root, "link") is None


def test_builtin_applications_provide_the_interface(tmp_path: Path) -> None:
    """Both built-in applications verify against IStreamApplication."""
    hub = StreamHub()
    live = builtin_application(ApplicationConfig("live", "live"), hub, tmp_path)
    vod = builtin_application(ApplicationConfig("vod", "vod"), hub, tmp_path)
    assert isinstance(live, LiveApplication) and isinstance(vod, VodApplication)
    assert verifyObject(IStreamApplication, live)
    assert verifyObject(IStreamApplication, vod)


def test_vod_missing_file_is_stream_not_found(tmp_path: Path) -> None:
    """Playing a file that does not exist is NetStream.Play.StreamNotFound."""
    vod = VodApplication(ApplicationConfig("vod", "vod"), tmp_path)
    with pytest.raises(Rejected) as raised:
        vod.play(object(), object(), "nothing", 0)  # type: ignore[arg-type]
    assert raised.value.code == "NetStream.Play.StreamNotFound"


def test_vod_refuses_publishing(tmp_path: Path) -> None:
    """vod is play-only: publish is NetStream.Publish.Denied."""
    vod = VodApplication(ApplicationConfig("vod", "vod"), tmp_path)
    with pytest.raises(Rejected) as raised:
        vod.publish(object(), object(), "x", "live")  # type: ignore[arg-type]
    assert raised.value.code == "NetStream.Publish.Denied"


def test_live_without_waiting_reports_missing_streams(tmp_path: Path) -> None:
    """With wait_for_publisher = false, an unpublished name is StreamNotFound at once."""
    live = LiveApplication(ApplicationConfig("live", "live", False), StreamHub())
    with pytest.raises(Rejected) as raised:
        live.play(object(), object(), "nobody", -2000)  # type: ignore[arg-type]
    assert raised.value.code == "NetStream.Play.StreamNotFound"
