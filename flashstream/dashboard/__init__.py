# -*- test-case-name: tests.test_dashboard -*-
"""
The dashboard at ``/``: a static page (``index.html``, ``dashboard.js``,
``dashboard.css``) that polls ``/api/v1``, follows ``/api/v1/events`` and
plays live streams in the page with the vendored mpegts.js (``vendor/``,
from the npm registry, with its licences) over HTTP-FLV.  Nothing is fetched
from outside the server.
"""

from __future__ import annotations

from pathlib import Path

from klein import Klein
from twisted.web.iweb import IRequest

#: Where the page and its assets are.
STATIC = Path(__file__).resolve().parent


#: The files served under ``/dashboard/`` and their types.
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "vendor/mpegts.js": "text/javascript; charset=utf-8",
    "vendor/mpegts.js.LICENSE": "text/plain; charset=utf-8",
    "vendor/mpegts.js.LICENSE.txt": "text/plain; charset=utf-8",
    "vendor/README": "text/plain; charset=utf-8",
}


class Dashboard:
    """``/`` (the page); mounted as the web root's index."""

    app = Klein()

    @app.route("/", methods=["GET"])
    def index(self, request: IRequest) -> bytes:
        """The page."""
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        return (STATIC / "index.html").read_bytes()


class DashboardAssets:
    """``/dashboard/FILE``: the page's scripts, styles and licences, nothing else."""

    app = Klein()

    @app.route("/<path:name>", methods=["GET"])
    def asset(self, request: IRequest, name: str) -> bytes:
        """One of :data:`ASSETS`, or 404."""
        content_type = ASSETS.get(name)
        if content_type is None:
            request.setResponseCode(404)
            return b"not found\n"
        request.setHeader(b"Content-Type", content_type.encode())
        request.setHeader(b"Cache-Control", b"no-cache")
        return (STATIC / name).read_bytes()
