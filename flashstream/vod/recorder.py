# -*- test-case-name: tests.test_vod_recorder -*-
"""
Recording live streams into FLV files.

A :class:`FlvRecorder` writes the FLV header at once and then every message
of the publisher as one complete tag per ``write`` system call on an
unbuffered file, so the file is readable up to the last complete tag however
the server stops (kill -9 included).  :meth:`FlvRecorder.finish` (publisher
gone, ``closeStream``, server shutdown) rewrites the file with an
``onMetaData`` that carries the duration and a keyframe index
(``keyframes.filepositions``/``times``) and replaces it atomically, so a
viewer playing it at that moment keeps reading the old copy.

``publish(name, "record")`` starts a new file, ``"append"`` continues an
existing one after its last timestamp.  :class:`Recordings` maps
``APP/NAME`` to ``<record dir>/APP/NAME.flv`` (nothing outside the record
directory) and finishes every open recording on shutdown.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from twisted.logger import Logger

from ..rtmp.messages import Message
from .flv import (
    AUDIO_SEEK_INTERVAL,
    FILE_HEADER_SIZE,
    TAG_HEADER_SIZE,
    TagInfo,
    check_file_header,
    decode_metadata,
    encode_metadata,
    encode_tag,
    flv_header,
    scan_tags,
)
from .source import AUDIO, DATA, VIDEO, MediaError

_log = Logger()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FlvRecorder:
    """One recording in progress (see the module docstring)."""

    _log = Logger()

    def __init__(self, path: Path, *, append: bool = False) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        start_ts = 0
        fd = -1
        if append and path.exists():
            try:
                end, last = _complete_end(path)
            except (MediaError, OSError) as error:
                self._log.warn(
                    "Cannot append to {path} ({error}); recording it anew",
                    path=str(path),
                    error=str(error),
                )
            else:
                fd = os.open(path, os.O_WRONLY)
                os.ftruncate(fd, end)
                os.lseek(fd, end, os.SEEK_SET)
                start_ts = last + 1 if last >= 0 else 0
        if fd < 0:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            _write_all(fd, flv_header())
        self._fd: int | None = fd
        self._start_ts = start_ts
        self._first: int | None = None
        self.tags_written = 0
        self.finished = False

    def write(self, message: Message) -> None:
        """Append one audio, video or data message as a tag."""
        if self._fd is None:
            return
        if message.type_id not in (AUDIO, VIDEO, DATA):
            return
        if self._first is None:
            if message.type_id == DATA:
                offset = 0
            else:
                self._first = message.timestamp
                offset = 0
        else:
            offset = (message.timestamp - self._first) & 0xFFFFFFFF
            if offset >= 2**31:  # before the first frame: clamp
                offset = 0
        try:
            _write_all(
                self._fd, encode_tag(message.type_id, self._start_ts + offset, message.payload)
            )
        except OSError as error:
            self._log.error(
                "Recording {path} stopped: {error}", path=str(self.path), error=str(error)
            )
            self._close()
            return
        self.tags_written += 1

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def finish(self) -> None:
        """Close the file and write its duration and keyframe index (once)."""
        if self.finished:
            return
        self.finished = True
        self._close()
        try:
            finalize(self.path)
        except (MediaError, OSError) as error:
            self._log.error(
                "Could not index recording {path}: {error}", path=str(self.path), error=str(error)
            )
            return
        self._log.info("Recorded {path} ({tags} tags)", path=str(self.path), tags=self.tags_written)


def _complete_end(path: Path) -> tuple[int, int]:
    """(end of the last complete tag, last audio/video timestamp or -1)."""
    with open(path, "rb") as handle:
        size = handle.seek(0, io.SEEK_END)
        handle.seek(0)
        start = check_file_header(handle.read(9))
        tags = scan_tags(handle, start, size)
    end = tags[-1].position + TAG_HEADER_SIZE + tags[-1].size + 4 if tags else start
    last = max((t.timestamp for t in tags if t.type_id != DATA), default=-1)
    return end, last


def _duration_ms(tags: list[TagInfo]) -> int:
    """Last timestamp plus one frame interval of the track that ends last."""
    last = 0
    for kind in (VIDEO, AUDIO):
        times = [t.timestamp for t in tags if t.type_id == kind and t.body is None]
        if times:
            step = times[-1] - times[-2] if len(times) > 1 else 0
            last = max(last, times[-1] + max(0, step))
    return last


def finalize(path: Path) -> None:
    """Rewrite ``path`` with a complete ``onMetaData`` (duration, keyframes) first."""
    with open(path, "rb") as source:
        size = source.seek(0, io.SEEK_END)
        source.seek(0)
        start = check_file_header(source.read(9))
        tags = scan_tags(source, start, size)
        properties: dict[str, object] = {}
        kept: list[TagInfo] = []
        for tag in tags:
            found = decode_metadata(tag.body) if tag.type_id == DATA and tag.body else None
            if found is not None:
                properties = found  # the publisher's latest metadata
            else:
                kept.append(tag)
        has_video = any(t.type_id == VIDEO for t in kept)
        keys = [t for t in kept if t.keyframe]
        if not has_video:
            keys = []
            for tag in kept:
                if (
                    tag.type_id == AUDIO
                    and tag.body is None
                    and (not keys or tag.timestamp - keys[-1].timestamp >= AUDIO_SEEK_INTERVAL)
                ):
                    keys.append(tag)
        media_times = [t.timestamp for t in kept if t.type_id != DATA]
        for stale in (
            "duration",
            "filesize",
            "keyframes",
            "lasttimestamp",
            "lastkeyframetimestamp",
        ):
            properties.pop(stale, None)
        properties.update(
            duration=_duration_ms(kept) / 1000,
            lasttimestamp=(max(media_times) if media_times else 0) / 1000,
            lastkeyframetimestamp=(keys[-1].timestamp if keys else 0) / 1000,
            canSeekToEnd=True,
            hasKeyframes=bool(keys),
        )

        def body(positions: list[float], file_size: float) -> bytes:
            properties["filesize"] = file_size
            properties["keyframes"] = {
                "times": [k.timestamp / 1000 for k in keys],
                "filepositions": positions,
            }
            return encode_metadata(properties)

        placeholder = body([0.0] * len(keys), 0.0)
        data_start = FILE_HEADER_SIZE + TAG_HEADER_SIZE + len(placeholder) + 4
        new_positions: dict[int, int] = {}
        position = data_start
        for tag in kept:
            new_positions[tag.position] = position
            position += TAG_HEADER_SIZE + tag.size + 4
        metadata = body([float(new_positions[k.position]) for k in keys], float(position))
        assert len(metadata) == len(placeholder)
        temporary = path.with_name(path.name + ".indexing")
        with open(temporary, "wb") as target:
            target.write(flv_header(audio=any(t.type_id == AUDIO for t in kept), video=has_video))
            target.write(encode_tag(DATA, 0, metadata))
            for tag in kept:
                source.seek(tag.position)
                target.write(source.read(TAG_HEADER_SIZE + tag.size + 4))
            target.flush()
            os.fsync(target.fileno())
    os.replace(temporary, path)


class Recordings:
    """The record directory and the recordings open in it."""

    def __init__(self, record_dir: Path) -> None:
        self.record_dir = record_dir
        self.active: set[FlvRecorder] = set()

    def path_for(self, app: str, name: str) -> Path | None:
        """``<record dir>/APP/NAME.flv``, or None if ``name`` would leave the directory."""
        if not name or name.startswith("/") or "\\" in name or "\0" in name:
            return None
        parts = name.split("/")
        if any(part in ("", ".", "..") for part in parts) or "/" in app or app in ("", ".", ".."):
            return None
        root = self.record_dir.resolve()
        candidate = (root / app / (name + ".flv")).resolve()
        if root not in candidate.parents:
            return None
        return candidate

    def start(self, app: str, name: str, *, append: bool) -> FlvRecorder:
        """Open the recording of ``app/name``; ValueError if the name is not allowed."""
        path = self.path_for(app, name)
        if path is None:
            raise ValueError(f"{name!r} cannot be recorded")
        recorder = FlvRecorder(path, append=append)
        self.active.add(recorder)
        return recorder

    def finish(self, recorder: FlvRecorder) -> None:
        """Finish one recording."""
        self.active.discard(recorder)
        recorder.finish()

    def finish_all(self) -> None:
        """Finish every open recording (server shutdown)."""
        for recorder in list(self.active):
            self.finish(recorder)
