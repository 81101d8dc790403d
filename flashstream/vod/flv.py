# -*- test-case-name: tests.test_vod_source -*-
"""
FLV files: tags, the per-file index, and each viewer's reader.

:meth:`FlvSource.scan` indexes a file once: it takes the keyframe index from
``onMetaData`` (``keyframes.filepositions``/``times``, as yamdi, flvmeta and
our recorder write it) when it is present and consistent with the file, and
otherwise walks the tag headers (seeking over the bodies) to build one.  A
truncated last tag (a server killed while recording) ends the file there.

:class:`FlvReader` reads one viewer's tags sequentially through a bounded
buffer.  The pure helpers (``encode_tag``, ``parse_tag_header``,
``flv_header``) are shared with the recorder and the HTTP pseudo-streaming.
"""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path
from typing import BinaryIO

import attrs

from ..rtmp import commands as cmd
from ..rtmp import media
from ..rtmp.amf_types import ECMAArray
from ..rtmp.errors import ProtocolError
from .source import (
    AUDIO,
    DATA,
    VIDEO,
    Frame,
    MediaError,
    SeekPoint,
    point_after,
    point_before,
)

TAG_HEADER_SIZE = 11
#: FLV header (9 bytes) plus PreviousTagSize0.
FILE_HEADER_SIZE = 13
#: Bytes each viewer's reader buffers.
READ_BLOCK = 64 * 1024
#: Largest script-data (onMetaData) body we decode while indexing.
MAX_METADATA_SIZE = 1024 * 1024
#: Seek points of an audio-only file are at least this far apart (ms).
AUDIO_SEEK_INTERVAL = 1000
#: Tags read from the start for sequence headers when the metadata has an index.
HEADER_SEARCH_TAGS = 64


def flv_header(*, audio: bool = True, video: bool = True) -> bytes:
    """The 9-byte FLV header and PreviousTagSize0."""
    flags = (4 if audio else 0) | (1 if video else 0)
    return b"FLV\x01" + bytes([flags]) + struct.pack(">I", 9) + b"\x00\x00\x00\x00"


def encode_tag(type_id: int, timestamp: int, payload: bytes) -> bytes:
    """One FLV tag with its trailing PreviousTagSize."""
    timestamp &= 0xFFFFFFFF
    header = (
        bytes([type_id])
        + len(payload).to_bytes(3, "big")
        + (timestamp & 0xFFFFFF).to_bytes(3, "big")
        + bytes([timestamp >> 24])
        + b"\x00\x00\x00"
    )
    return header + payload + struct.pack(">I", TAG_HEADER_SIZE + len(payload))


def parse_tag_header(header: bytes) -> tuple[int, int, int]:
    """``(type_id, body_size, timestamp_ms)`` of an 11-byte tag header."""
    type_id = header[0] & 0x1F
    size = int.from_bytes(header[1:4], "big")
    timestamp = int.from_bytes(header[4:7], "big") | (header[7] << 24)
    return type_id, size, timestamp


def check_file_header(head: bytes) -> int:
    """The offset of the first tag (after PreviousTagSize0); MediaError if not FLV."""
    if len(head) < 9 or head[:3] != b"FLV":
        raise MediaError("not an FLV file")
    offset = int.from_bytes(head[5:9], "big")
    if offset < 9:
        raise MediaError("bad FLV header size")
    return offset + 4


def decode_metadata(payload: bytes) -> dict[str, object] | None:
    """The properties of an ``onMetaData`` script body, or None if it is not one."""
    try:
        data = cmd.decode_data(DATA, payload)
    except ProtocolError:
        return None
    if data.name != "onMetaData" or not data.arguments:
        return None
    values = data.arguments[0]
    return dict(values) if isinstance(values, dict) else None


def encode_metadata(properties: dict[str, object]) -> bytes:
    """An ``onMetaData`` script body with ``properties`` as an ECMA array."""
    return cmd.encode_data(cmd.DataMessage("onMetaData", (ECMAArray(properties),)))


