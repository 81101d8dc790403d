# -*- test-case-name: tests.test_vod_source -*-
"""
MP4-family files (``.mp4``, ``.f4v``, ``.m4v``, ``.mov``, ``.m4a``) as FLV-style frames.

PyAV (FFmpeg's demuxer) reads the file once in :meth:`Mp4Source.scan`; what
is kept is a compact sample table shared by every viewer: per sample its
file offset and size, decode time and composition offset (ms), track and
keyframe flag, sorted by decode time.  Each viewer's :class:`Mp4Reader`
reads sample bytes from the file through a bounded buffer and wraps them as
RTMP bodies:

* H.264: ``17``/``27`` + ``01`` + si24 composition offset + the sample (MP4
  samples are already length-prefixed NAL units); the sequence header is
  ``17 00 00 00 00`` + the avcC record.
* AAC: ``AF 01`` + the raw frame; the sequence header is ``AF 00`` + the
  AudioSpecificConfig.  MP3: ``2x`` + the frame.

Timestamps are decode times shifted so that the earliest is 0 (edit lists
and AAC priming make them start below 0), so B-frames keep their order.
"""

from __future__ import annotations

import io
from array import array
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

from .flv import encode_metadata
from .source import (
    AUDIO,
    MAX_FRAME_SIZE,
    VIDEO,
    Frame,
    MediaError,
    SeekPoint,
    point_after,
    point_before,
)

#: Bytes each viewer's reader buffers.
READ_BLOCK = 64 * 1024
#: Flags in the sample table.
_VIDEO = 1
_KEY = 2

#: FLV SoundRate bits by sample rate, for MP3.
_MP3_RATES = {5512: 0, 11025: 1, 22050: 2, 44100: 3}


def _ms(value: int, time_base: Fraction) -> int:
    return round(value * time_base * 1000)


def _video_header(codec: Any) -> bytes | None:
    extradata = bytes(codec.extradata or b"")
    if codec.name != "h264" or not extradata or extradata[0] != 1:
        return None  # only avcC-configured H.264 fits classic FLV
    return b"\x17\x00\x00\x00\x00" + extradata


def _audio_first_byte(codec: Any) -> tuple[int, bytes | None] | None:
    """(first byte of every audio body, sequence header or None), or None if unsupported."""
    if codec.name == "aac":
        extradata = bytes(codec.extradata or b"")
        if not extradata:
            return None
        return 0xAF, b"\xaf\x00" + extradata
    if codec.name in ("mp3", "mp3float"):
        rate = _MP3_RATES.get(codec.sample_rate, 3)
        stereo = 1 if codec.channels > 1 else 0
        return (2 << 4) | (rate << 2) | 2 | stereo, None
    return None


