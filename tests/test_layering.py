"""
The sans-IO rule: nothing under ``flashstream/rtmp`` imports I/O, time,
randomness, logging or Twisted.  An AST scan of every module enforces it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "flashstream" / "rtmp"
FORBIDDEN = {
    "twisted",
    "klein",
    "treq",
    "OpenSSL",
    "socket",
    "time",
    "logging",
    "random",
    "os",
    "asyncio",
    "select",
    "selectors",
    "threading",
    "subprocess",
}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module imported by ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_no_io(path: Path) -> None:
    """A core module imports nothing that does I/O, reads the clock or logs."""
    assert imported_modules(path) & FORBIDDEN == set()


def test_core_has_the_expected_modules() -> None:
    """The scan really sees the core (guards against a wrong path making it vacuous)."""
    names = {p.stem for p in CORE.glob("*.py")}
    assert {"handshake", "chunks", "amf0", "amf3", "connection", "messages"} <= names


def test_scan_detects_a_forbidden_import(tmp_path: Path) -> None:
    """The scanner itself catches ``import`` and ``from ... import`` forms."""
    sample = tmp_path / "bad.py"
    sample.write_text("import os.path\nfrom twisted.internet import reactor\n")
    assert imported_modules(sample) & FORBIDDEN == {"os", "twisted"}
