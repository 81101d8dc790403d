"""The HTTP root: mounted features by first path segment, index and fallback."""

from __future__ import annotations

from typing import Any

from klein import Klein
from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from flashstream.web import WebRoot


class Echo:
    """A tiny Klein app that says where it was mounted and what it saw."""

    app = Klein()

    def __init__(self, label: str) -> None:
        self.label = label

    @app.route("/", branch=True)
    def anything(self, request: object) -> str:
        """Answer with the label and the path below the mount point."""
        postpath = getattr(request, "postpath", [])
        return f"{self.label}:{'/'.join(p.decode() for p in postpath)}"


class WebRootTests(SynchronousTestCase):
    """Dispatching on the first segment."""

    def get(self, root: WebRoot, path: str) -> tuple[int, str]:
        """GET ``path`` through treq's in-memory stub."""
        stub: Any = StubTreq(root)
        response = self.successResultOf(stub.get(f"http://example.com{path}"))
        body = self.successResultOf(response.text())
        return response.code, body

    def test_mounted_segments_and_404(self) -> None:
        """A mounted segment reaches its app; anything else is 404 without a fallback."""
        root = WebRoot()
        root.mount("vod", Echo("vod").app.resource())
        self.assertEqual(self.get(root, "/vod/a/b.flv"), (200, "vod:a/b.flv"))
        self.assertEqual(self.get(root, "/nothing")[0], 404)
        self.assertEqual(self.get(root, "/")[0], 404)

    def test_index_and_fallback(self) -> None:
        """``/`` goes to the index; unknown segments to the fallback with the full path."""
        root = WebRoot()
        root.index = Echo("index").app.resource()
        root.fallback = Echo("flv").app.resource()
        self.assertEqual(self.get(root, "/"), (200, "index:"))
        self.assertEqual(self.get(root, "/live/cam.flv"), (200, "flv:live/cam.flv"))
