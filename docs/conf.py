"""Sphinx configuration for the flashstream documentation."""

project = "flashstream"
author = "the flashstream developers"
extensions: list[str] = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
master_doc = "index"
