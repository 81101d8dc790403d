# -*- test-case-name: tests.test_appapi -*-
"""
Server applications: hooks, the API they use, and the host that runs them.

Every configured application is an :class:`ApplicationHost`.  The host is
the :class:`~flashstream.interfaces.IStreamApplication` the adapter talks to;
inside it sit, in order of asking:

1. the application's access checks (:mod:`flashstream.auth`),
2. the plugin's :class:`~flashstream.interfaces.IServerApplication` hooks,
   found with ``twisted.plugin.getPlugins`` (:func:`find_factory`),
3. the built-in behaviour of its kind (``live`` publishes through the hub).

It also serves the application's remote shared objects
(:mod:`flashstream.sharedobjects`), routes ``NetConnection.call`` to the
plugin and runs bandwidth detection (:mod:`flashstream.bandwidth`).  Every
hook may return a Deferred; each is given ``hook_timeout`` seconds, and one
that raises or never answers is logged and counts as a refusal, so a broken
application cannot stall the server.

Plugins get an :class:`ApplicationAPI` to call clients, broadcast, read and
write shared objects and start and stop streams.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import Any, Protocol, cast

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    TimeoutError,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.plugin import IPlugin, getPlugins
from twisted.python.failure import Failure
from zope.interface import Attribute, implementer

from .applications import Rejected
from .auth import CONNECT_REJECTED, PLAY_FAILED, PUBLISH_DENIED, AccessControl, AccessRequest
from .bandwidth import BandwidthResult, BandwidthSettings, detect
from .calls import bounded
from .config import ApplicationConfig
from .hub import Publication, StreamBusy, StreamHub
from .interfaces import (
    ICallHandler,
    IServerApplication,
    ISharedObjectHandler,
    IStreamApplication,
)
from .rtmp import commands as cmd
from .rtmp.connection import StreamMode
from .rtmp.messages import Message, MessageType
from .rtmp.sharedobject import SharedObjectMessage, SOEventType
from .sharedobjects import NO_WRITE_ACCESS, SharedObject, SharedObjectRefused, SharedObjectStore
from .streams import NetStream

#: Most shared object messages of one application waiting behind a slow hook.
MAX_QUEUED_SHARED_OBJECT_MESSAGES = 1024


class IServerApplicationFactory(IPlugin):
    """A plugin (in any package's ``twisted/plugins/``) that makes server applications."""

    name = Attribute("The name ``plugin = NAME`` chooses in the configuration.")

    def build(config: ApplicationConfig) -> IServerApplication:
        """A new application for ``config`` (its ``settings`` table is the plugin's)."""


class PluginNotFound(Exception):
    """No installed plugin has the configured name."""


def find_factory(name: str) -> IServerApplicationFactory:
    """The installed server application plugin called ``name`` (call at start-up only)."""
    found = [p for p in getPlugins(IServerApplicationFactory) if p.name == name]
    if not found:
        known = sorted(p.name for p in getPlugins(IServerApplicationFactory))
        raise PluginNotFound(
            f"no server application plugin named {name!r} is installed "
            f"(found: {', '.join(known) or 'none'})"
        )
    return found[0]


class CallFailed(Exception):
    """Raise from ``on_call`` or a ``remote_*`` method: the client gets ``_error``."""


class Connection(Protocol):
    """What the host needs of an RTMP connection (``RTMPServerProtocol``)."""

    peer: str
    client_properties: dict[str, object]
    connect_query: str
    connect_arguments: tuple[object, ...]
    bandwidth: BandwidthResult | None
    streams: dict[int, NetStream]

    def call(self, method: str, *args: object, timeout: float | None = None) -> Deferred[object]:
        """Call ``method`` on the client."""

    def notify(self, method: str, *args: object) -> None:
        """Call ``method`` on the client without an answer."""

    def deliver_shared_object(self, message: SharedObjectMessage) -> None:
        """Send a shared object message."""

    def disconnect(self) -> None:
        """Close the connection."""

    def close_stream(self, stream: NetStream) -> None:
        """End what ``stream`` does (its cleanups run; the client is told)."""

    def stream_mode(self, stream: NetStream) -> StreamMode | None:
        """What ``stream`` does now."""

    def still_wanted(self, key: int) -> bool:
        """Whether the connect (0) or stream ``key`` decision still matters."""


_ids = itertools.count(1)


class Client:
    """One connected client, as applications see it."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        #: A server-unique id (also sent to HTTP callbacks as ``clientid``).
        self.id = str(next(_ids))
        #: Free storage for the application (a user name...).
        self.data: dict[str, Any] = {}

    @property
    def peer(self) -> str:
        """``host:port`` of the client."""
        return self._connection.peer

    @property
    def properties(self) -> dict[str, object]:
        """The connect command object (app, tcUrl, flashVer, objectEncoding...)."""
        return self._connection.client_properties

    @property
    def query(self) -> str:
        """The ``?query`` of the connect URL."""
        return self._connection.connect_query

    @property
    def bandwidth(self) -> BandwidthResult | None:
        """The last bandwidth detection's result, if one ran."""
        return self._connection.bandwidth

    def call(self, method: str, *args: object, timeout: float | None = None) -> Deferred[object]:
        """Call ``method`` on the client; the Deferred fires with its answer."""
        return self._connection.call(method, *args, timeout=timeout)

    def notify(self, method: str, *args: object) -> None:
        """Call ``method`` on the client, not waiting for an answer."""
        self._connection.notify(method, *args)

    def disconnect(self) -> None:
        """Close the client's connection."""
        self._connection.disconnect()

    def __repr__(self) -> str:
        return f"<Client {self.id} {self.peer}>"


class SharedObjectHandle:
    """An application's handle on one shared object (changes reach every subscriber)."""

    def __init__(self, store: SharedObjectStore, so: SharedObject) -> None:
        self._store = store
        self._so = so
        so.pinned = True

    @property
    def name(self) -> str:
        """The shared object's name."""
        return self._so.name

    @property
    def version(self) -> int:
        """The current version (each change bumps it once)."""
        return self._so.version

    @property
    def data(self) -> dict[str, object]:
        """A copy of every slot."""
        return dict(self._so.data)

    def get(self, key: str, default: object = None) -> object:
        """One slot's value."""
        return self._so.data.get(key, default)

    def set(self, key: str, value: object) -> None:
        """Set one slot (SharedObjectRefused past the limits)."""
        self._store.change(self._so, [(key, value)], None)

    def update(self, values: dict[str, object]) -> None:
        """Set several slots with one version bump."""
        self._store.change(self._so, list(values.items()), None)

    def remove(self, *keys: str) -> None:
        """Delete slots."""
        self._store.remove(self._so, list(keys))

    def clear(self) -> None:
        """Delete every slot."""
        self._store.clear(self._so)

    def send(self, handler: str, *args: object) -> None:
        """Call ``handler(args...)`` on every subscriber's shared object."""
        self._store.send(self._so, (handler, *args))

    def release(self) -> None:
        """The application no longer holds the object."""
        self._so.pinned = False
        self._store._discard_if_unused(self._so)


class ServerStream:
    """A live stream the application publishes itself (``ApplicationAPI.publish``)."""

    def __init__(self, hub: StreamHub, publication: Publication) -> None:
        self._hub = hub
        self._publication = publication
        self.closed = False

    @property
    def name(self) -> str:
        """The stream name."""
        return self._publication.name

    def send(self, type_id: int, timestamp: int, payload: bytes) -> None:
        """Feed one audio (8), video (9) or data (18) message to the players."""
        if not self.closed:
            self._hub.feed(self._publication, Message(type_id, 0, timestamp, payload))

    def send_data(self, handler: str, *args: object, timestamp: int = 0) -> None:
        """Send a data message (``onTextData``, ``onCuePoint``...) to the players."""
        payload = cmd.encode_data(cmd.DataMessage(handler, args))
        self.send(MessageType.DATA_AMF0, timestamp, payload)

    def close(self) -> None:
        """End the stream (players get UnpublishNotify)."""
        if not self.closed:
            self.closed = True
            self._hub.unpublish(self._publication)


class ApplicationAPI:
    """What a server application may do (handed to ``IServerApplication.start``)."""

    def __init__(self, host: ApplicationHost) -> None:
        self._host = host

    @property
    def name(self) -> str:
        """The application's name."""
        return self._host.name

    @property
    def clients(self) -> list[Client]:
        """Every connected client."""
        return list(self._host.clients.values())

    @property
    def clock(self) -> IReactorTime:
        """The server's clock (for timers: ``api.clock.callLater``)."""
        return self._host.reactor

    def call(self, client: Client, method: str, *args: object) -> Deferred[object]:
        """Call ``method`` on ``client``; the Deferred fires with the client's answer."""
        return client.call(method, *args)

    def broadcast(self, method: str, *args: object) -> None:
        """Call ``method(args...)`` on every client (no answers)."""
        for client in self.clients:
            client.notify(method, *args)

    def shared_object(self, name: str, persistent: bool = False) -> SharedObjectHandle:
        """Read and write shared object ``name`` (created if needed)."""
        store = self._host.shared_objects
        return SharedObjectHandle(store, store.get(name, persistent))

    def publish(self, name: str) -> ServerStream:
        """Start a live stream ``name`` fed by the application (StreamBusy if taken)."""
        publication = self._host.hub.publish(self._host.name, name, self)
        return ServerStream(self._host.hub, publication)

    def stop_stream(self, name: str) -> bool:
        """Stop the client publishing ``name`` (it gets Unpublish.Success); True if one was."""
        for connection in list(self._host.clients):
            for stream in list(connection.streams.values()):
                if stream.name == name and connection.stream_mode(stream) is StreamMode.PUBLISHING:
                    connection.close_stream(stream)
                    return True
        return False

    def disconnect(self, client: Client) -> None:
        """Close ``client``'s connection."""
        client.disconnect()


@implementer(IServerApplication)
class ServerApplication:
    """A convenient base: every hook allows; calls go to ``remote_<method>(client, *args)``."""

    api: ApplicationAPI

    def start(self, api: Any) -> object:
        """Keep the API (an :class:`ApplicationAPI`)."""
        self.api = api
        return None

    def on_connect(self, client: Any, arguments: tuple[object, ...]) -> object:
        """Allow."""
        return None

    def on_disconnect(self, client: Any) -> object:
        """Nothing to do."""
        return None

    def on_publish(self, client: Any, name: str, publish_type: str) -> object:
        """Allow."""
        return None

    def on_unpublish(self, client: Any, name: str) -> object:
        """Nothing to do."""
        return None

    def on_play(self, client: Any, name: str) -> object:
        """Allow."""
        return None

    def on_stop(self, client: Any, name: str) -> object:
        """Nothing to do."""
        return None

    def on_call(self, client: Any, method: str, arguments: tuple[object, ...]) -> object:
        """Call ``self.remote_<method>(client, *arguments)``; unknown methods fail."""
        handler = getattr(self, "remote_" + method, None)
        if handler is None or not callable(handler):
            raise CallFailed(f"Method {method!r} is not available.")
        return handler(client, *arguments)

    def on_shared_object_change(
        self, client: Any, name: str, changes: dict[str, object], removed: list[str]
    ) -> object:
        """Allow."""
        return None


@implementer(IStreamApplication, ICallHandler, ISharedObjectHandler)
class ApplicationHost:
    """One configured application: access checks, plugin hooks, shared objects, calls."""

    _log = Logger()

    def __init__(
        self,
        config: ApplicationConfig,
        base: IStreamApplication,
        hub: StreamHub,
        reactor: IReactorTime,
        *,
        application: IServerApplication | None = None,
        access: AccessControl | None = None,
        shared_objects_dir: Path | None = None,
        bandwidth: BandwidthSettings = BandwidthSettings(),
    ) -> None:
        self.name = config.name
        self.config = config
        self.base = base
        self.hub = hub
        self.reactor = reactor
        self.application = application
        self.access = access
        self.bandwidth = bandwidth
        self.shared_objects = SharedObjectStore(
            config.name, config.shared_objects, shared_objects_dir
        )
        self.clients: dict[Connection, Client] = {}
        self.api = ApplicationAPI(self)
        self._so_tail: Deferred[None] = succeed(None)
        self._so_queued = 0
        self._started = False

    def start(self) -> None:
        """Hand the API to the plugin (once, when the server starts)."""
        if self._started or self.application is None:
            return
        self._started = True
        deferred = self._hook("start", self.application.start, self.api)
        deferred.addErrback(lambda failure: None)  # already logged

    # -- hooks ------------------------------------------------------------------------------

    def _hook(self, hook: str, function: Callable[..., object], *args: object) -> Deferred[Any]:
        """Run one hook with the timeout; anything but Rejected becomes a logged refusal."""
        deferred = bounded(function, self.config.hook_timeout, self.reactor, *args)

        def failed(failure: Failure) -> Failure:
            if failure.check(Rejected, CallFailed):
                return failure
            if failure.check(TimeoutError, CancelledError):
                self._log.warn(
                    "Application {app} did not answer {hook} within {timeout}s; refusing",
                    app=self.name,
                    hook=hook,
                    timeout=self.config.hook_timeout,
                )
                why = f"the application did not answer within {self.config.hook_timeout}s"
            else:
                self._log.failure(
                    "Application {app} failed in {hook}; refusing",
                    failure,
                    app=self.name,
                    hook=hook,
                )
                why = "the application failed"
            return Failure(HookFailed(why))

        deferred.addErrback(failed)
        return deferred

    def _request(self, connection: Connection, action: str, **fields: Any) -> AccessRequest:
        properties = connection.client_properties
        client = self.clients.get(connection)

        def text(key: str) -> str:
            value = properties.get(key)
            return value if isinstance(value, str) else ""

        return AccessRequest(
            action=action,
            app=self.name,
            connect_query=connection.connect_query,
            addr=connection.peer.rsplit(":", 1)[0],
            client_id=client.id if client is not None else "",
            tc_url=text("tcUrl"),
            flash_ver=text("flashVer"),
            swf_url=text("swfUrl"),
            page_url=text("pageUrl"),
            **fields,
        )

    # -- IStreamApplication -------------------------------------------------------------------

    @inlineCallbacks
    def connect(self, client: object) -> Generator[Deferred[Any], Any, None]:
        """Access checks, the plugin's on_connect, the base; then the client is in."""
        connection = cast(Connection, client)
        client = Client(connection)
        try:
            if self.access is not None:
                yield self._hook(
                    "connect", self.access.check_connect, self._request(connection, "connect")
                )
            if self.application is not None:
                yield self._hook(
                    "connect",
                    self.application.on_connect,
                    client,
                    connection.connect_arguments,
                )
            yield maybeDeferred(self.base.connect, connection)
        except HookFailed as failed:
            raise Rejected(CONNECT_REJECTED, f"Connection refused: {failed}.") from None
        if not connection.still_wanted(0):
            self._gone(connection, client)
            return
        self.clients[connection] = client
        if self.config.bandwidth_check == "on-connect":
            self.reactor.callLater(0, self.check_bandwidth, connection)

    @inlineCallbacks
    def publish(
        self, client: object, stream: NetStream, name: str, publish_type: str
    ) -> Generator[Deferred[Any], Any, None]:
        """Access checks (may rename), on_publish, then the base publishes."""
        connection = cast(Connection, client)
        client = self.clients.get(connection)
        if client is None:
            raise Rejected(PUBLISH_DENIED, "The client is not connected.")
        try:
            if self.access is not None:
                request = self._request(
                    connection, "publish", name=name, query=stream.query, publish_type=publish_type
                )
                name = yield self._hook("publish", self.access.check_publish, request)
            if self.application is not None:
                yield self._hook("publish", self.application.on_publish, client, name, publish_type)
        except HookFailed as failed:
            raise Rejected(PUBLISH_DENIED, f"Publishing {name} refused: {failed}.") from None
        if not connection.still_wanted(stream.stream_id):
            raise Rejected(PUBLISH_DENIED, "The stream was closed meanwhile.")
        stream.name = name
        yield maybeDeferred(self.base.publish, connection, stream, name, publish_type)
        stream.add_cleanup(lambda: self._stopped(connection, "publish", name))

    @inlineCallbacks
    def play(
        self, client: object, stream: NetStream, name: str, start: float
    ) -> Generator[Deferred[Any], Any, None]:
        """Access checks (may rename), on_play, then the base plays."""
        connection = cast(Connection, client)
        client = self.clients.get(connection)
        if client is None:
            raise Rejected(PLAY_FAILED, "The client is not connected.")
        try:
            if self.access is not None:
                request = self._request(connection, "play", name=name, query=stream.query)
                name = yield self._hook("play", self.access.check_play, request)
            if self.application is not None:
                yield self._hook("play", self.application.on_play, client, name)
        except HookFailed as failed:
            raise Rejected(PLAY_FAILED, f"Playing {name} refused: {failed}.") from None
        if not connection.still_wanted(stream.stream_id):
            raise Rejected(PLAY_FAILED, "The stream was closed meanwhile.")
        stream.name = name
        yield maybeDeferred(self.base.play, connection, stream, name, start)
        stream.add_cleanup(lambda: self._stopped(connection, "play", name))

    def _gone(self, connection: Connection, client: Client) -> None:
        """Accepted by every hook after the client left: undo the plugin's on_connect."""
        self._log.info(
            "{peer} left before {app} accepted it", peer=connection.peer, app=self.name
        )
        if self.application is not None:
            self._hook("on_disconnect", self.application.on_disconnect, client).addErrback(
                lambda failure: None
            )

    def _stopped(self, connection: Connection, action: str, name: str) -> None:
        client = self.clients.get(connection)
        if self.access is not None:
            self.access.done(self._request(connection, action, name=name))
        if self.application is not None and client is not None:
            if action == "publish":
                hook, hook_name = self.application.on_unpublish, "on_unpublish"
            else:
                hook, hook_name = self.application.on_stop, "on_stop"
            self._hook(hook_name, hook, client, name).addErrback(lambda failure: None)

    def stream_length(self, client: object, name: str) -> float:
        """Whatever the base says."""
        connection = cast(Connection, client)
        return self.base.stream_length(connection, name)

    def disconnect(self, client: object) -> None:
        """Release the client's shared objects, tell the plugin and the base."""
        connection = cast(Connection, client)
        self.shared_objects.release_all(cast(Any, connection))
        client = self.clients.pop(connection, None)
        if client is not None and self.application is not None:
            self._hook("on_disconnect", self.application.on_disconnect, client).addErrback(
                lambda failure: None
            )
        self.base.disconnect(connection)

    # -- ICallHandler -----------------------------------------------------------------------

    def call(self, client: object, method: str, arguments: tuple[object, ...]) -> object:
        """``checkBandwidth`` runs detection; other calls go to the plugin's on_call."""
        connection = cast(Connection, client)
        if method == "checkBandwidth" and self.config.bandwidth_check != "off":
            return self.check_bandwidth(connection).addCallback(lambda result: None)
        client = self.clients.get(connection)
        if self.application is None or client is None:
            raise CallFailed(f"Method {method!r} is not available.")
        deferred = self._hook("call " + method, self.application.on_call, client, method, arguments)

        def refused(failure: Failure) -> Failure:
            error = failure.value
            if isinstance(error, Rejected):
                return Failure(CallFailed(error.description))
            return failure

        return deferred.addErrback(refused)

    def check_bandwidth(self, connection: Connection) -> Deferred[BandwidthResult | None]:
        """Run native bandwidth detection on ``connection``; keep the result on it."""

        def done(result: BandwidthResult) -> BandwidthResult:
            connection.bandwidth = result
            self._log.info(
                "Bandwidth of {peer}: {kbit} kbit/s down, latency {latency} ms ({rounds} rounds)",
                peer=connection.peer,
                kbit=result.kbit_down,
                latency=result.latency_ms,
                rounds=result.rounds,
            )
            return result

        def failed(failure: Failure) -> None:
            self._log.info(
                "Bandwidth detection of {peer} stopped: {why}",
                peer=connection.peer,
                why=failure.getErrorMessage(),
            )

        deferred: Deferred[Any] = detect(
            connection.call, connection.notify, self.reactor, self.bandwidth
        )
        return deferred.addCallbacks(done, failed)

    # -- ISharedObjectHandler ------------------------------------------------------------------

    def shared_object_message(self, client: object, message: SharedObjectMessage) -> None:
        """Queue the message behind the ones still waiting for a hook, in order."""
        connection = cast(Connection, client)
        if self._so_queued >= MAX_QUEUED_SHARED_OBJECT_MESSAGES:
            self._log.warn(
                "Dropping shared object message from {peer}: {count} are queued in {app}",
                peer=connection.peer,
                count=self._so_queued,
                app=self.name,
            )
            self._refuse_so(connection, message, NO_WRITE_ACCESS)
            return
        self._so_queued += 1

        def run(_: object) -> Deferred[None]:
            return self._process_so(connection, message)

        def done(_: object) -> None:
            self._so_queued -= 1

        def failed(failure: Failure) -> None:
            self._log.failure(
                "Shared object message from {peer} failed", failure, peer=connection.peer
            )

        self._so_tail = self._so_tail.addCallback(run).addErrback(failed).addBoth(done)

    def _refuse_so(self, connection: Connection, message: SharedObjectMessage, code: str) -> None:
        self.shared_objects.refuse(
            cast(Any, connection), message.name, message.persistent, message.type_id, code
        )

    @inlineCallbacks
    def _process_so(
        self, connection: Connection, message: SharedObjectMessage
    ) -> Generator[Deferred[Any], Any, None]:
        client = self.clients.get(connection)
        if client is None:
            return  # the client left while earlier messages waited
        store = self.shared_objects
        subscriber = cast(Any, connection)
        changes: dict[str, object] = {}
        removed: list[str] = []
        try:
            for event in message.events:
                if event.kind is SOEventType.USE:
                    store.use(subscriber, message.name, message.persistent, message.type_id)
                elif event.kind is SOEventType.RELEASE:
                    store.release(subscriber, message.name)
                elif event.kind is SOEventType.REQUEST_CHANGE:
                    changes.update(event.pairs)
                elif event.kind is SOEventType.REQUEST_REMOVE:
                    removed.append(event.key)
                elif event.kind is SOEventType.SEND_MESSAGE:
                    store.send(store.subscribed(subscriber, message.name), event.arguments)
            if not changes and not removed:
                return
            store.subscribed(subscriber, message.name)
            if self.application is not None:
                yield self._hook(
                    "on_shared_object_change",
                    self.application.on_shared_object_change,
                    client,
                    message.name,
                    dict(changes),
                    list(removed),
                )
            so = store.subscribed(subscriber, message.name)  # still, after the hook
            store.change(so, list(changes.items()), subscriber)
            store.remove(so, removed)
        except SharedObjectRefused as refused:
            self._log.info(
                "Shared object {app}/{name} request from {peer} refused: {why}",
                app=self.name,
                name=message.name,
                peer=connection.peer,
                why=refused.reason,
            )
            self._refuse_so(connection, message, refused.code)
        except (Rejected, HookFailed) as refused:
            self._log.info(
                "Shared object {app}/{name} change from {peer} refused by the application: {why}",
                app=self.name,
                name=message.name,
                peer=connection.peer,
                why=str(refused),
            )
            self._refuse_so(connection, message, NO_WRITE_ACCESS)


class HookFailed(Exception):
    """A hook raised something other than Rejected, or did not answer in time."""


def build_hosts(
    configs: Iterable[ApplicationConfig],
    base_for: Callable[[ApplicationConfig], IStreamApplication],
    hub: StreamHub,
    reactor: IReactorTime,
    shared_objects_dir: Path,
    http: Any = None,
) -> dict[str, ApplicationHost]:
    """An ApplicationHost per configured application (PluginNotFound if a plugin is missing)."""
    hosts: dict[str, ApplicationHost] = {}
    for config in configs:
        application = find_factory(config.plugin).build(config) if config.plugin else None
        access = AccessControl(config.auth, reactor, http) if config.auth.enabled else None
        hosts[config.name] = ApplicationHost(
            config,
            base_for(config),
            hub,
            reactor,
            application=application,
            access=access,
            shared_objects_dir=shared_objects_dir,
        )
    return hosts


__all__ = [
    "ApplicationAPI",
    "ApplicationHost",
    "CallFailed",
    "Client",
    "IServerApplicationFactory",
    "PluginNotFound",
    "ServerApplication",
    "ServerStream",
    "SharedObjectHandle",
    "StreamBusy",
    "build_hosts",
    "find_factory",
]
