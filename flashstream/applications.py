# -*- test-case-name: tests.test_applications -*-
"""
The built-in applications and the loading of application plugins.

``live`` publishes and plays live streams through the hub; ``vod`` plays
files under the media root.  Plugins provide more through
:class:`~flashstream.interfaces.IStreamApplication`; they are discovered in
:func:`load_plugins`, called from ``makeService``, never at import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.plugin import IPlugin, getPlugins
from twisted.python.failure import Failure
from zope.interface import implementer

from .config import ApplicationConfig
from .hub import Publication, StreamBusy, StreamHub
from .interfaces import IStreamApplication
from .rtmp.messages import Message
from .streams import NetStream
from .takeover import (
    Decision,
    PublisherSession,
    TakeoverRefused,
    TakeoverWaits,
    WaitOutcome,
    decide,
    silent_for,
)
from .vod.source import MediaError, MediaSource, SourceCache

if TYPE_CHECKING:
    from .vod.recorder import Recordings


@attrs.frozen
class Rejected(Exception):
    """An application refuses a connect, publish or play."""

    code: str
    description: str

    def __str__(self) -> str:
        return f"{self.code}: {self.description}"


@attrs.define(eq=False)
class _Publishing:
    """Who publishes a name of a live application, on which NetStream."""

    client: object
    stream: NetStream


@implementer(IStreamApplication)
class LiveApplication:
    """Publish and play live streams by name, with publisher takeover."""

    _log = Logger()

    def __init__(
        self,
        config: ApplicationConfig,
        hub: StreamHub,
        recordings: Recordings | None = None,
        *,
        reactor: IReactorTime | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self.hub = hub
        self.recordings = recordings
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = cast(IReactorTime, global_reactor)
        self.reactor = reactor
        self.waits = TakeoverWaits(reactor)
        self._publishing: dict[str, _Publishing] = {}
        #: Players of this application right now (for ``max_players``).
        self.players = 0

    def reconfigure(self, config: ApplicationConfig) -> None:
        """Apply a changed configuration (same name and kind); clients stay."""
        self.config = config

    def connect(self, client: object) -> None:
        """Everyone may connect."""

    def publish(
        self, client: object, stream: NetStream, name: str, publish_type: str
    ) -> Deferred[None] | None:
        """Publish ``name`` through the hub, taking it over if so configured.

        A name in use is a BadName with ``takeover = "never"``; with
        ``"idle"`` the answer may come later (the returned Deferred).
        """
        if not name:
            raise Rejected("NetStream.Publish.BadName", "An empty stream name cannot be published.")
        record = self.config.record
        wants = publish_type in ("record", "append")
        if wants and record == "off":
            raise Rejected("NetStream.Publish.Denied", f"{self.name} does not record streams.")
        if (wants or record == "all") and self.recordings is not None:
            if self.recordings.path_for(self.name, name) is None:
                raise Rejected("NetStream.Publish.BadName", f"{name} cannot be recorded.")
        publication = self.hub.get(self.name, name)
        if publication is None:
            self._start(client, stream, name, publish_type)
            return None
        busy = Rejected("NetStream.Publish.BadName", f"{name} is already being published.")
        mode, idle = self.config.takeover, self.config.takeover_idle
        current = publication.publisher
        decision = decide(mode, silent_for(current), idle)
        if decision is not Decision.REFUSE and not isinstance(current, PublisherSession):
            decision = Decision.REFUSE  # cannot tell whether it is alive, nor evict it
        if decision is Decision.REFUSE:
            raise busy
        if decision is Decision.REPLACE:
            self._take_over(publication, client, stream, name, publish_type, why=mode)
            return None
        if self.waits.waiting(name):
            raise Rejected(
                "NetStream.Publish.BadName", f"Another publisher already waits for {name}."
            )
        self._log.info(
            "Publisher {new!r} waits up to {idle}s for {app}/{name} "
            "(current one silent {silent:.1f}s)",
            new=client,
            idle=idle,
            app=self.name,
            name=name,
            silent=silent_for(current),
        )
        waited = self.waits.wait(name, lambda: silent_for(self._current(name)), idle)

        def go_ahead(outcome: WaitOutcome) -> None:
            still_wanted = getattr(client, "still_wanted", None)
            if still_wanted is not None and not still_wanted(stream.stream_id):
                return  # the adapter stopped waiting for this answer (timeout)
            publication = self.hub.get(self.name, name)
            if publication is None:
                self._start(client, stream, name, publish_type)
            else:
                self._take_over(
                    publication, client, stream, name, publish_type, why=f"idle {idle}s"
                )

        def refused(failure: Failure) -> None:
            if failure.check(CancelledError):
                return  # the waiting publisher left; nobody listens any more
            failure.trap(TakeoverRefused)
            self._log.info(
                "Publisher {new!r} refused for {app}/{name}: the current one kept sending",
                new=client,
                app=self.name,
                name=name,
            )
            raise busy

        # The waiting publisher leaves (stream closed, connection lost): forget it.
        stream.add_cleanup(waited.cancel)
        return waited.addCallbacks(go_ahead, refused)

    def _current(self, name: str) -> object:
        publication = self.hub.get(self.name, name)
        return publication.publisher if publication is not None else None

    def _start(self, client: object, stream: NetStream, name: str, publish_type: str) -> None:
        try:
            publication = self.hub.publish(self.name, name, client)
        except StreamBusy:
            raise Rejected(
                "NetStream.Publish.BadName", f"{name} is already being published."
            ) from None
        self._attach(publication, client, stream, name, publish_type, append=False)

    def _take_over(
        self,
        publication: Publication,
        client: object,
        stream: NetStream,
        name: str,
        publish_type: str,
        why: str,
    ) -> None:
        old = self._publishing.get(name)
        self.hub.replace_publisher(publication, client)
        self._log.warn(
            "Takeover of {app}/{name} ({why}): {old!r} replaced by {new!r}",
            app=self.name,
            name=name,
            why=why,
            old=old.client if old else None,
            new=client,
        )
        if old is not None:
            if isinstance(old.client, PublisherSession):
                old.client.evict_publisher(
                    old.stream.stream_id,
                    name,
                    "NetStream.Publish.BadName",
                    f"{name} was taken over by another publisher.",
                )
            # Its cleanups now: its recording is finished before the new
            # publisher's continues the same file.
            old.stream.close()
        self._attach(publication, client, stream, name, publish_type, append=True)

    def _attach(
        self,
        publication: Publication,
        client: object,
        stream: NetStream,
        name: str,
        publish_type: str,
        *,
        append: bool,
    ) -> None:
        """Route ``stream``'s messages into ``publication`` (and a recording)."""
        entry = _Publishing(client, stream)
        self._publishing[name] = entry

        def release() -> None:
            if self._publishing.get(name) is entry:
                del self._publishing[name]
            if publication.publisher is client:
                self.hub.unpublish(publication, client)
                self.waits.released(name)

        stream.add_cleanup(release)
        recorder = None
        recordings = self.recordings
        wants = publish_type in ("record", "append")
        if (wants or self.config.record == "all") and recordings is not None:
            # After a takeover the recording goes on in the same file.
            recorder = recordings.start(self.name, name, append=append or publish_type == "append")
            stream.add_cleanup(lambda: recordings.finish(recorder))
            self._log.info(
                "Recording {app}/{name} into {path}",
                app=self.name,
                name=name,
                path=str(recorder.path),
            )

        def feed(message: Message) -> None:
            self.hub.feed(publication, message)
            if recorder is not None:
                recorder.write(message)

        def set_metadata(message: Message) -> None:
            self.hub.set_metadata(publication, message)
            if recorder is not None:
                recorder.write(message)

        stream.media_sink = feed
        stream.metadata_sink = set_metadata

    def play(self, client: object, stream: NetStream, name: str, start: float) -> None:
        """Subscribe to ``name``; wait for its publisher if so configured."""
        if self.hub.get(self.name, name) is None and not self.config.wait_for_publisher:
            raise Rejected("NetStream.Play.StreamNotFound", f"{name} is not being published.")
        limit = self.config.max_players
        if limit and self.players >= limit:
            raise Rejected(
                "NetStream.Play.Failed", f"{self.name} has reached its limit of {limit} players."
            )
        self.players += 1
        self.hub.subscribe(self.name, name, stream)

        def release() -> None:
            self.players -= 1
            self.hub.unsubscribe(self.name, name, stream)

        stream.add_cleanup(release)

    def stream_length(self, client: object, name: str) -> float:
        """Live streams have no length."""
        return 0.0

    def disconnect(self, client: object) -> None:
        """Nothing to release beyond the streams' cleanups."""


