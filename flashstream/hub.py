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

Players in the same state go further (:mod:`flashstream.lockstep`): a
publication's :class:`~flashstream.lockstep.LockstepGroup` builds each audio
and video message's chunks once for all its members and writes them once
per batch; only *loose* subscribers (recorders, HTTP-FLV, players whose gate
has something to decide) get :meth:`~ISubscriber.media` calls.  After each
batch the hub regroups loose players that caught up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

import attrs
from twisted.logger import Logger

from .interfaces import ISubscriber
from .lockstep import LockstepGroup, LockstepMember
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
    #: Subscribers the hub hands each message (those not in a group).
    loose: dict[ISubscriber, None] = attrs.Factory(dict)
    #: Lockstep groups of players (usually one).
    groups: list[LockstepGroup] = attrs.Factory(list)
    _candidates: set[object] = attrs.Factory(set)

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

    # -- subscribers and lockstep groups -------------------------------------

    def add(self, subscriber: ISubscriber) -> None:
        """Subscribe ``subscriber`` (loose until :meth:`regroup`)."""
        self.subscribers.append(subscriber)
        self.loose[subscriber] = None
        if isinstance(subscriber, LockstepMember):
            self._candidates.add(subscriber)

    def remove(self, subscriber: ISubscriber) -> None:
        """Unsubscribe ``subscriber`` (leaving its group first)."""
        if subscriber in self._candidates:
            group = cast(LockstepMember, subscriber).lockstep
            if group is not None:
                group.leave(cast(LockstepMember, subscriber))
            self._candidates.discard(subscriber)
        self.loose.pop(subscriber, None)
        if subscriber in self.subscribers:
            self.subscribers.remove(subscriber)

    def remove_all(self) -> list[ISubscriber]:
        """Unsubscribe everyone; return who was subscribed, in order."""
        self.dissolve()
        subscribers, self.subscribers = self.subscribers, []
        self.loose = {}
        self._candidates = set()
        return subscribers

    def dissolve(self) -> None:
        """Every group's members become loose (their unsent chunks queued)."""
        groups, self.groups = self.groups, []
        for group in groups:
            group.dissolve()

    def _loosen(self, member: LockstepMember) -> None:
        if member in self._candidates:
            self.loose[cast(ISubscriber, member)] = None

    def regroup(self) -> None:
        """Merge groups in the same state; let loose players that can join one.

        Runs between batches, when no group holds unsent chunks.
        """
        by_key: dict[tuple[object, ...], LockstepGroup] = {}
        groups: list[LockstepGroup] = []
        for group in self.groups:
            if not group.members:
                continue
            if not group.idle:
                groups.append(group)
                continue
            key = group.key()
            same = by_key.get(key)
            if same is None:
                by_key[key] = group
                groups.append(group)
            else:
                same.merge(group)
        candidates = self._candidates
        for subscriber in list(self.loose):
            if subscriber not in candidates:
                continue
            member = cast(LockstepMember, subscriber)
            wanted = member.lockstep_key()
            if wanted is None:
                continue
            joining = by_key.get(wanted)
            if joining is None:
                joining = by_key[wanted] = LockstepGroup(wanted, self._loosen)
                groups.append(joining)
            del self.loose[subscriber]
            joining.join(member)
        self.groups = groups


class StreamHub:
    """Publish, subscribe and fan out live streams by (app, name)."""

    _log = Logger()

    def __init__(self, limits: HubLimits = HubLimits(), *, lockstep: bool = True) -> None:
        self.limits = limits
        #: Whether players in the same state are grouped (:mod:`flashstream.lockstep`).
        self.lockstep = lockstep
        self._publications: dict[tuple[str, str], Publication] = {}
        self._waiting: dict[tuple[str, str], list[ISubscriber]] = {}
        #: Called with every message a publisher feeds (QoS reads codecs and rates).
        self.taps: list[Callable[[Publication, Message], None]] = []
        #: Publisher takeovers on this hub so far.
        self.takeovers = 0
        #: Open :meth:`batch` blocks, and the flushes noted meanwhile (in order).
        self._batching = 0
        self._flushes: dict[Callable[[], None], None] = {}
        self._regroups: dict[Publication, None] = {}

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
        while self._flushes or self._regroups:
            flushes, self._flushes = self._flushes, {}
            for flush in flushes:
                try:
                    flush()
                except Exception:
                    self._log.failure("Flush {flush!r} failed", flush=flush)
            if not self._flushes:
                regroups, self._regroups = self._regroups, {}
                for publication in regroups:
                    self._regroup(publication)

    def _regroup(self, publication: Publication) -> None:
        try:
            publication.regroup()
        except Exception:
            self._log.failure(
                "Regrouping the players of {app}/{name} failed",
                app=publication.app,
                name=publication.name,
            )
            publication.dissolve()

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
            publication.add(subscriber)
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
        for subscriber in publication.remove_all():
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
        publication.dissolve()
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
        publication.add(subscriber)
        if self._deliver(publication, subscriber, "stream_started", False):
            for message in publication.startup_messages():
                if not self._deliver(publication, subscriber, "media", message):
                    break
        return True

    def unsubscribe(self, app: str, name: str, subscriber: ISubscriber) -> None:
        """Stop delivering ``app/name`` to ``subscriber`` (waiting or live)."""
        publication = self._publications.get((app, name))
        if publication is not None:
            publication.remove(subscriber)
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
        if publication.groups:
            if (
                message.__class__ is SharedMessage
                and not cast(SharedMessage, message).sequence_header
            ):
                for group in list(publication.groups):
                    if group.add(cast(SharedMessage, message)):
                        self.flush_soon(group.flush)
                    else:  # its members take this one (and go on) alone
                        publication.groups.remove(group)
                        group.dissolve()
            else:
                publication.dissolve()
        for subscriber in list(publication.loose):
            try:
                subscriber.media(message)
            except Exception:
                self._failed(publication, subscriber, "media")
        if self.lockstep and publication.loose and publication._candidates:
            if self._batching:
                self._regroups[publication] = None
            else:
                self._regroup(publication)

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
        publication.remove(subscriber)
