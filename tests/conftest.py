"""Test-suite settings: hypothesis without per-example deadlines (CI machines are busy)."""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("flashstream", deadline=None)
settings.load_profile("flashstream")