@attrs.frozen
class TagInfo:
    """One tag found while scanning: where it is and what it is."""

    position: int
    type_id: int
    size: int
    timestamp: int
    #: True for a video keyframe that is not a sequence header.
    keyframe: bool
    #: The body, kept only for script data and sequence headers.
    body: bytes | None


def scan_tags(
    handle: BinaryIO, start: int, file_size: int, limit: int | None = None
) -> list[TagInfo]:
    """Walk the complete tags from ``start`` (reading headers, seeking over bodies).

    Bodies are read for script data (up to ``MAX_METADATA_SIZE``) and codec
    sequence headers; for video, the first two bytes tell keyframes apart.
    Stops at the first incomplete tag or after ``limit`` tags.
    """
    tags: list[TagInfo] = []
    position = start
    while limit is None or len(tags) < limit:
        if position + TAG_HEADER_SIZE > file_size:
            break
        handle.seek(position)
        header = handle.read(TAG_HEADER_SIZE)
        if len(header) < TAG_HEADER_SIZE:
            break
        type_id, size, timestamp = parse_tag_header(header)
        if position + TAG_HEADER_SIZE + size + 4 > file_size:
            break
        body: bytes | None = None
        keyframe = False
        if type_id == DATA and size <= MAX_METADATA_SIZE:
            body = handle.read(size)
        elif type_id == VIDEO and size:
            first = handle.read(min(size, 2))
            if media.is_video_sequence_header(first):
                body = first + handle.read(size - len(first))
            else:
                # an AVC/HEVC end-of-sequence (packet type 2) is not a place to start
                ends = len(first) > 1 and first[0] & 0x0F in (7, 12) and first[1] == 2
                keyframe = media.is_keyframe(first) and not ends
        elif type_id == AUDIO and size >= 2:
            first = handle.read(2)
            if media.is_audio_sequence_header(first):
                body = first + handle.read(size - 2)
        tags.append(TagInfo(position, type_id, size, timestamp, keyframe, body))
        position += TAG_HEADER_SIZE + size + 4
    return tags


def _metadata_index(
    properties: dict[str, object], file_size: int, data_start: int
) -> tuple[SeekPoint, ...] | None:
    """The keyframe index in ``onMetaData``, if present and plausible."""
    keyframes = properties.get("keyframes")
    if not isinstance(keyframes, dict):
        return None
    positions = keyframes.get("filepositions")
    times = keyframes.get("times")
    if not isinstance(positions, list) or not isinstance(times, list):
        return None
    if not positions or len(positions) != len(times):
        return None
    points: list[SeekPoint] = []
    for position, seconds in zip(positions, times, strict=True):
        if not isinstance(position, (int, float)) or not isinstance(seconds, (int, float)):
            return None
        if not (math.isfinite(position) and math.isfinite(seconds)):
            return None
        if not data_start <= position < file_size:
            return None
        point = SeekPoint(round(seconds * 1000), int(position))
        if points and (point.time < points[-1].time or point.position <= points[-1].position):
            return None
        points.append(point)
    return tuple(points)


