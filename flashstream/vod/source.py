# -*- test-case-name: tests.test_vod_source -*-
"""
What a player needs from a media file, whatever its container.

A :class:`MediaSource` is built once per file (``open_source``) and shared by
every viewer through :class:`SourceCache`: it holds the file's metadata,
codec sequence headers and seek index, never the media itself.  Each viewer
opens its own :class:`FrameReader`, which reads the file in bounded blocks
and yields FLV-style :class:`Frame` values (RTMP audio/video/data bodies).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

import attrs

#: RTMP message types a source yields.
AUDIO = 8
VIDEO = 9
DATA = 18

#: Largest frame a file may contain (the FLV tag size field's maximum).
MAX_FRAME_SIZE = 0xFFFFFF

#: Extensions played as MP4-family files (everything else is FLV).
MP4_FAMILY = (".mp4", ".f4v", ".m4v", ".mov", ".m4a", ".3gp")


class MediaError(Exception):
    """The file cannot be played (not a media file, no playable track)."""


@attrs.frozen
class Frame:
    """One audio (8), video (9) or data (18) message body at ``timestamp`` ms."""

    type_id: int
    timestamp: int
    payload: bytes


@attrs.frozen
class SeekPoint:
    """Where playback can start: media time (ms) and a container position."""

    time: int
    position: int


class FrameReader(Protocol):
    """One viewer's sequential reader, from a seek point on."""

    def read(self) -> Frame | None:
        """The next frame, or None at the end of the file."""

    def close(self) -> None:
        """Release the file."""


class MediaSource(Protocol):
    """A playable file's shared facts."""

    @property
    def path(self) -> Path:
        """The file."""

    @property
    def duration(self) -> float:
        """Seconds."""

    @property
    def metadata(self) -> bytes | None:
        """The payload of the ``onMetaData`` data message to send, if any."""

    @property
    def headers(self) -> tuple[Frame, ...]:
        """Codec sequence headers (video first) to send before the first frame."""

    def seek_point(self, time_ms: int) -> SeekPoint:
        """The keyframe at or before ``time_ms`` (the first one if none)."""

    def seek_point_after(self, time_ms: int) -> SeekPoint | None:
        """The first keyframe at or after ``time_ms``, if there is one."""

    def open(self, point: SeekPoint) -> FrameReader:
        """A reader that starts at ``point``."""


def _bisect_right(times: list[int] | tuple[int, ...], value: int) -> int:
    low, high = 0, len(times)
    while low < high:
        middle = (low + high) // 2
        if times[middle] <= value:
            low = middle + 1
        else:
            high = middle
    return low


def point_before(points: tuple[SeekPoint, ...], time_ms: int, default: SeekPoint) -> SeekPoint:
    """The last of ``points`` (sorted by time) at or before ``time_ms``."""
    index = _bisect_right([p.time for p in points], time_ms) - 1
    if index < 0:
        return points[0] if points else default
    return points[index]


def point_after(points: tuple[SeekPoint, ...], time_ms: int) -> SeekPoint | None:
    """The first of ``points`` (sorted by time) at or after ``time_ms``."""
    for point in points:
        if point.time >= time_ms:
            return point
    return None


def open_source(path: Path) -> MediaSource:
    """Index ``path`` as FLV or as an MP4-family file (by extension)."""
    if path.suffix.lower() in MP4_FAMILY:
        from .mp4 import Mp4Source

        return Mp4Source.scan(path)
    from .flv import FlvSource

    return FlvSource.scan(path)


class SourceCache:
    """The sources of recently played files, shared by all their viewers.

    An entry is keyed by path, size and modification time, so a file that
    changes (a recording that grew) is indexed again.  At most ``size``
    entries are kept (least recently used goes first).
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, int, int], MediaSource] = OrderedDict()
        #: How many files were indexed (tests check sharing with this).
        self.scans = 0

    def get(self, path: Path) -> MediaSource:
        """The source of ``path`` (indexing it on first use); MediaError/OSError if unplayable."""
        status = os.stat(path)
        key = (str(path), status.st_size, status.st_mtime_ns)
        source = self._entries.get(key)
        if source is not None:
            self._entries.move_to_end(key)
            return source
        source = open_source(path)
        self.scans += 1
        for old in [k for k in self._entries if k[0] == key[0]]:
            del self._entries[old]
        self._entries[key] = source
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return source
