# trial's assertion methods are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""
Tests for :mod:`flashstream.download`: ``/vod/PATH`` through the web root in
memory (treq's StubTreq): ranges, HEAD, validators, content types, FLV
pseudo-streaming and traversal attempts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from email.utils import formatdate
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.internet import _producer_helpers
from twisted.internet.task import Clock, Cooperator
from twisted.trial.unittest import SynchronousTestCase

from flashstream.download import MediaDownload, safe_media_path
from flashstream.vod.flv import FlvSource
from flashstream.web import WebRoot

from .vod_media import media_dir


class DownloadTests(SynchronousTestCase):
    """Progressive download from a media root."""

    def setUp(self) -> None:
        """A media root with clip.flv, clip.mp4 and a sub-folder, served at /vod."""
        self.root = Path(tempfile.mkdtemp(prefix="flashstream-dl-"))
        self.addCleanup(shutil.rmtree, self.root, True)
        shutil.copy(media_dir() / "clip.flv", self.root / "clip.flv")
        shutil.copy(media_dir() / "clip.mp4", self.root / "clip.mp4")
        (self.root / "sub").mkdir()
        (self.root / "sub" / "a.mp3").write_bytes(b"ID3" + bytes(range(256)) * 4)
        self.outside = Path(tempfile.mkdtemp(prefix="flashstream-outside-"))
        self.addCleanup(shutil.rmtree, self.outside, True)
        (self.outside / "secret.flv").write_bytes(b"FLV secret")
        (self.root / "link.flv").symlink_to(self.outside / "secret.flv")
        # Twisted drives the static file producers with the global cooperator;
        # run them on a clock this test advances instead.
        self.clock = Clock()
        cooperator = Cooperator(
            scheduler=lambda step: self.clock.callLater(0, step),
            terminationPredicateFactory=lambda: lambda: False,
        )
        self.patch(_producer_helpers, "cooperate", cooperator.cooperate)
        web = WebRoot()
        web.mount("vod", MediaDownload(self.root).app.resource())
        self.stub: Any = StubTreq(web)
        self.flv = (self.root / "clip.flv").read_bytes()

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, bytes]:
        """(code, headers, body) of one request."""
        pending = self.stub.request(method, f"http://example.com{path}", headers=headers or {})
        self.pump()
        response = self.successResultOf(pending)
        content = response.content()
        self.pump()
        body = self.successResultOf(content)
        found: Any = response.headers.copy()
        if method != "HEAD" and isinstance(response.length, int):
            # the HTTP client keeps Content-Length out of the headers
            found.setRawHeaders("content-length", [str(response.length)])
        return response.code, found, body

    def pump(self) -> None:
        """Run the file producers and move the bytes until nothing is left to do."""
        for _ in range(10000):
            self.stub.flush()
            if not self.clock.getDelayedCalls():
                return
            self.clock.advance(0)
        raise AssertionError("the response did not finish")

    def header(self, headers: Any, name: str) -> str | None:
        """One response header as text."""
        values = headers.getRawHeaders(name)
        return (
            values[0].decode()
            if values and isinstance(values[0], bytes)
            else (values[0] if values else None)
        )

    def test_whole_file(self) -> None:
        """GET answers the file, its type, length, ETag, Last-Modified, Accept-Ranges."""
        code, headers, body = self.request("GET", "/vod/clip.flv")
        self.assertEqual((code, body), (200, self.flv))
        self.assertEqual(self.header(headers, "content-type"), "video/x-flv")
        self.assertEqual(self.header(headers, "content-length"), str(len(self.flv)))
        self.assertEqual(self.header(headers, "accept-ranges"), "bytes")
        self.assertTrue(self.header(headers, "etag"))
        self.assertTrue(self.header(headers, "last-modified"))

    def test_content_types(self) -> None:
        """MP4 and MP3 files (in sub-folders too) have their media types."""
        self.assertEqual(
            self.header(self.request("HEAD", "/vod/clip.mp4")[1], "content-type"), "video/mp4"
        )
        self.assertEqual(
            self.header(self.request("HEAD", "/vod/sub/a.mp3")[1], "content-type"), "audio/mpeg"
        )

    def test_head(self) -> None:
        """HEAD answers the validators of GET and no body (curl checks its length)."""
        code, headers, body = self.request("HEAD", "/vod/clip.mp4")
        self.assertEqual((code, body), (200, b""))
        _, get_headers, _ = self.request("GET", "/vod/clip.mp4")
        for name in ("etag", "last-modified", "content-type", "accept-ranges"):
            self.assertEqual(self.header(headers, name), self.header(get_headers, name), name)

    def test_single_range(self) -> None:
        """Range: bytes=100-1099 is 206 with exactly those bytes and Content-Range."""
        code, headers, body = self.request("GET", "/vod/clip.flv", {"Range": "bytes=100-1099"})
        self.assertEqual((code, body), (206, self.flv[100:1100]))
        self.assertEqual(self.header(headers, "content-range"), f"bytes 100-1099/{len(self.flv)}")
        code, _, body = self.request("GET", "/vod/clip.flv", {"Range": "bytes=-500"})
        self.assertEqual((code, body), (206, self.flv[-500:]))

    def test_multiple_ranges(self) -> None:
        """Two ranges answer multipart/byteranges with both slices."""
        code, headers, body = self.request(
            "GET", "/vod/clip.flv", {"Range": "bytes=0-99,2000-2099"}
        )
        self.assertEqual(code, 206)
        content_type = self.header(headers, "content-type") or ""
        self.assertTrue(content_type.startswith("multipart/byteranges; boundary="))
        boundary = content_type.split("boundary=")[1].strip('"').encode()
        parts = [p for p in body.split(b"--" + boundary) if b"content-range" in p.lower()]
        self.assertEqual(len(parts), 2)
        for part, (start, end) in zip(parts, [(0, 99), (2000, 2099)], strict=True):
            head, _, data = part.partition(b"\r\n\r\n")
            self.assertIn(f"bytes {start}-{end}/{len(self.flv)}".encode(), head)
            self.assertEqual(data[: end - start + 1], self.flv[start : end + 1])

    def test_unsatisfiable_range(self) -> None:
        """A range past the end is 416."""
        code, _, _ = self.request("GET", "/vod/clip.flv", {"Range": f"bytes={10**9}-"})
        self.assertEqual(code, 416)

    def test_if_none_match(self) -> None:
        """The ETag in If-None-Match is 304; another tag is 200 even with a fresh date."""
        etag = self.header(self.request("HEAD", "/vod/clip.flv")[1], "etag")
        assert etag is not None
        self.assertEqual(self.request("GET", "/vod/clip.flv", {"If-None-Match": etag})[0], 304)
        future = formatdate(2**31 - 1, usegmt=True)
        code, _, body = self.request(
            "GET", "/vod/clip.flv", {"If-None-Match": '"other"', "If-Modified-Since": future}
        )
        self.assertEqual((code, body), (200, self.flv))

    def test_if_modified_since(self) -> None:
        """If-Modified-Since at or after the file's time is 304; before it, 200."""
        mtime = (self.root / "clip.flv").stat().st_mtime
        later = formatdate(mtime + 10, usegmt=True)
        earlier = formatdate(mtime - 3600, usegmt=True)
        self.assertEqual(self.request("GET", "/vod/clip.flv", {"If-Modified-Since": later})[0], 304)
        self.assertEqual(
            self.request("GET", "/vod/clip.flv", {"If-Modified-Since": earlier})[0], 200
        )

    def test_flv_pseudo_streaming(self) -> None:
        """?start=POS answers the FLV header then the file from that keyframe tag."""
        position = FlvSource.scan(self.root / "clip.flv").seek_point(10000).position
        code, headers, body = self.request("GET", f"/vod/clip.flv?start={position}")
        self.assertEqual(code, 200)
        self.assertEqual(body[:13], self.flv[:5] + b"\x00\x00\x00\x09\x00\x00\x00\x00")
        self.assertEqual(body[13:], self.flv[position:])
        self.assertEqual(self.header(headers, "content-length"), str(len(body)))
        cut = self.root / "cut.flv"
        cut.write_bytes(body)
        source = FlvSource.scan(cut)
        self.assertEqual(source.points[0].time, 9600)

    def test_traversal_refused(self) -> None:
        """``..``, encoded ``..``, absolute paths and symlinks out are 404."""
        os.utime(self.outside / "secret.flv")
        for path in (
            "/vod/../secret.flv",
            "/vod/%2e%2e/%2e%2e/etc/passwd",
            "/vod/sub/%2E%2E/%2E%2E/etc/passwd",
            "/vod//etc/passwd",
            "/vod/%2Fetc%2Fpasswd",
            "/vod/link.flv",
            "/vod/sub/..%2f..%2fetc%2fpasswd",
            "/vod/missing.flv",
            "/vod/sub",
        ):
            code, _, body = self.request("GET", path)
            self.assertEqual(code, 404, path)
            self.assertNotIn(b"secret", body)

    def test_safe_media_path(self) -> None:
        """The resolver keeps paths under the root."""
        self.assertEqual(
            safe_media_path(self.root, "sub/a.mp3"), (self.root / "sub" / "a.mp3").resolve()
        )
        for bad in ("../x", "/etc/passwd", "a/../../x", "", "a\0b", "link.flv"):
            self.assertIsNone(safe_media_path(self.root, bad), bad)
