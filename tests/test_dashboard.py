# trial's assertion methods are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""The dashboard page and its assets (flashstream.dashboard)."""

from __future__ import annotations

import re

from flashstream.dashboard import ASSETS, STATIC
from tests.monitoring_kit import MonitoredTestCase


class DashboardTests(MonitoredTestCase):
    """``/`` and ``/dashboard/...``."""

    def test_index_and_every_asset_it_names(self) -> None:
        """The page is served at /; every script/style it references is served from here."""
        code, page, headers = self.get("/")
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/html; charset=utf-8"])
        references = re.findall(rb'(?:src|href)="([^"]+)"', page)
        local = [r for r in references if not r.startswith(b"data:")]
        self.assertEqual(
            sorted(local),
            [
                b"/dashboard/dashboard.css",
                b"/dashboard/dashboard.js",
                b"/dashboard/vendor/mpegts.js",
            ],
        )
        for reference in local:
            code, body, _ = self.get(reference.decode())
            self.assertEqual(code, 200, reference)
            self.assertEqual(body, (STATIC / reference.decode()[len("/dashboard/") :]).read_bytes())

    def test_nothing_fetched_from_outside(self) -> None:
        """No asset names another origin (no CDN, no fonts, no analytics)."""
        for name in ("index.html", "dashboard.js", "dashboard.css"):
            text = (STATIC / name).read_text()
            self.assertIsNone(re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), name)

    def test_vendored_player_with_licences(self) -> None:
        """mpegts.js comes with its licence files, which are served too."""
        for name in ("vendor/mpegts.js.LICENSE", "vendor/mpegts.js.LICENSE.txt"):
            self.assertIn(name, ASSETS)
            code, body, _ = self.get(f"/dashboard/{name}")
            self.assertEqual(code, 200)
        self.assertIn(b"Apache License", self.get("/dashboard/vendor/mpegts.js.LICENSE")[1])

    def test_only_listed_files(self) -> None:
        """Python sources, folders and paths outside the package are not served."""
        for path in (
            "/dashboard/__init__.py",
            "/dashboard/vendor/",
            "/dashboard/../tap.py",
            "/dashboard/%2e%2e/tap.py",
            "/dashboard/index.html/x",
        ):
            self.assertEqual(self.get(path)[0], 404, path)