#: File extensions that FMS-style ``mp4:`` names may use.
MP4_EXTENSIONS = (".mp4", ".f4v", ".m4v", ".mov", ".m4a")


def resolve_media_path(root: Path, name: str) -> Path | None:
    """Map an FMS-style play name to a file under ``root``; None if outside it.

    ``name`` or ``flv:name`` is ``name.flv``; ``mp4:file.ext`` is that file;
    ``mp3:name`` is ``name.mp3``.  ``..``, absolute names and symlinks that
    leave the root are refused.
    """
    prefix, sep, rest = name.partition(":")
    if sep and prefix in ("flv", "mp4", "mp3"):
        name = rest
    else:
        prefix = "flv"
    if not name or name.startswith("/") or "\\" in name or "\0" in name:
        return None
    if prefix == "flv" and not name.lower().endswith(".flv"):
        name += ".flv"
    elif prefix == "mp3" and not name.lower().endswith(".mp3"):
        name += ".mp3"
    elif prefix == "mp4" and not name.lower().endswith(MP4_EXTENSIONS):
        name += ".mp4"
    root = root.resolve()
    candidate = (root / name).resolve()
    if candidate != root and root not in candidate.parents:
        return None
    return candidate


@implementer(IStreamApplication)
class VodApplication:
    """Play FLV and MP4-family files under the media root (see ``flashstream.vod``)."""

    _log = Logger()

    def __init__(
        self,
        config: ApplicationConfig,
        media_root: Path,
        *,
        reactor: IReactorTime | None = None,
        cache: SourceCache | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self.media_root = media_root
        #: The timers' reactor (None: the playing connection's factory's).
        self.reactor = reactor
        #: Indexes of recently played files, shared by all their viewers.
        self.cache = cache if cache is not None else SourceCache()

    def reconfigure(self, config: ApplicationConfig) -> None:
        """Apply a changed configuration (same name and kind); clients stay."""
        self.config = config

    def connect(self, client: object) -> None:
        """Everyone may connect."""

    def publish(self, client: object, stream: NetStream, name: str, publish_type: str) -> None:
        """Files are not published into ``vod``."""
        raise Rejected("NetStream.Publish.Denied", f"{self.name} is a play-only application.")

    def source(self, name: str) -> MediaSource:
        """The indexed file ``name`` plays; Rejected if missing or unplayable."""
        path = resolve_media_path(self.media_root, name)
        if path is None or not path.is_file():
            raise Rejected("NetStream.Play.StreamNotFound", f"{name} was not found.")
        try:
            return self.cache.get(path)
        except (MediaError, OSError) as error:
            self._log.warn("Cannot play {path}: {error}", path=str(path), error=str(error))
            raise Rejected("NetStream.Play.Failed", f"{name} cannot be played.") from None

    def _maybe_source(self, name: str) -> MediaSource | None:
        try:
            return self.source(name)
        except Rejected:
            return None

    def play(self, client: object, stream: NetStream, name: str, start: float) -> None:
        """Play ``name`` from ``start`` ms (negative: from the beginning; -1000: live only)."""
        if start == -1000:
            raise Rejected("NetStream.Play.StreamNotFound", f"{name} is not a live stream.")
        source = self.source(name)
        from .vod.player import VodPlayer

        reactor = self.reactor
        if reactor is None:
            reactor = cast(Any, client).factory.reactor
        player = VodPlayer(
            stream,
            source,
            cast(IReactorTime, reactor),
            name=name,
            open_source=self._maybe_source,
        )
        stream.recorded = True
        stream.playback = player
        stream.add_cleanup(player.close)
        player.start(start, stream.play_duration)

    def stream_length(self, client: object, name: str) -> float:
        """The file's duration in seconds (0 if it cannot be played)."""
        source = self._maybe_source(name)
        return source.duration if source is not None else 0.0

    def disconnect(self, client: object) -> None:
        """Nothing to release (streams close their players)."""


def builtin_application(
    config: ApplicationConfig,
    hub: StreamHub,
    media_root: Path,
    *,
    reactor: IReactorTime | None = None,
    recordings: Recordings | None = None,
    cache: SourceCache | None = None,
) -> IStreamApplication:
    """Make the built-in application of ``config.kind``."""
    if config.kind == "vod":
        return VodApplication(config, media_root, reactor=reactor, cache=cache)
    return LiveApplication(config, hub, recordings, reactor=reactor)


class IApplicationPlugin(IPlugin):
    """A plugin (in someone's ``twisted/plugins/``) that provides applications."""

    def make_applications(hub: StreamHub, media_root: Path) -> list[IStreamApplication]:
        """Return the applications this plugin serves."""


def load_plugins(hub: StreamHub, media_root: Path) -> list[IStreamApplication]:
    """Discover application plugins (call from makeService only)."""
    found: list[IStreamApplication] = []
    for plugin in getPlugins(IApplicationPlugin):
        found.extend(plugin.make_applications(hub, media_root))
    return found