@attrs.frozen
class FlvSource:
    """An indexed FLV file (see the module docstring)."""

    path: Path
    duration: float
    metadata: bytes | None
    headers: tuple[Frame, ...]
    points: tuple[SeekPoint, ...]
    #: Offset of the first tag.
    data_start: int

    @classmethod
    def scan(cls, path: Path) -> FlvSource:
        """Index ``path``; MediaError if it is not a readable FLV file."""
        with open(path, "rb") as handle:
            file_size = handle.seek(0, io.SEEK_END)
            handle.seek(0)
            data_start = check_file_header(handle.read(9))
            first = scan_tags(handle, data_start, file_size, HEADER_SEARCH_TAGS)
            properties: dict[str, object] | None = None
            for tag in first:
                if tag.type_id == DATA and tag.body is not None:
                    properties = decode_metadata(tag.body)
                    if properties is not None:
                        break
            points = _metadata_index(properties or {}, file_size, data_start)
            duration = properties.get("duration") if properties else None
            if (
                points is not None
                and isinstance(duration, (int, float))
                and math.isfinite(duration)
                and duration > 0
                and _is_video_keyframe(handle, points[0].position)
            ):
                tags = first
                last_timestamp = 0
            else:
                tags = scan_tags(handle, data_start, file_size)
                points = _build_index(tags)
                last_timestamp = max((t.timestamp for t in tags if t.type_id != DATA), default=0)
                duration = None  # measured
        headers = _sequence_headers(tags)
        if not isinstance(duration, (int, float)) or not math.isfinite(duration) or duration <= 0:
            duration = last_timestamp / 1000
        if properties is None:
            properties = {}
        properties["duration"] = float(duration)
        properties.pop("keyframes", None)
        return cls(path, float(duration), encode_metadata(properties), headers, points, data_start)

    def seek_point(self, time_ms: int) -> SeekPoint:
        """The keyframe at or before ``time_ms``."""
        return point_before(self.points, time_ms, SeekPoint(0, self.data_start))

    def seek_point_after(self, time_ms: int) -> SeekPoint | None:
        """The first keyframe at or after ``time_ms``."""
        return point_after(self.points, time_ms)

    def open(self, point: SeekPoint) -> FlvReader:
        """A reader from ``point``."""
        return FlvReader(self.path, point.position)


def _is_video_keyframe(handle: BinaryIO, position: int) -> bool:
    handle.seek(position)
    header = handle.read(TAG_HEADER_SIZE + 1)
    if len(header) < TAG_HEADER_SIZE + 1:
        return False
    return header[0] & 0x1F == VIDEO and media.is_keyframe(header[TAG_HEADER_SIZE:])


def _build_index(tags: list[TagInfo]) -> tuple[SeekPoint, ...]:
    """Seek points: every video keyframe, or audio tags a second apart in audio-only files."""
    points = [SeekPoint(t.timestamp, t.position) for t in tags if t.keyframe]
    if not points and not any(t.type_id == VIDEO for t in tags):
        for tag in tags:
            if tag.type_id == AUDIO and tag.body is None:
                if not points or tag.timestamp - points[-1].time >= AUDIO_SEEK_INTERVAL:
                    points.append(SeekPoint(tag.timestamp, tag.position))
    return tuple(points)


def _sequence_headers(tags: list[TagInfo]) -> tuple[Frame, ...]:
    video: Frame | None = None
    audio: Frame | None = None
    for tag in tags:
        if tag.body is None:
            continue
        if tag.type_id == VIDEO and video is None:
            video = Frame(VIDEO, 0, tag.body)
        elif tag.type_id == AUDIO and audio is None:
            audio = Frame(AUDIO, 0, tag.body)
    return tuple(f for f in (video, audio) if f is not None)


class FlvReader:
    """One viewer's tags from a file position, through a ``READ_BLOCK`` buffer.

    ``onMetaData`` tags are skipped (the player sends the source's metadata);
    an incomplete last tag is the end.
    """

    def __init__(self, path: Path, position: int) -> None:
        self._handle: BinaryIO | None = open(path, "rb", buffering=READ_BLOCK)  # noqa: SIM115
        self._handle.seek(position)
        self.bytes_read = 0

    def read(self) -> Frame | None:
        """The next audio, video or data frame; None at the end."""
        handle = self._handle
        while handle is not None:
            header = handle.read(TAG_HEADER_SIZE)
            if len(header) < TAG_HEADER_SIZE:
                return None
            type_id, size, timestamp = parse_tag_header(header)
            body = handle.read(size)
            trailer = handle.read(4)
            if len(body) < size or len(trailer) < 4:
                return None
            self.bytes_read += TAG_HEADER_SIZE + size + 4
            if type_id not in (AUDIO, VIDEO, DATA):
                continue
            if type_id == DATA and decode_metadata(body) is not None:
                continue
            return Frame(type_id, timestamp, body)
        return None

    def close(self) -> None:
        """Close the file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
