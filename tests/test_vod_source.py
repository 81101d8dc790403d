"""
Tests for :mod:`flashstream.vod.source`, ``flv`` and ``mp4``: indexing media
files made by ffmpeg, reading them back as RTMP bodies, damaged files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flashstream.vod import flv
from flashstream.vod.flv import FlvSource
from flashstream.vod.mp4 import Mp4Source
from flashstream.vod.source import AUDIO, VIDEO, Frame, MediaError, SeekPoint, SourceCache

from .vod_media import DURATION, KEYFRAME_MS, media_dir


def frames(source: FlvSource | Mp4Source, point: SeekPoint | None = None) -> list[Frame]:
    """Every frame from ``point`` (the start if None) to the end."""
    reader = source.open(point or source.seek_point(0))
    out = []
    while (frame := reader.read()) is not None:
        out.append(frame)
    reader.close()
    return out


def test_flv_without_index_is_scanned() -> None:
    """An FLV without a keyframe index gets one by scanning: one point per keyframe."""
    source = FlvSource.scan(media_dir() / "clip.flv")
    assert [p.time for p in source.points] == list(range(0, 20000, KEYFRAME_MS))
    assert abs(source.duration - DURATION) < 0.1
    assert [h.type_id for h in source.headers] == [VIDEO, AUDIO]
    assert source.headers[0].payload[:2] == b"\x17\x00"
    assert source.headers[1].payload[:2] == b"\xaf\x00"


def test_flv_index_from_metadata_matches_scan() -> None:
    """ffmpeg's keyframes.filepositions/times index is used and points at keyframes."""
    indexed = FlvSource.scan(media_dir() / "indexed.flv")
    assert [p.time for p in indexed.points] == list(range(0, 20000, KEYFRAME_MS))
    for point in indexed.points:
        first = indexed.open(point).read()
        assert first is not None and first.type_id == VIDEO and first.payload[0] == 0x17
        assert first.timestamp == point.time


def test_seek_points_are_at_or_before() -> None:
    """seek_point is the keyframe at or before; seek_point_after the one at or after."""
    source = FlvSource.scan(media_dir() / "clip.flv")
    assert source.seek_point(10000).time == 9600
    assert source.seek_point(9600).time == 9600
    assert source.seek_point(-5).time == 0
    assert source.seek_point(99999).time == 19200
    after = source.seek_point_after(9601)
    assert after is not None and after.time == 12000
    assert source.seek_point_after(19201) is None


def test_mp4_frames_equal_ffmpeg_flv_frames() -> None:
    """
    The MP4 demuxed by PyAV gives the same RTMP bodies ffmpeg's FLV muxer
    wrote for the same streams: avcC and AudioSpecificConfig headers, CTS
    offsets of B-frames, every sample.
    """
    mp4 = Mp4Source.scan(media_dir() / "clip.mp4")
    flv_source = FlvSource.scan(media_dir() / "clip.flv")
    assert [h.payload for h in mp4.headers] == [h.payload for h in flv_source.headers]
    ours = [(f.type_id, f.payload) for f in frames(mp4)]
    theirs = [
        (f.type_id, f.payload)
        for f in frames(flv_source)
        if f.type_id in (AUDIO, VIDEO) and f.payload[1:2] == b"\x01"
    ]
    assert ours == theirs
    assert any(f.payload[2:5] != b"\x00\x00\x00" for f in frames(mp4) if f.type_id == VIDEO)
    assert abs(mp4.duration - DURATION) < 0.05
    assert [p.time for p in mp4.points] == list(range(0, 20000, KEYFRAME_MS))


def test_mp4_seek_starts_on_a_keyframe() -> None:
    """Reading from an MP4 seek point starts with that video keyframe."""
    mp4 = Mp4Source.scan(media_dir() / "clip.mp4")
    first = frames(mp4, mp4.seek_point(10000))[0]
    assert (first.type_id, first.timestamp, first.payload[:2]) == (VIDEO, 9600, b"\x17\x01")


def test_audio_only_mp4_has_seek_points() -> None:
    """An .m4a has AAC headers and a seek point about every second."""
    source = Mp4Source.scan(media_dir() / "tone.m4a")
    assert [h.payload[:2] for h in source.headers] == [b"\xaf\x00"]
    times = [p.time for p in source.points]
    assert len(times) >= 5 and all(b - a >= 1000 for a, b in zip(times, times[1:], strict=False))
    assert frames(source, source.seek_point(3000))[0].timestamp == source.seek_point(3000).time


def test_truncated_flv_reads_to_the_last_complete_tag(tmp_path: Path) -> None:
    """A file cut inside a tag (a killed recorder) plays up to the tag before the cut."""
    whole = FlvSource.scan(media_dir() / "clip.flv")
    data = (media_dir() / "clip.flv").read_bytes()
    cut = tmp_path / "cut.flv"
    cut.write_bytes(data[: len(data) // 2 + 7])
    source = FlvSource.scan(cut)
    got = frames(source)
    assert got == frames(whole)[: len(got)]
    assert 0 < len(got) < len(frames(whole))
    assert source.duration == pytest.approx(max(f.timestamp for f in got) / 1000)


@pytest.mark.parametrize("name", ["junk.flv", "junk.mp4"])
def test_not_media_is_media_error(tmp_path: Path, name: str) -> None:
    """Files that are not FLV/MP4 raise MediaError."""
    path = tmp_path / name
    path.write_bytes(b"this is not a media file" * 10)
    with pytest.raises(MediaError):
        (FlvSource.scan if name.endswith(".flv") else Mp4Source.scan)(path)


def test_cache_shares_and_rescans_changed_files(tmp_path: Path) -> None:
    """The cache indexes a file once for all viewers, and again when it changes."""
    path = tmp_path / "a.flv"
    shutil.copy(media_dir() / "clip.flv", path)
    cache = SourceCache(size=1)
    first = cache.get(path)
    assert cache.get(path) is first and cache.scans == 1
    with open(path, "ab") as handle:
        handle.write(flv.encode_tag(VIDEO, 20100, b"\x27\x01\x00\x00\x00"))
    assert cache.get(path) is not first and cache.scans == 2


def test_tag_helpers_round_trip() -> None:
    """encode_tag / parse_tag_header keep type, size and 32-bit timestamps."""
    tag = flv.encode_tag(VIDEO, 0x12345678, b"abc")
    assert flv.parse_tag_header(tag[:11]) == (VIDEO, 3, 0x12345678)
    assert tag[-4:] == (14).to_bytes(4, "big")
    assert flv.check_file_header(flv.flv_header()) == 13
