# -*- test-case-name: tests.test_tap -*-
"""
twistd wiring: ``twistd -n flashstream [options]``.

``Options`` parses the command line of PRODUCT.md; ``makeService`` builds one
hub, the applications (built-in and plugins) and one listening service per
endpoint, all sharing that hub.  Importing this module has no side effects
and never touches the global reactor.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import attrs
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IReactorTime
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.python.failure import Failure

from .api import API
from .appapi import ApplicationHost, PluginNotFound, build_hosts
from .applications import LiveApplication, VodApplication, builtin_application, load_plugins
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
        #: Kept for reloads: the file is read again and the options re-applied.
        self["flashstream-config-path"] = Path(self["config"]) if self["config"] else None
        self["flashstream-overrides"] = changes


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
    """The whole server: its hub, its RTMP factory, its listeners; reloads on SIGHUP."""

    _log = Logger()

    def __init__(
        self,
        hub: StreamHub,
        rtmp_factory: RTMPServerFactory,
        web_root: WebRoot,
        recordings: Recordings | None = None,
        hosts: dict[str, ApplicationHost] | None = None,
        gateway: RTMPTGateway | None = None,
        *,
        build_host: Callable[[ApplicationConfig], ApplicationHost] | None = None,
        certificates: CertificateReloader | None = None,
        config: Config | None = None,
        config_path: Path | None = None,
        overrides: dict[str, Any] | None = None,
        reactor: Any = None,
        install_signal: Callable[[int, Any], Any] | None = None,
    ) -> None:
        super().__init__()
        self.hub = hub
        self.rtmp_factory = rtmp_factory
        self.web_root = web_root
        self.recordings = recordings
        #: Every application, as the host running its checks, plugin and shared objects.
        self.hosts = hosts or {}
        self.gateway = gateway
        #: The TLS listeners' certificates, reloaded with the configuration.
        self.certificates = certificates
        #: Builds the host of an application a reload adds or rebuilds.
        self.build_host = build_host
        self.config = config = config if config is not None else Config()
        self.config_path = config_path
        self.overrides = dict(overrides or {})
        #: The reactor twistd runs (its exit signal is cleared after a clean stop).
        self.reactor = reactor
        self._install_signal = install_signal
        self._previous_hup: Any = None
        self._hup_installed = False
        #: Names of the applications built from the configuration (not plugins).
        self.configured = {app.name for app in config.applications}

    def startService(self) -> None:
        """Start the listeners, hand each plugin its API, handle SIGHUP (reload)."""
        super().startService()
        for host in self.hosts.values():
            host.start()
        hup = getattr(signal, "SIGHUP", None)
        if hup is None or self.reactor is None or self._install_signal is None:
            return  # tests: the process's handlers stay untouched
        try:
            self._previous_hup = self._install_signal(hup, self._on_sighup)
        except ValueError as error:  # not the main thread
            self._log.warn("SIGHUP reload not available: {error}", error=error)
            return
        self._hup_installed = True

    def _on_sighup(self, signum: int, frame: object) -> None:
        # A signal handler may interrupt the reactor anywhere: only queue the work.
        self.reactor.callFromThread(self.reload)

    def stopService(self) -> Deferred[None]:
        """Stop accepting, tell every client goodbye, finish recordings, restore SIGHUP.

        The Deferred (which twistd waits for before it exits) fires once every
        client has closed, or ``limits.shutdown_timeout`` seconds later, when
        the clients still connected are cut off.
        """
        if self._hup_installed and self._install_signal is not None:
            self._hup_installed = False
            self._install_signal(signal.SIGHUP, self._previous_hup)
        listeners = super().stopService()
        clients = self.rtmp_factory.shutdown()
        if self.recordings is not None:
            self.recordings.finish_all()
        done = gatherResults([listeners, clients], consumeErrors=True)
        return done.addBoth(self._stopped)

    def _stopped(self, _: object) -> None:
        """Shutdown is complete: let twistd exit with status 0.

        twistd re-raises the signal that stopped its reactor (so a SIGTERM
        normally ends the process "killed by SIGTERM"); after a clean shutdown
        the reactor's record of that signal is cleared instead.
        """
        if getattr(self.reactor, "_exitSignal", None) is not None:
            self.reactor._exitSignal = None

    def reload(self) -> bool:
        """Read the configuration file again and apply it; False if it was refused.

        New applications appear, removed ones disconnect their clients,
        changed applications take new live settings (takeover, limits,
        waiting, recording) with their clients connected, and are rebuilt
        (their clients reconnect) for other changes (kind, plugin, auth,
        shared objects, bandwidth check); applications that did not change
        are not touched.  Limits and the chunk size apply to new connections
        (timeouts at once).  Listeners and media paths need a restart.  An
        invalid file, or one naming a missing plugin, changes nothing.  The
        TLS listeners' certificate files are read again in any case.
        """
        if self.certificates is not None:
            self.certificates.reload()
        path = self.config_path
        if path is None:
            self._log.warn("Reload asked, but flashstream was started without --config")
            return False
        try:
            new = attrs.evolve(load_config(path), **self.overrides)
            self.apply(new)
        except (ConfigError, PluginNotFound) as error:
            self._log.error(
                "Configuration {path} refused, the running one stays: {error}",
                path=str(path),
                error=str(error),
            )
            return False
        return True

    def apply(self, new: Config) -> None:
        """Make ``new`` the running configuration (see :meth:`reload`)."""
        old = self.config
        factory = self.rtmp_factory
        applications = factory.applications
        old_apps = {a.name: a for a in old.applications}
        new_apps = {a.name: a for a in new.applications}
        added = [n for n in new_apps if n not in old_apps]
        removed = [n for n in old_apps if n not in new_apps]
        changed = [n for n in new_apps if n in old_apps and new_apps[n] != old_apps[n]]
        in_place = [n for n in changed if self._live_change(old_apps[n], new_apps[n])]
        rebuilt = [n for n in changed if n not in in_place]
        # Build everything first: a missing plugin refuses the whole reload.
        built = {name: self._build(new_apps[name]) for name in added + rebuilt}
        for name in removed:
            if name in self.configured:
                self._replace(name, None, f"application {name} removed")
        for name in rebuilt:
            self._replace(name, built[name], f"application {name} changed")
        for name in added:
            self._replace(name, built[name], "")
        for name in in_place:
            running = applications.get(name)
            base = running.base if isinstance(running, ApplicationHost) else running
            if isinstance(running, ApplicationHost):
                running.config = new_apps[name]
            if isinstance(base, (LiveApplication, VodApplication)):
                base.reconfigure(new_apps[name])
        factory.limits = new.limits
        factory.chunk_size = new.chunk_size
        self.hub.lockstep = new.lockstep_fanout
        if not new.lockstep_fanout:
            for publication in self.hub.publications():
                publication.dissolve()
        live = ("applications", "limits", "chunk_size", "lockstep_fanout")
        restart = [
            field.name
            for field in attrs.fields(Config)
            if field.name not in live and getattr(new, field.name) != getattr(old, field.name)
        ]
        if restart:
            self._log.warn(
                "Reload: {settings} changed; they apply at the next restart",
                settings=", ".join(restart),
            )
        kept: dict[str, Any] = {key: getattr(old, key) for key in restart}
        self.config = attrs.evolve(new, **kept)
        self._log.info(
            "Configuration reloaded from {path}: added {added}, changed {changed}, "
            "removed {removed}; limits changed: {limits}",
            path=str(self.config_path),
            added=added,
            changed=changed,
            removed=removed,
            limits=new.limits != old.limits or new.chunk_size != old.chunk_size,
        )

    @staticmethod
    def _live_change(old: ApplicationConfig, new: ApplicationConfig) -> bool:
        """Whether only settings a running application can take changed."""
        keys = ("wait_for_publisher", "record", "takeover", "takeover_idle", "max_players")
        return attrs.evolve(old, **{key: getattr(new, key) for key in keys}) == new

    def _build(self, spec: ApplicationConfig) -> ApplicationHost:
        if self.build_host is None:
            raise ConfigError(f"cannot build application {spec.name} here")
        return self.build_host(spec)

    def _replace(self, name: str, host: ApplicationHost | None, reason: str) -> None:
        applications = self.rtmp_factory.applications
        running = applications.pop(name, None)
        self.hosts.pop(name, None)
        if host is not None:
            applications[name] = host
            self.hosts[name] = host
            self.configured.add(name)
            if self.running:
                host.start()
        else:
            self.configured.discard(name)
        if running is not None:
            for protocol in list(self.rtmp_factory.connections):
                if protocol.app is running:
                    protocol.goodbye(reason)


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

    With no ``reactor`` (twistd), SIGHUP reloads the configuration file and
    the TLS certificates (:meth:`FlashstreamService.reload`); tests pass a
    memory reactor and the process's signal handlers stay untouched.
    """
    install_signals = reactor is None
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    config: Config = options["flashstream-config"]
    hub = StreamHub(lockstep=config.lockstep_fanout)
    recordings = Recordings(config.recordings)
    cache = SourceCache()
    http: Any = None

    def build_host(app: ApplicationConfig) -> ApplicationHost:
        nonlocal http
        if http is None and app.auth.enabled:
            from treq.client import HTTPClient
            from twisted.web.client import Agent

            http = HTTPClient(Agent(reactor))
        (host,) = build_hosts(
            [app],
            lambda spec: builtin_application(
                spec,
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
        ).values()
        return host

    try:
        hosts = {app.name: build_host(app) for app in config.applications}
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
        tcp_nodelay=config.tcp_nodelay,
    )
    web_root = WebRoot()
    web_root.mount("vod", MediaDownload(config.media_root).app.resource())
    gateway = RTMPTGateway(factory, cast(IReactorTime, reactor), config.rtmpt)
    gateway.mount_on(web_root)
    site = make_site(web_root, reactor, config.rtmpt.max_request_body)
    plain = SniffingFactory(factory, site, reactor, tls=False, timeout=config.sniff_timeout)
    secure = SniffingFactory(factory, site, reactor, tls=True, timeout=config.sniff_timeout)
    # One SIGHUP handler (FlashstreamService) reloads the configuration and
    # the certificates together.
    reloader = CertificateReloader(reactor, install_signal=False)
    parent = FlashstreamService(
        hub,
        factory,
        web_root,
        recordings,
        hosts,
        gateway,
        build_host=build_host,
        certificates=reloader,
        config=config,
        config_path=options.get("flashstream-config-path"),
        overrides=options.get("flashstream-overrides"),
        reactor=reactor,
        install_signal=signal.signal if install_signals else None,
    )
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
