"""twistd finds the flashstream plugin, and importing it does not import the server."""

from __future__ import annotations

import subprocess
import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin, getPlugins
from zope.interface.verify import verifyObject

from .interop_kit import ROOT


def test_service_maker_is_found() -> None:
    """getPlugins(IServiceMaker) yields a valid 'flashstream' ServiceMaker."""
    makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
    maker = makers["flashstream"]
    assert verifyObject(IServiceMaker, maker)
    assert verifyObject(IPlugin, maker)
    assert maker.options().__class__.__name__ == "Options"


def test_plugin_import_is_lazy() -> None:
    """Importing the plugin file does not import flashstream.tap or the reactor."""
    code = (
        "import sys; import twisted.plugins.flashstream_plugin as p; "
        "print('flashstream.tap' in sys.modules, 'twisted.internet.reactor' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]
