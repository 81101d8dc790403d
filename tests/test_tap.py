"""
The twistd wiring: options, the config file under them, and the services
``makeService`` builds (one shared hub, one listener per endpoint).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.application.service import IService
from twisted.internet.testing import MemoryReactorClock
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from flashstream.appapi import ApplicationHost
from flashstream.applications import LiveApplication, VodApplication
from flashstream.tap import FlashstreamService, ListenerService, Options, makeService


def temp_file(case: SynchronousTestCase) -> Path:
    """A path in a temporary directory removed after the test."""
    directory = tempfile.mkdtemp()
    case.addCleanup(shutil.rmtree, directory)
    return Path(directory) / "flashstream.toml"


def parse(*argv: str) -> Options:
    """Parse a twistd flashstream command line."""
    options = Options()
    options.parseOptions(list(argv))
    return options


class OptionsTests(SynchronousTestCase):
    """Command-line options."""

    def test_defaults(self) -> None:
        """No options: the PRODUCT.md defaults."""
        config = parse()["flashstream-config"]
        self.assertEqual(config.rtmp, ("tcp:1935",))
        self.assertEqual(config.media_root, Path("media"))

    def test_repeated_listeners_and_none(self) -> None:
        """--rtmp may be repeated; 'none' turns a listener off."""
        options = parse("--rtmp", "tcp:1", "--rtmp", "tcp:2", "--rtmps", "none")
        config = options["flashstream-config"]
        self.assertEqual(config.rtmp, ("tcp:1", "tcp:2"))
        self.assertEqual(config.rtmps, ())

    def test_options_win_over_file(self) -> None:
        """Options override the file; the rest of the file stays."""
        path = temp_file(self)
        path.write_text('[listeners]\nrtmp = "tcp:5000"\nhttp = "tcp:8080"\n[media]\nroot = "m"\n')
        config = parse("--config", str(path), "--rtmp", "tcp:6000", "--media-root", "/srv")[
            "flashstream-config"
        ]
        self.assertEqual(config.rtmp, ("tcp:6000",))
        self.assertEqual(config.http, ("tcp:8080",))
        self.assertEqual(config.media_root, Path("/srv"))

    def test_bad_config_is_a_usage_error(self) -> None:
        """A broken config file stops start-up with a UsageError naming the problem."""
        path = temp_file(self)
        path.write_text("[limits]\nwhat = 1\n")
        with self.assertRaisesRegex(UsageError, "limits.what"):
            parse("--config", str(path))


class MakeServiceTests(SynchronousTestCase):
    """makeService on a memory reactor."""

    def test_one_hub_and_listeners(self) -> None:
        """Each --rtmp endpoint gets a listener sharing one factory and hub."""
        reactor = MemoryReactorClock()
        service = makeService(parse("--rtmp", "tcp:1935", "--rtmp", "tcp:1936"), reactor)
        self.assertTrue(IService.providedBy(service))
        assert isinstance(service, FlashstreamService)
        listeners = [
            s for s in service if isinstance(s, ListenerService) and s.option == "--rtmp"
        ]
        self.assertEqual([s.description for s in listeners], ["tcp:1935", "tcp:1936"])
        self.assertEqual({id(s.factory) for s in listeners}, {id(service.rtmp_factory)})
        apps = service.rtmp_factory.applications
        live, vod = apps["live"], apps["vod"]
        assert isinstance(live, ApplicationHost) and isinstance(vod, ApplicationHost)
        self.assertIsInstance(live.base, LiveApplication)
        self.assertIsInstance(vod.base, VodApplication)
        service.privilegedStartService()
        service.startService()
        self.assertEqual([port[0] for port in reactor.tcpServers], [1935, 1936, 80])
        service.stopService()

    def test_http_listener_and_not_yet_served_rtmps(self) -> None:
        """--http gets a listener serving the web root; --rtmps is reported as not served yet."""
        service = makeService(parse("--http", "tcp:8080"), MemoryReactorClock())
        assert isinstance(service, FlashstreamService)
        http = [s for s in service if isinstance(s, ListenerService) and s.option == "--http"]
        self.assertEqual([s.description for s in http], ["tcp:8080"])
        self.assertIs(getattr(http[0].factory, "resource", None), service.web_root)
        not_yet = [s for s in service if isinstance(s, NotYetService)]
        self.assertEqual({s.option for s in not_yet}, {"--rtmps"})

    def test_bad_endpoint_is_one_clear_line(self) -> None:
        """An unparsable endpoint ends start-up with a SystemExit naming the option."""
        service = makeService(parse("--rtmp", "bogus:1"), MemoryReactorClock())
        with self.assertRaises(SystemExit) as raised:
            service.privilegedStartService()
        self.assertIn("--rtmp", str(raised.exception))
        self.assertIn("bogus:1", str(raised.exception))
