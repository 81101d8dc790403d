"""
The stream hub: publish/subscribe by name, fan-out, the late-joiner cache
and isolation of failing subscribers.  Plain fakes, no I/O.
"""

from __future__ import annotations

from typing import cast

import pytest
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from flashstream.hub import HubLimits, StreamBusy, StreamHub
from flashstream.interfaces import ISubscriber
from flashstream.rtmp.messages import Message

META = Message(18, 1, 0, b"\x02\x00\x0aonMetaData")
AVC_HEADER = Message(9, 1, 0, b"\x17\x00\x00\x00\x00\x01\x64")
AAC_HEADER = Message(8, 1, 0, b"\xaf\x00\x12\x10")


def key(ts: int) -> Message:
    """A video keyframe at ``ts``."""
    return Message(9, 1, ts, b"\x17\x01\x00\x00\x00key")


def inter(ts: int) -> Message:
    """A video inter frame at ``ts``."""
    return Message(9, 1, ts, b"\x27\x01\x00\x00\x00inter")


def audio(ts: int) -> Message:
    """An AAC frame at ``ts``."""
    return Message(8, 1, ts, b"\xaf\x01audio")


@implementer(ISubscriber)
class Recorder:
    """A subscriber that records what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Message | bool | None]] = []

    def stream_started(self, publish_notify: bool) -> None:
        """Record the start."""
        self.calls.append(("started", publish_notify))

    def media(self, message: Message) -> None:
        """Record a message."""
        self.calls.append(("media", message))

    def stream_ended(self) -> None:
        """Record the end."""
        self.calls.append(("ended", None))

    def publisher_replaced(self) -> None:
        """Record a takeover."""
        self.calls.append(("replaced", None))

    def messages(self) -> list[Message]:
        """Just the media messages."""
        return [m for kind, m in self.calls if kind == "media" and isinstance(m, Message)]


@implementer(ISubscriber)
class Exploding(Recorder):
    """A subscriber whose media() raises."""

    def media(self, message: Message) -> None:
        """Fail."""
        raise RuntimeError("boom")


def test_recorder_provides_isubscriber() -> None:
    """The test fake really implements the interface the hub relies on."""
    assert verifyObject(ISubscriber, Recorder())


def test_fan_out_to_every_subscriber() -> None:
    """Each message reaches every subscriber of the stream, in order."""
    hub = StreamHub()
    publication = hub.publish("live", "a", object())
    players = [Recorder(), Recorder()]
    for player in players:
        assert hub.subscribe("live", "a", player) is True
    frames = [key(0), audio(10), inter(40)]
    for frame in frames:
        hub.feed(publication, frame)
    for player in players:
        assert player.calls[0] == ("started", False)
        assert player.messages() == frames


def test_name_in_use_is_refused_and_names_are_per_application() -> None:
    """A second publisher of app/name raises StreamBusy; another app may use it."""
    hub = StreamHub()
    hub.publish("live", "a", object())
    with pytest.raises(StreamBusy):
        hub.publish("live", "a", object())
    hub.publish("other", "a", object())


def test_late_joiner_gets_metadata_headers_and_keyframe_group() -> None:
    """
    A player joining mid-stream receives metadata, AAC and AVC headers
    (stamped with the group's first timestamp), then the frames since the
    last keyframe, then live frames.
    """
    hub = StreamHub()
    publication = hub.publish("live", "a", object())
    hub.set_metadata(publication, META)
    for message in (AVC_HEADER, AAC_HEADER, key(0), inter(40), key(1000), audio(1010), inter(1040)):
        hub.feed(publication, message)
    player = Recorder()
    hub.subscribe("live", "a", player)
    got = player.messages()
    assert [m.payload for m in got[:3]] == [META.payload, AAC_HEADER.payload, AVC_HEADER.payload]
    assert {m.timestamp for m in got[:3]} == {1000}
    assert got[3:] == [key(1000), audio(1010), inter(1040)]
    hub.feed(publication, inter(1080))
    assert player.messages()[-1] == inter(1080)


def test_no_group_before_the_first_keyframe() -> None:
    """Frames before any keyframe (and audio-only streams) are not cached."""
    hub = StreamHub()
    publication = hub.publish("live", "a", object())
    for message in (AAC_HEADER, audio(0), inter(40), audio(60)):
        hub.feed(publication, message)
    assert publication.gop == []
    assert publication.startup_messages() == [AAC_HEADER]


def test_group_cache_is_bounded() -> None:
    """Past gop_max_messages the cache is emptied until the next keyframe."""
    hub = StreamHub(HubLimits(gop_max_messages=3))
    publication = hub.publish("live", "a", object())
    for message in (key(0), inter(40), inter(80), inter(120), inter(160)):
        hub.feed(publication, message)
    assert publication.gop == []
    hub.feed(publication, key(200))
    assert publication.gop == [key(200)]


def test_group_cache_byte_bound() -> None:
    """Past gop_max_bytes the cache is emptied too."""
    hub = StreamHub(HubLimits(gop_max_bytes=15))
    publication = hub.publish("live", "a", object())
    hub.feed(publication, key(0))
    hub.feed(publication, inter(40))
    assert publication.gop == []


def test_waiting_player_starts_when_publisher_arrives() -> None:
    """A subscriber of an unpublished name waits, then is told publish_notify=True."""
    hub = StreamHub()
    player = Recorder()
    assert hub.subscribe("live", "a", player) is False
    assert player.calls == []
    publication = hub.publish("live", "a", object())
    assert player.calls == [("started", True)]
    hub.feed(publication, key(0))
    assert player.messages() == [key(0)]


def test_unpublish_tells_players_and_they_wait_for_the_next_publisher() -> None:
    """Publisher loss reaches every player; the next publisher restarts them."""
    hub = StreamHub()
    first = hub.publish("live", "a", object())
    player = Recorder()
    hub.subscribe("live", "a", player)
    hub.unpublish(first)
    assert hub.get("live", "a") is None
    hub.publish("live", "a", object())
    assert player.calls == [("started", False), ("ended", None), ("started", True)]


def test_unsubscribe_stops_delivery_live_and_waiting() -> None:
    """After unsubscribe a player gets nothing, whether it was live or waiting."""
    hub = StreamHub()
    waiting = Recorder()
    hub.subscribe("live", "a", waiting)
    hub.unsubscribe("live", "a", waiting)
    publication = hub.publish("live", "a", object())
    live = Recorder()
    hub.subscribe("live", "a", live)
    hub.unsubscribe("live", "a", live)
    hub.feed(publication, key(0))
    assert waiting.calls == []
    assert live.messages() == []


def test_unpublish_of_a_replaced_publication_is_ignored() -> None:
    """Unpublishing a stale publication object does not remove the current one."""
    hub = StreamHub()
    old = hub.publish("live", "a", object())
    hub.unpublish(old)
    current = hub.publish("live", "a", object())
    hub.unpublish(old)
    assert hub.get("live", "a") is current


class FailingSubscriberTests(SynchronousTestCase):
    """A subscriber that raises is logged and dropped; the others go on."""

    def test_failing_subscriber_is_dropped_and_logged(self) -> None:
        """The exception is logged with the stream name and the others still get media."""
        observer = EventLoggingObserver.createWithCleanup(cast(TestCase, self), globalLogPublisher)
        hub = StreamHub()
        publication = hub.publish("live", "a", object())
        bad, good = Exploding(), Recorder()
        hub.subscribe("live", "a", bad)
        hub.subscribe("live", "a", good)
        hub.feed(publication, key(0))
        hub.feed(publication, inter(40))
        self.assertEqual(good.messages(), [key(0), inter(40)])
        self.assertNotIn(bad, publication.subscribers)
        failures = [e for e in observer if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0]["name"], "a")
        self.flushLoggedErrors(RuntimeError)


def test_replace_publisher_keeps_players_and_continues_time() -> None:
    """
    A takeover keeps the subscribers (told ``publisher_replaced``, never
    ``stream_ended``), empties the late-joiner cache, counts itself, and the
    new publisher's timestamps (starting again at 0) continue after the old
    publisher's on each track.
    """
    hub = StreamHub()
    old, new = object(), object()
    publication = hub.publish("live", "a", old)
    player = Recorder()
    hub.subscribe("live", "a", player)
    for message in (META, AAC_HEADER, AVC_HEADER, key(1000), audio(1010), inter(1040)):
        hub.feed(publication, message)
    hub.replace_publisher(publication, new)
    assert publication.publisher is new
    assert (publication.takeovers, hub.takeovers) == (1, 1)
    assert publication.startup_messages() == []
    hub.unpublish(publication, old)  # the old publisher's late cleanup: ignored
    assert hub.get("live", "a") is publication
    for message in (AVC_HEADER, key(0), audio(10), inter(40)):
        hub.feed(publication, message)
    assert ("ended", None) not in player.calls
    kinds = [kind for kind, _ in player.calls]
    assert kinds.index("replaced") == 7
    after = player.messages()[6:]
    assert [m.timestamp for m in after] == [1080, 1080, 1090, 1120]
    hub.unpublish(publication, new)
    assert hub.get("live", "a") is None


def test_backward_timestamps_reach_players_monotonic() -> None:
    """A publisher whose video jumps back 10 s: players see video time keep going."""
    hub = StreamHub()
    publication = hub.publish("live", "a", object())
    player = Recorder()
    hub.subscribe("live", "a", player)
    for message in (key(10000), inter(10040), inter(10080), key(0), inter(40)):
        hub.feed(publication, message)
    assert [m.timestamp for m in player.messages()] == [10000, 10040, 10080, 10120, 10160]
    assert publication.timeline.counts.rebased == 1


def test_flush_soon_runs_at_once_outside_a_batch() -> None:
    """Without an open batch a flush request runs immediately."""
    hub = StreamHub()
    runs: list[str] = []
    hub.flush_soon(lambda: runs.append("a"))
    assert runs == ["a"]


def test_batch_runs_each_noted_flush_once_at_the_end() -> None:
    """
    Inside (nested) batches flushes wait; when the outermost batch ends each
    distinct flush runs once, in the order first noted, and a flush noted
    while the flushes run (a flush that feeds again) still runs.
    """
    hub = StreamHub()
    runs: list[str] = []

    def first() -> None:
        runs.append("first")

    def second() -> None:
        runs.append("second")
        if runs.count("second") == 1:
            with hub.batch():
                hub.flush_soon(first)

    with hub.batch():
        hub.flush_soon(first)
        with hub.batch():
            hub.flush_soon(second)
            hub.flush_soon(first)
        assert runs == []
        hub.flush_soon(second)
    assert runs == ["first", "second", "first"]


class BatchTests(SynchronousTestCase):
    """A flush that raises does not stop the others."""

    def test_failing_flush_is_logged_and_the_others_run(self) -> None:
        """The failure is logged; the other flushes of the batch still run."""
        observer = EventLoggingObserver.createWithCleanup(cast(TestCase, self), globalLogPublisher)
        hub = StreamHub()
        runs: list[str] = []

        def bad() -> None:
            raise RuntimeError("boom")

        with hub.batch():
            hub.flush_soon(bad)
            hub.flush_soon(lambda: runs.append("good"))
        self.assertEqual(runs, ["good"])
        self.assertEqual(len([e for e in observer if "log_failure" in e]), 1)
        self.flushLoggedErrors(RuntimeError)
