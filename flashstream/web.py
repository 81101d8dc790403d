# -*- test-case-name: tests.test_web -*-
"""
The root of the ``--http`` listener: one child resource per first path segment.

Each HTTP feature lives in its own module as a Klein app (an object with
``app = Klein()`` as a class attribute) and is mounted here by ``tap.py``:
``/vod/...`` (progressive download), ``/api/...``, ``/metrics``, the RTMPT
commands (``/open``, ``/send``, ``/idle``, ``/close``, ``/fcs``), the
dashboard at ``/`` and, for any other first segment, HTTP-FLV
``/APP/STREAM.flv``.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource


class WebRoot(Resource):
    """Dispatch on the first path segment to the mounted features."""

    def __init__(self) -> None:
        super().__init__()
        #: What ``/`` shows (the dashboard), if anything.
        self.index: IResource | None = None
        #: What serves first segments nobody mounted (HTTP-FLV ``/APP/...``).
        self.fallback: IResource | None = None

    def mount(self, segment: str, resource: IResource) -> None:
        """Serve ``/segment/...`` with ``resource``."""
        self.putChild(segment.encode("ascii"), resource)

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        """Index for ``/``, the fallback for unknown segments, else 404."""
        target = self.index if path == b"" else self.fallback
        if target is None:
            return notFound()
        # Hand the whole path to the Klein app below, as if it were the root.
        request.postpath.insert(0, path)
        request.prepath.pop()
        return target
