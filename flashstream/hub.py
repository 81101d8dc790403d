# -*- test-case-name: tests.test_hub -*-
"""
The stream hub: one per server, shared by every listener and transport.

A ``Publication`` is one live stream (application + name).  It keeps what a
player joining late needs to start at once -- the metadata, the AVC/AAC
sequence headers and the current keyframe group (bounded) -- and fans each
message out to its subscribers.  A player may subscribe before the publisher
arrives; it is told when the stream starts and when it ends.

Every message a publisher sends goes through the publication's
:class:`~flashstream.rtmp.timestamps.Timeline` before it is cached or fanned
out, so players see 64-bit timestamps that never go backwards on any track,
also across a publisher takeover (:meth:`StreamHub.replace_publisher`).

The hub does no I/O.  A subscriber that raises is logged and dropped so one
bad callee cannot corrupt the others.

Writes are batched per publisher read: while :meth:`StreamHub.batch` is
open (the RTMP adapter opens it around each ``dataReceived``), a player's
:meth:`StreamHub.flush_soon` only notes its flush, and each noted flush runs
once when the batch closes.  Several messages fanned out in one read thus
reach each player's socket in one write.  Outside a batch a flush runs at
once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import attrs
from twisted.logger import Logger

from .interfaces import ISubscriber
from .rtmp import media
from .rtmp.messages import Message, MessageType
from .rtmp.prechunk import SharedMessage, share
from .rtmp.timestamps import Timeline, TimestampPolicy


class StreamBusy(Exception):
    """The stream name is already being published."""


@attrs.frozen
class HubLimits:
    """Bounds on what the hub caches per stream."""

    #: Most messages kept in the keyframe-group cache.
    gop_max_messages: int = 4096
    #: Most payload bytes kept in the keyframe-group cache.
    gop_max_bytes: int = 32 * 1024 * 1024
    #: When publishers' timestamps are corrected (per track).
    timestamps: TimestampPolicy = TimestampPolicy()


@attrs.define(eq=False)
class Publication:
    """One live stream being published, with its late-joiner cache."""

    app: str
    name: str
    publisher: object
    limits: HubLimits
    metadata: Message | None = None
    video_header: Message | None = None
    audio_header: Message | None = None
    gop: list[Message] = attrs.Factory(list)
    gop_bytes: int = 0
    subscribers: list[ISubscriber] = attrs.Factory(list)
    messages_in: int = 0
    bytes_in: int = 0
    #: Publishers that took this stream over from another.
    takeovers: int = 0
    #: Per-track timestamp correction, kept across publisher takeovers.
    timeline: Timeline = attrs.field(init=False)

    @timeline.default
    def _new_timeline(self) -> Timeline:
        return Timeline(self.limits.timestamps)

    def startup_messages(self) -> list[Message]:
        """What a joining player gets first: metadata, headers, keyframe group.

        Metadata and headers are stamped with the group's first timestamp so
        the player sees monotonic time.
        """
        if self.gop:
            stamp = self.gop[0].timestamp
        else:
            stamp = max(
                (m.timestamp for m in (self.video_header, self.audio_header) if m), default=0
            )
        out = [
            attrs.evolve(m, timestamp=stamp)
            for m in (self.metadata, self.audio_header, self.video_header)
            if m is not None
        ]
        out.extend(self.gop)
        return out

    def _remember(self, message: Message) -> None:
        type_id = message.type_id
        payload = message.payload
        if type_id not in (MessageType.AUDIO, MessageType.VIDEO):
            return  # data messages (cue points, text) are live-only
        if media.is_sequence_header(type_id, payload):
            if type_id == MessageType.VIDEO:
                self.video_header = message
                self._clear_gop()
            else:
                self.audio_header = message
            return
        if type_id == MessageType.VIDEO and media.is_keyframe(payload):
            self._clear_gop()
        elif not self.gop:
            return  # no keyframe yet (or audio only): start players at the live edge
        if (
            len(self.gop) >= self.limits.gop_max_messages
            or self.gop_bytes + len(payload) > self.limits.gop_max_bytes
        ):
            self._clear_gop()
            return
        self.gop.append(message)
        self.gop_bytes += len(payload)

    def _clear_gop(self) -> None:
        self.gop = []
        self.gop_bytes = 0


class StreamHub:
    """Publish, subscribe and fan out live streams by (app, name)."""

    _log = Logger()

    def __init__(self, limits: HubLimits = HubLimits()) -> None:
        self.limits = limits
        self._publications: dict[tuple[str, str], Publication] = {}
        self._waiting: dict[tuple[str, str], list[ISubscriber]] = {}
        #: Called with every message a publisher feeds (QoS reads codecs and rates).
        self.taps: list[Callable[[Publication, Message], None]] = []
        #: Publisher takeovers on this hub so far.
        self.takeovers = 0
        #: Open :meth:`batch` blocks, and the flushes noted meanwhile (in order).
        self._batching = 0
        self._flushes: dict[Callable[[], None], None] = {}

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold :meth:`flush_soon` flushes until the outermost block ends."""
        self._batching += 1
        try:
            yield
        finally:
            self._batching -= 1
            if not self._batching:
                self._run_flushes()

    def flush_soon(self, flush: Callable[[], None]) -> None:
        """Run ``flush`` when the current batch ends (now if there is none).

        A flush noted several times in one batch runs once.
        """
        if self._batching:
            self._flushes[flush] = None
        else:
            flush()

    def _run_flushes(self) -> None:
        while self._flushes:
            flushes, self._flushes = self._flushes, {}
            for flush in flushes:
                try:
                    flush()
                except Exception:
                    self._log.failure("Flush {flush!r} failed", flush=flush)

    def publications(self) -> list[Publication]:
        """Every stream being published now."""
        return list(self._publications.values())

    def get(self, app: str, name: str) -> Publication | None:
        """The publication of ``app/name``, if any."""
        return self._publications.get((app, name))

    def publish(self, app: str, name: str, publisher: object) -> Publication:
        """Start a publication; raise ``StreamBusy`` if the name is taken."""
        key = (app, name)
        if key in self._publications:
            raise StreamBusy(f"{app}/{name} is already being published")
        publication = Publication(app, name, publisher, self.limits)
        self._publications[key] = publication
        self._log.info("Publishing {app}/{name}", app=app, name=name)
        waiting = self._waiting.pop(key, [])
        for subscriber in waiting:
            publication.subscribers.append(subscriber)
            self._deliver(publication, subscriber, "stream_started", True)
        return publication

    def unpublish(self, publication: Publication, publisher: object | None = None) -> None:
        """End a publication; its subscribers wait for the next publisher.

        With ``publisher``, only if that is still the publication's publisher
        (a replaced publisher's late cleanup changes nothing).
        """
        key = (publication.app, publication.name)
        if self._publications.get(key) is not publication:
            return
        if publisher is not None and publication.publisher is not publisher:
            return
        del self._publications[key]
        counts = publication.timeline.counts
        self._log.info(
            "Unpublished {app}/{name} after {count} messages (timestamps: "
            "rebased {rebased}, held {held}, wraps {wraps}; takeovers {takeovers})",
            app=publication.app,
            name=publication.name,
            count=publication.messages_in,
            rebased=counts.rebased,
            held=counts.held,
            wraps=counts.wraps,
            takeovers=publication.takeovers,
        )
        subscribers, publication.subscribers = publication.subscribers, []
        for subscriber in subscribers:
            if self._deliver(publication, subscriber, "stream_ended"):
                self._waiting.setdefault(key, []).append(subscriber)

    def replace_publisher(self, publication: Publication, publisher: object) -> None:
        """A new publisher takes ``publication`` over; its subscribers stay.

        The late-joiner cache is emptied (the new publisher sends its own
        metadata and headers), the timeline continues each track after the
        old publisher's last timestamp, and every subscriber gets
        ``publisher_replaced`` (a clean cut: video resumes on a keyframe).
        """
        old = publication.publisher
        publication.publisher = publisher
        publication.takeovers += 1
        self.takeovers += 1
        publication.timeline.new_source()
        publication.metadata = publication.video_header = publication.audio_header = None
        publication._clear_gop()
        self._log.info(
            "Publisher of {app}/{name} replaced ({old!r} by {new!r}); "
            "{count} players continue (takeover {takeovers})",
            app=publication.app,
            name=publication.name,
            old=old,
            new=publisher,
            count=len(publication.subscribers),
            takeovers=publication.takeovers,
        )
        for subscriber in list(publication.subscribers):
            self._deliver(publication, subscriber, "publisher_replaced")

    def subscribe(self, app: str, name: str, subscriber: ISubscriber) -> bool:
        """Subscribe to ``app/name``; return True if it is live now.

        A live stream's subscriber receives ``stream_started(False)`` and the
        startup messages at once; otherwise it waits for the publisher.
        """
        publication = self._publications.get((app, name))
        if publication is None:
            self._waiting.setdefault((app, name), []).append(subscriber)
            return False
        publication.subscribers.append(subscriber)
        if self._deliver(publication, subscriber, "stream_started", False):
            for message in publication.startup_messages():
                if not self._deliver(publication, subscriber, "media", message):
                    break
        return True

    def unsubscribe(self, app: str, name: str, subscriber: ISubscriber) -> None:
        """Stop delivering ``app/name`` to ``subscriber`` (waiting or live)."""
        publication = self._publications.get((app, name))
        if publication is not None and subscriber in publication.subscribers:
            publication.subscribers.remove(subscriber)
        waiting = self._waiting.get((app, name))
        if waiting and subscriber in waiting:
            waiting.remove(subscriber)
            if not waiting:
                del self._waiting[(app, name)]

    def set_metadata(self, publication: Publication, message: Message) -> None:
        """Replace the stream's ``onMetaData`` (kept for late joiners) and fan it out."""
        message = self._restamp(publication, message)
        publication.metadata = message
        self._fan_out(publication, message)

    def feed(self, publication: Publication, message: Message) -> None:
        """Take one message from the publisher and fan it out.

        Its timestamp goes through the publication's timeline, then it is
        wrapped once (:func:`~flashstream.rtmp.prechunk.share`) so every
        subscriber, and the keyframe-group cache, shares its chunk bytes.
        """
        self._fan_out(publication, self._restamp(publication, message))

    def _restamp(self, publication: Publication, message: Message) -> SharedMessage:
        stamp = publication.timeline.stamp(message.type_id, message.timestamp)
        if stamp != message.timestamp:
            message = attrs.evolve(message, timestamp=stamp)
        return share(message)

    def _fan_out(self, publication: Publication, message: Message) -> None:
        publication.messages_in += 1
        publication.bytes_in += len(message.payload)
        publication._remember(message)
        for tap in self.taps:
            try:
                tap(publication, message)
            except Exception:
                self._log.failure("Hub tap {tap!r} failed", tap=tap)
        for subscriber in list(publication.subscribers):
            try:
                subscriber.media(message)
            except Exception:
                self._failed(publication, subscriber, "media")

    def _deliver(
        self, publication: Publication, subscriber: ISubscriber, method: str, *args: object
    ) -> bool:
        try:
            getattr(subscriber, method)(*args)
        except Exception:
            self._failed(publication, subscriber, method)
            return False
        return True

    def _failed(self, publication: Publication, subscriber: ISubscriber, method: str) -> None:
        """Log the exception being handled and drop the subscriber that raised it."""
        self._log.failure(
            "Subscriber {subscriber!r} of {app}/{name} failed in {method}; dropping it",
            subscriber=subscriber,
            app=publication.app,
            name=publication.name,
            method=method,
        )
        if subscriber in publication.subscribers:
            publication.subscribers.remove(subscriber)
