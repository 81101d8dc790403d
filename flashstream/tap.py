# -*- test-case-name: tests.test_tap -*-
"""
twistd wiring: ``twistd -n flashstream [options]``.

``Options`` parses the command line of PRODUCT.md; ``makeService`` builds one
hub, the applications (built-in and plugins) and one listening service per
endpoint, all sharing that hub.  Importing this module has no side effects
and never touches the global reactor.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import attrs
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IReactorTime
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.python.failure import Failure

from .api import API
from .appapi import ApplicationHost, PluginNotFound, build_hosts
from .applications import builtin_application, load_plugins
from .config import ApplicationConfig, Config, ConfigError, TLSConfig, load_config
from .dashboard import Dashboard, DashboardAssets
from .download import MediaDownload
from .httpflv import HTTPFLV
from .hub import StreamHub
from .interfaces import IStreamApplication
from .metrics import Metrics
from .protocol import RTMPServerFactory
from .qos import QosMonitor
from .rtmpt import RTMPTGateway, make_site
from .sniff import SniffingFactory
from .tls import (
    CertificateFiles,
    CertificateReloader,
    ReloadableTLS,
    TLSConfigError,
    ensure_dev_certificate,
    split_tls_endpoint,
)
from .tracking import AccessLog, EventFeed, Tracker, Webhooks
from .vod.recorder import Recordings
from .vod.source import SourceCache
from .web import WebRoot

#: Turns a listener's endpoint string into (socket endpoint string, TLS-wrapped factory).
TLSWrapper = Callable[[str, IProtocolFactory], tuple[str, IProtocolFactory]]


class Options(usage.Options):
    """Command line of ``twistd flashstream``."""

    synopsis = "[--config PATH] [--rtmp ENDPOINT]... [--media-root DIR]"
    longdesc = (
        "Serve live and on-demand RTMP.  ENDPOINT is a Twisted endpoint string "
        "(tcp:1935, ssl:443:privateKey=key.pem:certKey=cert.pem); 'none' turns a "
        "listener off; each listener option may be given more than once."
    )
    optParameters = [
        ["config", None, None, "TOML configuration file."],
        ["media-root", None, None, "Files served by the vod application [default: ./media]."],
        ["record-dir", None, None, "Where recordings go [default: <media-root>/recordings]."],
        ["state-dir", None, None, "Where the development TLS certificate goes [default: ./state]."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["rtmp"] = []
        self["rtmps"] = []
        self["http"] = []

    def opt_rtmp(self, endpoint: str) -> None:
        """RTMP and RTMPE listener [default: tcp:1935]."""
        self["rtmp"].append(endpoint)

    def opt_rtmps(self, endpoint: str) -> None:
        """TLS listener for RTMPS and RTMPTS [default: ssl:443]."""
        self["rtmps"].append(endpoint)

    def opt_http(self, endpoint: str) -> None:
        """HTTP listener for RTMPT, downloads, HTTP-FLV and the API [default: tcp:80]."""
        self["http"].append(endpoint)

    def postOptions(self) -> None:
        """Load the config file and apply the options on top of it."""
        try:
            config = load_config(Path(self["config"])) if self["config"] else Config()
        except ConfigError as error:
            raise usage.UsageError(str(error)) from None
        changes: dict[str, Any] = {}
        for key in ("rtmp", "rtmps", "http"):
            if self[key]:
                changes[key] = tuple(e for e in self[key] if e != "none")
        if self["media-root"]:
            changes["media_root"] = Path(self["media-root"])
        if self["record-dir"]:
            changes["record_dir"] = Path(self["record-dir"])
        if self["state-dir"]:
            changes["tls"] = attrs.evolve(config.tls, state_dir=Path(self["state-dir"]))
        self["flashstream-config"] = attrs.evolve(config, **changes)


class ListenerService(Service):
    """Listen on one endpoint string; failing to bind ends start-up clearly.

    The bind happens in ``privilegedStartService`` (before twistd drops
    privileges, so ports below 1024 work) and a failure raises ``SystemExit``
    with one line naming the endpoint and the option that sets it.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        description: str,
        factory: IProtocolFactory,
        option: str,
        kind: str,
        tls: TLSWrapper | None = None,
    ) -> None:
        self.reactor = reactor
        self.description = description
        self.factory = factory
        self.option = option
        self.kind = kind
        #: Adds TLS (and picks the certificate) at start-up, for --rtmps.
        self.tls = tls
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        """Bind now, so errors surface before the reactor runs."""
        super().privilegedStartService()
        result: list[object] = []
        description, factory = self.description, self.factory
        try:
            if self.tls is not None:
                description, factory = self.tls(description, factory)
            endpoint = serverFromString(self.reactor, description)
        except TLSConfigError as error:
            raise SystemExit(f"flashstream: {self.option} {self.description}: {error}") from None
        except (ValueError, KeyError, TypeError) as error:
            raise SystemExit(
                f"flashstream: bad endpoint {self.description!r} for {self.option}: {error}"
            ) from None
        deferred: Deferred[IListeningPort] = endpoint.listen(factory)
        deferred.addBoth(result.append)
        if not result:
            raise SystemExit(f"flashstream: {self.option} {self.description} did not bind at once")
        outcome = result[0]
        if isinstance(outcome, Failure):
            raise SystemExit(
                f"flashstream: cannot listen on {self.description} ({outcome.getErrorMessage()}); "
                f"choose another with {self.option} ENDPOINT"
            )
        self.port = cast(IListeningPort, outcome)
        address = self.port.getHost()
        self._log.info(
            "flashstream {kind} listening on {host}:{port}",
            kind=self.kind,
            host=getattr(address, "host", "?"),
            port=getattr(address, "port", "?"),
        )

    def startService(self) -> None:
        """Bind here too when twistd skipped the privileged step (tests)."""
        if self.port is None:
            self.privilegedStartService()
        super().startService()

    def stopService(self) -> Deferred[None] | None:
        """Stop listening."""
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return cast("Deferred[None] | None", port.stopListening())
        return None