class Mp4Source:
    """An indexed MP4-family file (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        duration: float,
        metadata: bytes,
        headers: tuple[Frame, ...],
        audio_byte: int,
        table: tuple[array[int], array[int], array[int], array[int], array[int]],
        points: tuple[SeekPoint, ...],
    ) -> None:
        self.path = path
        self.duration = duration
        self.metadata: bytes | None = metadata
        self.headers = headers
        self.audio_byte = audio_byte
        self.offsets, self.sizes, self.times, self.cts, self.flags = table
        self.points = points

    @classmethod
    def scan(cls, path: Path) -> Mp4Source:
        """Demux ``path`` once with PyAV; MediaError if nothing in it can be played."""
        import av

        try:
            container = av.open(str(path))
        except (av.FFmpegError, OSError, ValueError) as error:
            raise MediaError(f"cannot open: {error}") from None
        with container:
            video_stream = None
            audio_stream = None
            video_header: bytes | None = None
            audio_info: tuple[int, bytes | None] | None = None
            for stream in container.streams:
                if stream.type == "video" and video_stream is None:
                    video_header = _video_header(stream.codec_context)
                    if video_header is not None:
                        video_stream = stream
                elif stream.type == "audio" and audio_stream is None:
                    audio_info = _audio_first_byte(stream.codec_context)
                    if audio_info is not None:
                        audio_stream = stream
            if video_stream is None and audio_stream is None:
                raise MediaError("no H.264, AAC or MP3 track")
            rows: list[tuple[int, int, int, int, int, int]] = []
            selected = [s for s in (video_stream, audio_stream) if s is not None]
            try:
                for packet in container.demux(selected):
                    if packet.dts is None or packet.size == 0 or packet.pos is None:
                        continue
                    if packet.size > MAX_FRAME_SIZE:
                        continue
                    time_base = packet.time_base
                    dts = _ms(packet.dts, time_base)
                    pts = _ms(packet.pts, time_base) if packet.pts is not None else dts
                    is_video = packet.stream is video_stream
                    flags = (_VIDEO if is_video else 0) | (_KEY if packet.is_keyframe else 0)
                    # video first at equal times: a seek lands on the keyframe
                    order = 0 if is_video else 1
                    rows.append((dts, order, pts - dts, packet.pos, packet.size, flags))
            except av.FFmpegError as error:
                raise MediaError(f"cannot demux: {error}") from None
            duration = (container.duration or 0) / 1_000_000
            properties: dict[str, object] = {"duration": duration, "canSeekToEnd": True}
            if video_stream is not None:
                codec: Any = video_stream.codec_context
                properties.update(
                    width=float(codec.width), height=float(codec.height), videocodecid=7.0
                )
                if video_stream.average_rate:
                    properties["framerate"] = float(video_stream.average_rate)
            if audio_stream is not None and audio_info is not None:
                codec = audio_stream.codec_context
                properties.update(
                    audiocodecid=float(audio_info[0] >> 4),
                    audiosamplerate=float(codec.sample_rate),
                    audiochannels=float(codec.channels),
                    stereo=codec.channels > 1,
                )
        if not rows:
            raise MediaError("no samples")
        rows.sort(key=lambda row: (row[0], row[1]))
        shift = -min(0, rows[0][0])
        offsets = array("q")
        sizes = array("L")
        times = array("q")
        cts = array("l")
        flags_table = array("B")
        points: list[SeekPoint] = []
        seek_on_video = video_stream is not None
        for index, (dts, _, offset_ms, position, size, flags) in enumerate(rows):
            time = dts + shift
            offsets.append(position)
            sizes.append(size)
            times.append(time)
            cts.append(offset_ms)
            flags_table.append(flags)
            is_video = bool(flags & _VIDEO)
            if flags & _KEY and is_video == seek_on_video:
                if not points or (is_video or time - points[-1].time >= 1000):
                    points.append(SeekPoint(time, index))
        headers: list[Frame] = []
        if video_header is not None and video_stream is not None:
            headers.append(Frame(VIDEO, 0, video_header))
        audio_byte = 0
        if audio_info is not None and audio_stream is not None:
            audio_byte = audio_info[0]
            if audio_info[1] is not None:
                headers.append(Frame(AUDIO, 0, audio_info[1]))
        metadata = encode_metadata(properties)
        return cls(
            path,
            duration,
            metadata,
            tuple(headers),
            audio_byte,
            (offsets, sizes, times, cts, flags_table),
            tuple(points),
        )

    def seek_point(self, time_ms: int) -> SeekPoint:
        """The keyframe at or before ``time_ms``."""
        return point_before(self.points, time_ms, SeekPoint(0, 0))

    def seek_point_after(self, time_ms: int) -> SeekPoint | None:
        """The first keyframe at or after ``time_ms``."""
        return point_after(self.points, time_ms)

    def open(self, point: SeekPoint) -> Mp4Reader:
        """A reader from ``point`` (a sample index)."""
        return Mp4Reader(self, point.position)

    def frame(self, index: int, sample: bytes) -> Frame:
        """The RTMP body of sample ``index``."""
        flags = self.flags[index]
        time = self.times[index]
        if flags & _VIDEO:
            first = 0x17 if flags & _KEY else 0x27
            offset = self.cts[index] & 0xFFFFFF
            return Frame(VIDEO, time, bytes([first, 1]) + offset.to_bytes(3, "big") + sample)
        if self.audio_byte >> 4 == 10:
            return Frame(AUDIO, time, b"\xaf\x01" + sample)
        return Frame(AUDIO, time, bytes([self.audio_byte]) + sample)


class Mp4Reader:
    """One viewer's samples from a table index, read through a ``READ_BLOCK`` buffer."""

    def __init__(self, source: Mp4Source, index: int) -> None:
        self._source = source
        self._index = index
        self._handle: BinaryIO | None = open(source.path, "rb", buffering=READ_BLOCK)  # noqa: SIM115
        self.bytes_read = 0

    def read(self) -> Frame | None:
        """The next sample as a frame; None at the end (or if the file shrank)."""
        source = self._source
        handle = self._handle
        if handle is None or self._index >= len(source.times):
            return None
        index = self._index
        self._index += 1
        position = source.offsets[index]
        if handle.tell() != position:
            handle.seek(position, io.SEEK_SET)
        size = source.sizes[index]
        sample = handle.read(size)
        if len(sample) < size:
            return None
        self.bytes_read += size
        return source.frame(index, sample)

    def close(self) -> None:
        """Close the file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
