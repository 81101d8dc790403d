# trial's assertion methods and StringTransport are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""
The twistd wiring: options, the config file under them, and the services
``makeService`` builds (one shared hub, one listener per endpoint).
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

from twisted.application.service import IService
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from flashstream.appapi import ApplicationHost
from flashstream.applications import LiveApplication, VodApplication
from flashstream.sniff import SniffingFactory
from flashstream.tap import FlashstreamService, ListenerService, Options, makeService
from tests.test_protocol import Peer


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
        listeners = [s for s in service if isinstance(s, ListenerService) and s.option == "--rtmp"]
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


class ThreadedMemoryReactor(MemoryReactorClock):
    """A memory reactor that records callFromThread calls (what a signal handler does)."""

    def __init__(self) -> None:
        super().__init__()
        self.from_thread: list[tuple[Callable[..., object], tuple[object, ...]]] = []

    def callFromThread(self, f: Callable[..., object], *args: object) -> None:
        """Queue the call; the test runs it."""
        self.from_thread.append((f, args))

    def run_from_thread(self) -> None:
        """Run what signal handlers queued."""
        calls, self.from_thread = self.from_thread, []
        for f, args in calls:
            f(*args)


CONFIG = """
[applications.studio]
kind = "live"
[applications.news]
kind = "live"
max_players = 10
"""

RELOADED = """
[applications.studio]
kind = "live"
[applications.news]
kind = "live"
max_players = 1
takeover = "always"
[applications.sports]
kind = "live"
[limits]
idle_timeout = 30.0
"""