class MonitoringService(Service):
    """Runs the QoS sampler and ends event feeds and HTTP-FLV viewers at shutdown."""

    def __init__(self, qos: QosMonitor, tracker: Tracker, feed: EventFeed) -> None:
        self.qos = qos
        self.tracker = tracker
        self.feed = feed

    def startService(self) -> None:
        """Start sampling counters and pinging clients."""
        super().startService()
        self.qos.start()

    def stopService(self) -> None:
        """Stop the timers; end SSE feeds and HTTP-FLV responses."""
        super().stopService()
        self.qos.stop()
        self.feed.close()
        for viewer in list(self.qos.http_clients.values()):
            viewer.goodbye("server shutting down")


def mount_monitoring(
    config: Config,
    hub: StreamHub,
    factory: RTMPServerFactory,
    web_root: WebRoot,
    reactor: IReactorTime,
) -> MonitoringService:
    """QoS, tracking, the API, metrics, HTTP-FLV and the dashboard on ``web_root``."""
    qos = QosMonitor(factory, hub, reactor, config.qos)
    tracker = Tracker(reactor, history=config.tracking.event_history)
    tracker.attach(factory)
    feed = EventFeed(tracker, reactor, config.tracking.max_event_clients)
    if config.tracking.access_log is not None:
        try:
            access_log = AccessLog.open(config.tracking.access_log, reactor)
        except OSError as error:
            raise SystemExit(
                f"flashstream: cannot open the access log {config.tracking.access_log} "
                f"({error.strerror}); change [tracking] access_log"
            ) from None
        tracker.observers.append(access_log)
    if config.tracking.webhooks:
        import treq

        tracker.observers.append(
            Webhooks(config.tracking.webhooks, treq, config.tracking.max_webhooks_in_flight)
        )
    web_root.mount("api", API(qos, feed, config.api.admin_token).app.resource())
    web_root.mount("metrics", Metrics(qos, tracker))
    web_root.mount("dashboard", DashboardAssets().app.resource())
    web_root.index = Dashboard().app.resource()
    web_root.fallback = HTTPFLV(hub, qos, tracker, reactor, config.limits).app.resource()
    return MonitoringService(qos, tracker, feed)


