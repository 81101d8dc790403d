# -*- test-case-name: tests.test_download -*-
"""
Progressive download of the media root over HTTP: ``GET /vod/PATH``.

:class:`MediaDownload` is a Klein app mounted at ``/vod`` on the ``--http``
listener.  It resolves ``PATH`` under the media root (``..``, encoded or
not, absolute paths, NUL bytes and symlinks that lead outside are answered
404) and hands the file to Twisted's static file resource, which does
``Range`` (single, and several as ``multipart/byteranges``), ``HEAD`` and
``If-Modified-Since``.  On top of that it sets a strong ``ETag`` (size and
modification time) honoured by ``If-None-Match`` (which, as RFC 9110 says,
overrides ``If-Modified-Since``), the media content types, and FLV
pseudo-streaming: ``?start=BYTE`` answers the file's FLV header followed by
the file from that byte (a tag start taken from ``keyframes.filepositions``),
as lighttpd's and nginx's flv modules do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from klein import Klein
from twisted.logger import Logger
from twisted.web import http, server, static
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

#: Content types of the files a media root holds.
CONTENT_TYPES = {
    ".flv": "video/x-flv",
    ".f4v": "video/mp4",
    ".mp4": "video/mp4",
    ".m4v": "video/x-m4v",
    ".m4a": "audio/mp4",
    ".mov": "video/quicktime",
    ".3gp": "video/3gpp",
    ".mp3": "audio/mpeg",
    ".aac": "audio/aac",
    ".ts": "video/mp2t",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".webm": "video/webm",
}
DEFAULT_TYPE = "application/octet-stream"


def safe_media_path(root: Path, relative: str) -> Path | None:
    """``root/relative`` if it is a path inside ``root`` (symlinks resolved), else None."""
    if not relative or relative.startswith("/") or "\\" in relative or "\0" in relative:
        return None
    if any(part in ("", ".", "..") for part in relative.split("/")):
        return None
    resolved_root = root.resolve()
    candidate = (resolved_root / relative).resolve()
    if resolved_root not in candidate.parents:
        return None
    return candidate


def entity_tag(status: os.stat_result) -> bytes:
    """A strong validator from the file's size and modification time."""
    return f'"{status.st_size:x}-{status.st_mtime_ns:x}"'.encode("ascii")


class _MediaFile(static.File):
    """One file, with our content type and no content-encoding guesses."""

    contentEncodings: dict[str, str] = {}  # noqa: RUF012 (Twisted's class attribute)

    def __init__(self, path: Path, content_type: str) -> None:
        super().__init__(str(path))
        self.type = content_type
        self.encoding = None


class _PseudoStream(Resource):
    """FLV header + the file from ``start`` (``?start=BYTE``)."""

    isLeaf = True

    def __init__(self, path: Path, start: int, size: int) -> None:
        super().__init__()
        self.path = path
        self.start = start
        self.size = size

    def render_GET(self, request: IRequest) -> bytes | int:
        """Header then the tags from ``start``; HEAD gets only the headers."""
        handle: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 (the producer closes it)
        head = handle.read(9)
        if len(head) < 9 or head[:3] != b"FLV":
            handle.close()
            request.setResponseCode(http.UNSUPPORTED_MEDIA_TYPE)
            return b"not an FLV file\n"
        header = head[:5] + b"\x00\x00\x00\x09" + b"\x00\x00\x00\x00"
        start = min(self.start, self.size)
        request.setHeader(b"content-type", b"video/x-flv")
        request.setHeader(b"content-length", str(len(header) + self.size - start).encode())
        request.setResponseCode(http.OK)
        if request.method == b"HEAD":
            handle.close()
            return b""
        request.write(header)
        producer = static.SingleRangeStaticProducer(request, handle, start, self.size - start)
        producer.start()
        return server.NOT_DONE_YET

    render_HEAD = render_GET


class MediaDownload:
    """``GET``/``HEAD /vod/PATH``: files under ``media_root`` (see the module docstring)."""

    app = Klein()
    _log = Logger()

    def __init__(self, media_root: Path) -> None:
        self.media_root = media_root

    @app.route("/<path:subpath>", methods=["GET", "HEAD"])
    def serve(self, request: IRequest, subpath: str) -> Resource | bytes:
        """Serve one file (404 for anything outside the media root)."""
        path = safe_media_path(self.media_root, subpath)
        if path is None or not path.is_file():
            if path is None:
                self._log.info("Refused download path {path!r}", path=subpath)
            request.setResponseCode(http.NOT_FOUND)
            request.setHeader(b"content-type", b"text/plain")
            return b"Not found\n"
        request.postpath = []  # the file resource has nothing left to traverse
        status = path.stat()
        tag = entity_tag(status)
        request.setHeader(b"etag", tag)
        if request.getHeader(b"if-none-match") is not None:
            if request.setETag(tag) is http.CACHED:
                return b""
            request.requestHeaders.removeHeader(b"if-modified-since")
        suffix = path.suffix.lower()
        start = _start_argument(request)
        if suffix == ".flv" and start:
            return _PseudoStream(path, start, status.st_size)
        return _MediaFile(path, CONTENT_TYPES.get(suffix, DEFAULT_TYPE))


def _start_argument(request: IRequest) -> int:
    """The ``start`` query argument as a positive byte offset, else 0."""
    args = getattr(request, "args", None) or {}
    values = args.get(b"start") or []
    if not values:
        return 0
    try:
        start = int(values[0])
    except ValueError:
        return 0
    return start if start > 13 else 0