class ReloadTests(SynchronousTestCase):
    """SIGHUP and FlashstreamService.reload on a memory reactor with a fake signal module."""

    def setUp(self) -> None:
        """A service from a config file, started, with its SIGHUP handler captured."""
        self.path = temp_file(self)
        self.path.write_text(CONFIG)
        self.reactor = ThreadedMemoryReactor()
        self.handlers: dict[int, object] = {}

        def install(signum: int, handler: object) -> object:
            previous = self.handlers.get(signum, "default")
            self.handlers[signum] = handler
            return previous

        options = parse(
            "--config", str(self.path), "--rtmp", "tcp:1935", "--http", "none", "--rtmps", "none"
        )
        service = makeService(options, self.reactor)
        assert isinstance(service, FlashstreamService)
        service._install_signal = install
        self.service = service
        service.startService()
        self.addCleanup(self.stop)
        self.log = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )

    def stop(self) -> None:
        """Stop the service if the test did not."""
        if self.service.running:
            self.service.stopService()

    def sighup(self) -> None:
        """Deliver SIGHUP the way the kernel would, then let the reactor run the reload."""
        handler = self.handlers[signal.SIGHUP]
        assert callable(handler)
        handler(signal.SIGHUP, None)
        self.assertEqual(len(self.reactor.from_thread), 1, "the handler only queues the reload")
        self.reactor.run_from_thread()

    def player(self, app: str) -> Peer:
        """A player connected to ``app`` and playing ``cam``."""
        peer = Peer(
            self.service.rtmp_factory, port=50000 + len(self.service.rtmp_factory.connections)
        )
        peer.play("cam", app)
        return peer

    def test_reload_adds_changes_and_keeps_others_connected(self) -> None:
        """
        SIGHUP re-reads the file: ``sports`` appears, ``news`` takes its new
        limit and takeover mode (its player stays), ``studio`` is untouched
        (same object, its player still connected), new limits apply.
        """
        apps = self.service.rtmp_factory.applications
        studio, news = apps["studio"], apps["news"]
        studio_player, news_player = self.player("studio"), self.player("news")
        self.path.write_text(RELOADED)
        self.sighup()
        self.assertIs(apps["studio"], studio)
        self.assertIs(apps["news"], news)
        assert isinstance(news, ApplicationHost) and isinstance(news.base, LiveApplication)
        self.assertEqual((news.base.config.max_players, news.base.config.takeover), (1, "always"))
        sports = apps["sports"]
        assert isinstance(sports, ApplicationHost)
        self.assertIsInstance(sports.base, LiveApplication)
        self.assertEqual(self.service.rtmp_factory.limits.idle_timeout, 30.0)
        self.assertTrue(studio_player.connected and news_player.connected)
        # The new limit holds for the next player of news; sports serves players.
        refused = Peer(self.service.rtmp_factory, port=51000)
        refused.play("cam", "news")
        self.assertEqual(refused.client.status_codes()[-1], "NetStream.Play.Failed")
        self.assertIn("NetStream.Play.Start", self.player("sports").client.status_codes())
        self.assertTrue(
            [e for e in self.log if "Configuration reloaded" in str(e.get("log_format"))]
        )

    def test_broken_file_is_refused_and_logged(self) -> None:
        """An invalid file is refused with an error log line; nothing changes."""
        studio_player = self.player("studio")
        before = dict(self.service.rtmp_factory.applications)
        self.path.write_text("[applications.bad]\nkind = 'radio'\n")
        self.sighup()
        self.assertEqual(self.service.rtmp_factory.applications, before)
        (event,) = [e for e in self.log if "refused" in str(e.get("log_format"))]
        self.assertEqual(event["log_level"], LogLevel.error)
        self.assertIn("applications.bad.kind", str(event["error"]))
        self.assertTrue(studio_player.connected)
        self.assertFalse(self.service.reload())

    def test_removed_application_disconnects_its_clients_only(self) -> None:
        """An application removed from the file says goodbye to its clients; others stay."""
        studio_player, news_player = self.player("studio"), self.player("news")
        self.path.write_text("[applications.studio]\nkind = 'live'\n")
        self.sighup()
        self.assertNotIn("news", self.service.rtmp_factory.applications)
        self.assertFalse(news_player.connected)
        news_player.deliver()
        self.assertEqual(news_player.client.status_codes()[-1], "NetStream.Play.Stop")
        self.assertTrue(studio_player.connected)

    def test_kind_change_replaces_the_application(self) -> None:
        """An application whose kind changes is rebuilt and its clients reconnect."""
        news_player = self.player("news")
        self.path.write_text("[applications.news]\nkind = 'vod'\n")
        self.sighup()
        news = self.service.rtmp_factory.applications["news"]
        assert isinstance(news, ApplicationHost)
        self.assertIsInstance(news.base, VodApplication)
        self.assertFalse(news_player.connected)

    def test_sighup_handler_restored_on_stop(self) -> None:
        """stopService puts back the SIGHUP handler that was there before."""
        self.service.stopService()
        self.assertEqual(self.handlers[signal.SIGHUP], "default")

    def test_reload_without_config_file(self) -> None:
        """Without --config there is nothing to reload: refused with a warning."""
        service = makeService(parse("--rtmp", "tcp:1935", "--rtmps", "none"), self.reactor)
        assert isinstance(service, FlashstreamService)
        self.assertFalse(service.reload())

    def test_missing_plugin_refuses_the_whole_reload(self) -> None:
        """A file naming a plugin that does not exist is refused; nothing is half-applied."""
        before = dict(self.service.rtmp_factory.applications)
        self.path.write_text(RELOADED + "\n[applications.broken]\nplugin = 'no-such-plugin'\n")
        self.sighup()
        self.assertEqual(self.service.rtmp_factory.applications, before)
        self.assertTrue([e for e in self.log if "refused" in str(e.get("log_format"))])


class StopTests(SynchronousTestCase):
    """stopService on a memory reactor."""

    def test_clean_stop_clears_the_exit_signal(self) -> None:
        """After a clean stop the reactor's SIGTERM record is cleared, so twistd exits 0."""
        reactor = MemoryReactorClock()
        reactor._exitSignal = 15  # type: ignore[attr-defined]
        service = makeService(parse("--rtmp", "tcp:1935", "--http", "none"), reactor)
        service.privilegedStartService()
        service.startService()
        done = service.stopService()
        self.assertIsNone(self.successResultOf(done))
        self.assertIsNone(reactor._exitSignal)  # type: ignore[attr-defined]
        self.assertEqual(reactor.getDelayedCalls(), [])
