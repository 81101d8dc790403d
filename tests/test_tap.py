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
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from flashstream.appapi import ApplicationHost
from flashstream.applications import LiveApplication, VodApplication
from flashstream.sniff import SniffingFactory
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
        service = makeService(
            parse("--rtmp", "tcp:1935", "--rtmp", "tcp:1936", "--rtmps", "none"), reactor
        )
        self.assertTrue(IService.providedBy(service))
        assert isinstance(service, FlashstreamService)
        listeners = [
            s for s in service if isinstance(s, ListenerService) and s.option == "--rtmp"
        ]
        self.assertEqual([s.description for s in listeners], ["tcp:1935", "tcp:1936"])
        self.assertEqual(
            {id(getattr(s.factory, "rtmp_factory", None)) for s in listeners},
            {id(service.rtmp_factory)},
        )
        apps = service.rtmp_factory.applications
        live, vod = apps["live"], apps["vod"]
        assert isinstance(live, ApplicationHost) and isinstance(vod, ApplicationHost)
        self.assertIsInstance(live.base, LiveApplication)
        self.assertIsInstance(vod.base, VodApplication)
        service.privilegedStartService()
        service.startService()
        self.assertEqual([port[0] for port in reactor.tcpServers], [1935, 1936, 80])
        service.stopService()

    def test_http_listener_serves_web_root_with_rtmpt(self) -> None:
        """--http gets a listener serving the web root, with the RTMPT segments mounted."""
        service = makeService(parse("--http", "tcp:8080"), MemoryReactorClock())
        assert isinstance(service, FlashstreamService)
        http = [s for s in service if isinstance(s, ListenerService) and s.option == "--http"]
        self.assertEqual([s.description for s in http], ["tcp:8080"])
        self.assertIs(getattr(http[0].factory, "resource", None), service.web_root)
        for segment in (b"fcs", b"open", b"send", b"idle", b"close"):
            self.assertIn(segment, service.web_root.children)

    def test_rtmp_port_sniffs_into_rtmp_and_web(self) -> None:
        """--rtmp sniffs: RTMP goes to the shared factory, HTTP to the web site."""
        service = makeService(parse("--rtmp", "tcp:1935", "--rtmps", "none"), MemoryReactorClock())
        assert isinstance(service, FlashstreamService)
        [rtmp] = [s for s in service if isinstance(s, ListenerService) and s.option == "--rtmp"]
        [http] = [s for s in service if isinstance(s, ListenerService) and s.option == "--http"]
        assert isinstance(rtmp.factory, SniffingFactory)
        self.assertIs(rtmp.factory.rtmp_factory, service.rtmp_factory)
        self.assertIs(rtmp.factory.http_factory, http.factory)
        self.assertFalse(rtmp.factory.tls)

    def test_rtmps_with_development_certificate(self) -> None:
        """--rtmps ssl:PORT without a key: dev certificate under --state-dir, TLS listener."""
        state = temp_file(self).parent / "state"
        reactor = MemoryReactorClock()
        options = parse("--rtmps", "ssl:8443:interface=127.0.0.1", "--state-dir", str(state))
        service = makeService(options, reactor)
        service.privilegedStartService()
        self.assertTrue((state / "tls" / "dev-cert.pem").exists())
        [(port, factory, _, interface)] = [s for s in reactor.tcpServers if s[0] == 8443]
        self.assertEqual(interface, "127.0.0.1")
        self.assertIsInstance(factory, TLSMemoryBIOFactory)
        assert isinstance(factory, TLSMemoryBIOFactory)
        assert isinstance(factory.wrappedFactory, SniffingFactory)
        self.assertTrue(factory.wrappedFactory.tls)
        service.stopService()

    def test_rtmps_certificate_from_config(self) -> None:
        """[tls] private_key/certificate are used; a missing file ends start-up naming it."""
        path = temp_file(self)
        path.write_text('[tls]\nprivate_key = "nokey.pem"\n')
        service = makeService(
            parse("--config", str(path), "--rtmps", "ssl:8443"), MemoryReactorClock()
        )
        with self.assertRaises(SystemExit) as raised:
            service.privilegedStartService()
        self.assertIn("nokey.pem", str(raised.exception))
        self.assertIn("--rtmps", str(raised.exception))

    def test_rtmps_bad_tls_option(self) -> None:
        """An unsupported key in an ssl: string ends start-up with one line."""
        service = makeService(parse("--rtmps", "ssl:1:method=x"), MemoryReactorClock())
        with self.assertRaises(SystemExit) as raised:
            service.privilegedStartService()
        self.assertIn("'method' is not supported", str(raised.exception))

    def test_bad_endpoint_is_one_clear_line(self) -> None:
        """An unparsable endpoint ends start-up with a SystemExit naming the option."""
        service = makeService(parse("--rtmp", "bogus:1"), MemoryReactorClock())
        with self.assertRaises(SystemExit) as raised:
            service.privilegedStartService()
        self.assertIn("--rtmp", str(raised.exception))
        self.assertIn("bogus:1", str(raised.exception))