class FlashstreamService(MultiService):
    """The whole server: its hub, its RTMP factory and its listeners."""

    def __init__(
        self,
        hub: StreamHub,
        rtmp_factory: RTMPServerFactory,
        web_root: WebRoot,
        recordings: Recordings | None = None,
        hosts: dict[str, ApplicationHost] | None = None,
        gateway: RTMPTGateway | None = None,
    ) -> None:
        super().__init__()
        self.hub = hub
        self.rtmp_factory = rtmp_factory
        self.web_root = web_root
        self.recordings = recordings
        #: Every application, as the host running its checks, plugin and shared objects.
        self.hosts = hosts or {}
        self.gateway = gateway

    def startService(self) -> None:
        """Start the listeners and hand each plugin its API."""
        super().startService()
        for host in self.hosts.values():
            host.start()

    def stopService(self) -> Deferred[None]:
        """Tell every client goodbye, finish recordings, then stop the listeners."""
        self.rtmp_factory.shutdown()
        if self.recordings is not None:
            self.recordings.finish_all()
        return cast("Deferred[None]", super().stopService())


def tls_wrapper(config: TLSConfig, reloader: CertificateReloader, reactor: Any) -> TLSWrapper:
    """
    What an --rtmps listener does at start-up: certificate files from its
    endpoint string, else from ``[tls]``, else the development certificate;
    then Twisted's TLS around the listener's factory.
    """

    def wrap(description: str, factory: IProtocolFactory) -> tuple[str, IProtocolFactory]:
        socket, files = split_tls_endpoint(description)
        if files is None and config.private_key is not None:
            files = CertificateFiles(
                config.private_key, config.certificate or config.private_key, config.chain
            )
        if files is None:
            files = ensure_dev_certificate(config.state_dir)
        files = attrs.evolve(files, max_version=config.max_version)
        creator = ReloadableTLS(files, description)
        reloader.creators.append(creator)
        return socket, TLSMemoryBIOFactory(creator, False, factory, clock=reactor)

    return wrap


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    Build the hub, the applications and one service per listener.

    With no ``reactor`` (twistd), SIGHUP reloads the TLS certificates; tests
    pass a memory reactor and the process's signal handlers stay untouched.
    """
    install_signals = reactor is None
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    config: Config = options["flashstream-config"]
    hub = StreamHub()
    recordings = Recordings(config.recordings)
    cache = SourceCache()
    http = None
    if any(app.auth.enabled for app in config.applications):
        from treq.client import HTTPClient
        from twisted.web.client import Agent

        http = HTTPClient(Agent(reactor))
    try:
        hosts = build_hosts(
            config.applications,
            lambda app: builtin_application(
                app,
                hub,
                config.media_root,
                reactor=cast(IReactorTime, reactor),
                recordings=recordings,
                cache=cache,
            ),
            hub,
            cast(IReactorTime, reactor),
            config.shared_objects_dir,
            http,
        )
    except PluginNotFound as error:
        raise SystemExit(f"flashstream: {error}") from None
    for plugin_app in load_plugins(hub, config.media_root):
        hosts[plugin_app.name] = ApplicationHost(
            ApplicationConfig(plugin_app.name),
            plugin_app,
            hub,
            cast(IReactorTime, reactor),
            shared_objects_dir=config.shared_objects_dir,
        )
    applications: dict[str, IStreamApplication] = dict(hosts)
    factory = RTMPServerFactory(
        hub,
        applications,
        cast(IReactorTime, reactor),
        limits=config.limits,
        chunk_size=config.chunk_size,
    )
    web_root = WebRoot()
    web_root.mount("vod", MediaDownload(config.media_root).app.resource())
    gateway = RTMPTGateway(factory, cast(IReactorTime, reactor), config.rtmpt)
    gateway.mount_on(web_root)
    site = make_site(web_root, reactor, config.rtmpt.max_request_body)
    plain = SniffingFactory(factory, site, reactor, tls=False, timeout=config.sniff_timeout)
    secure = SniffingFactory(factory, site, reactor, tls=True, timeout=config.sniff_timeout)
    parent = FlashstreamService(hub, factory, web_root, recordings, hosts, gateway)
    reloader = CertificateReloader(reactor, install_signal=install_signals)
    mount_monitoring(config, hub, factory, web_root, cast(IReactorTime, reactor)).setServiceParent(
        parent
    )
    for description in config.rtmp:
        ListenerService(reactor, description, plain, "--rtmp", "rtmp").setServiceParent(parent)
    for description in config.http:
        ListenerService(reactor, description, site, "--http", "http").setServiceParent(parent)
    wrap = tls_wrapper(config.tls, reloader, reactor)
    for description in config.rtmps:
        ListenerService(reactor, description, secure, "--rtmps", "rtmps", wrap).setServiceParent(
            parent
        )
    reloader.setServiceParent(parent)
    return parent
