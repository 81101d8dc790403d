# trial's assertion methods and StringTransport are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""
Publisher takeover (:mod:`flashstream.takeover` and ``LiveApplication``)
and clean cuts for players, through the Twisted adapter on a Clock: the
rule, the waits, what the old and new publishers and the players receive.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from flashstream.rtmp import media
from flashstream.rtmp.limits import Limits
from flashstream.rtmp.messages import Message, MessageType
from flashstream.takeover import (
    Decision,
    TakeoverRefused,
    TakeoverWaits,
    WaitOutcome,
    decide,
    silent_for,
)
from tests.helpers import (
    AAC_SEQUENCE_HEADER,
    AVC_SEQUENCE_HEADER,
    aac_frame,
    avc_inter,
    avc_keyframe,
)
from tests.test_protocol import METADATA, Peer, ProtocolTestCase

NEW_AVC_HEADER = AVC_SEQUENCE_HEADER[:-1] + b"\xcf"


def test_decide() -> None:
    """never refuses, always replaces, idle replaces only a publisher silent long enough."""
    assert decide("never", 100.0, 5.0) is Decision.REFUSE
    assert decide("always", 0.0, 5.0) is Decision.REPLACE
    assert decide("idle", 5.0, 5.0) is Decision.REPLACE
    assert decide("idle", 4.9, 5.0) is Decision.WAIT


def test_silent_for_unknown_publisher() -> None:
    """A publisher that cannot say how long it was silent counts as never idle."""
    assert silent_for(object()) == 0.0


class WaitsTests(SynchronousTestCase):
    """TakeoverWaits on a Clock."""

    def setUp(self) -> None:
        """A clock, the waits and an old publisher whose last input we control."""
        self.clock = Clock()
        self.waits = TakeoverWaits(self.clock)
        self.last_input = 0.0

    def silent(self) -> float:
        """How long the fake old publisher has been silent."""
        return self.clock.seconds() - self.last_input

    def results(self, deferred: Deferred[WaitOutcome]) -> list[object]:
        """Collect what the Deferred fires with."""
        out: list[object] = []
        deferred.addBoth(out.append)
        return out

    def test_old_goes_quiet(self) -> None:
        """The old publisher was silent 1 s when the wait began: the waiter goes at 1 s."""
        self.last_input = -1.0
        got = self.results(self.waits.wait("a", self.silent, 2.0))
        self.clock.advance(0.9)
        self.assertEqual(got, [])
        self.clock.advance(0.1)
        self.assertEqual(got, [WaitOutcome.IDLE])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_old_keeps_sending(self) -> None:
        """The old publisher keeps sending: the waiter is refused after idle seconds."""
        got = self.results(self.waits.wait("a", self.silent, 2.0))
        for _ in range(4):
            self.clock.advance(0.5)
            self.last_input = self.clock.seconds()
        self.assertEqual(len(got), 1)
        failure = got[0]
        assert isinstance(failure, Failure)
        self.assertTrue(failure.check(TakeoverRefused))
        self.assertFalse(self.waits.waiting("a"))

    def test_old_goes_away(self) -> None:
        """released() lets the waiter go at once and cancels its timer."""
        got = self.results(self.waits.wait("a", self.silent, 2.0))
        self.waits.released("a")
        self.assertEqual(got, [WaitOutcome.FREED])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        """Cancelling the wait (the new publisher left) forgets it and its timer."""
        deferred = self.waits.wait("a", self.silent, 2.0)
        deferred.addErrback(lambda f: None)
        deferred.cancel()
        self.assertFalse(self.waits.waiting("a"))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.waits.released("a")  # nothing to release

    def test_one_waiter_per_name(self) -> None:
        """A second wait for the same name is a programming error (the app refuses first)."""
        self.waits.wait("a", self.silent, 2.0)
        with self.assertRaises(ValueError):
            self.waits.wait("a", self.silent, 2.0)


def first_video(peer: Peer) -> list[bytes]:
    """The video payloads a peer received that are not sequence headers."""
    return [p for p in peer.video_payloads() if not media.is_video_sequence_header(p)]


class TakeoverTestCase(ProtocolTestCase):
    """Helpers to publish a GOP and check what a player got."""

    def send_start(self, publisher: Peer, header: bytes = AVC_SEQUENCE_HEADER, t0: int = 0) -> None:
        """Metadata, sequence headers, keyframe, audio, inter frame from ``t0``."""
        publisher.client.set_data_frame(publisher.stream_id, METADATA)
        publisher.client.video(publisher.stream_id, t0, header)
        publisher.client.audio(publisher.stream_id, t0, AAC_SEQUENCE_HEADER)
        publisher.pump()
        publisher.video(t0, avc_keyframe(t0 // 40))
        publisher.audio(t0 + 10, aac_frame(0))
        publisher.video(t0 + 40, avc_inter(1))

    def media_after_clear(self, peer: Peer) -> list[Message]:
        """The media a peer received since its last ``clear``."""
        peer.deliver()
        return peer.client.media()


class AlwaysTests(TakeoverTestCase):
    """``takeover = "always"``."""

    takeover = "always"

    def test_new_publisher_replaces_old_and_players_continue(self) -> None:
        """
        A second publisher gets Publish.Start at once; the first gets
        Publish.BadName and is disconnected; the player gets no status, just
        the new publisher's metadata and header, then its keyframe, with
        timestamps continuing after the old publisher's; counted and logged.
        """
        old = self.publisher()
        player = self.peer()
        player.play("cam")
        self.send_start(old, t0=60000)
        player.client.clear()
        new = self.peer("ffmpeg_publish")
        new.publish("cam")
        self.assertEqual(new.client.status_codes(), ["NetStream.Publish.Start"])
        old.deliver()
        self.assertEqual(old.client.status_codes(), ["NetStream.Publish.BadName"])
        self.assertFalse(old.connected)
        # No producer left registered: a TLS transport only closes without one.
        self.assertIsNone(old.transport.producer)
        # Frames from the new publisher, whose clock starts at 0 again.
        new.client.set_data_frame(new.stream_id, {**METADATA, "width": 1280.0})
        new.client.video(new.stream_id, 0, NEW_AVC_HEADER)
        new.pump()
        new.video(0, avc_inter(7))  # an inter frame first: never shown mid-GOP
        new.video(40, avc_keyframe(8))
        new.audio(50, aac_frame(8))
        player.deliver()
        self.assertEqual(player.client.status_codes(), [])
        self.assertTrue(player.connected)
        received = player.client.media()
        self.assertEqual(received[0].type_id, MessageType.DATA_AMF0)
        self.assertEqual([p for p in player.video_payloads()], [NEW_AVC_HEADER, avc_keyframe(8)])
        stamps = [m.timestamp for m in received]
        self.assertEqual(stamps, sorted(stamps))
        self.assertGreater(stamps[0], 60040)
        publication = self.hub.get("live", "cam")
        assert publication is not None
        self.assertIs(publication.publisher, new.protocol)
        self.assertEqual(publication.takeovers, 1)
        self.assertTrue(self.formats("Takeover of {app}/{name}"))
        # The old publisher's end does not end the new publication.
        self.assertIs(self.hub.get("live", "cam"), publication)
        new.lose()
        self.assertIsNone(self.hub.get("live", "cam"))


class IdleTests(TakeoverTestCase):
    """``takeover = "idle"`` (the default) with 5 s."""

    def test_silent_publisher_is_replaced_at_once(self) -> None:
        """An old publisher silent for 5 s is replaced without waiting."""
        old = self.publisher()
        self.clock.advance(5.0)
        new = self.peer("ffmpeg_publish")
        new.publish("cam")
        self.assertEqual(new.client.status_codes(), ["NetStream.Publish.Start"])
        self.assertFalse(old.connected)

    def test_waits_for_the_old_publisher_to_fall_silent(self) -> None:
        """
        The old publisher was alive a moment ago: the new one's publish gets
        no answer yet; 5 s after the old one's last message (and within the
        5 s wait) the new one gets Publish.Start and the old one BadName.
        """
        old = self.publisher()
        player = self.peer()
        player.play("cam")
        self.clock.advance(1.0)
        old.video(1000, avc_keyframe(1))  # alive at 1 s
        self.clock.advance(0.5)
        new = self.peer("ffmpeg_publish")
        new.publish("cam")  # at 1.5 s: waits until 6 s
        self.assertEqual(new.client.status_codes(), [])
        self.clock.advance(4.4)
        new.deliver()
        self.assertEqual(new.client.status_codes(), [])
        self.clock.advance(0.1)  # 5 s since the old one's last message
        new.deliver()
        old.deliver()
        self.assertEqual(new.client.status_codes(), ["NetStream.Publish.Start"])
        self.assertEqual(old.client.status_codes(), ["NetStream.Publish.BadName"])
        self.assertFalse(old.connected)
        self.assertTrue(player.connected)

    def test_old_publisher_sending_throughout_wins(self) -> None:
        """The old publisher keeps sending: after 5 s the new one gets BadName."""
        old = self.publisher()
        new = self.peer("ffmpeg_publish")
        new.publish("cam")
        for i in range(6):
            self.clock.advance(1.0)
            old.video(1000 * i, avc_inter(i))
        new.deliver()
        self.assertEqual(new.client.status_codes(), ["NetStream.Publish.BadName"])
        self.assertTrue(old.connected and new.connected)
        publication = self.hub.get("live", "cam")
        assert publication is not None
        self.assertIs(publication.publisher, old.protocol)
        self.assertEqual(publication.takeovers, 0)

    def test_old_publisher_leaving_lets_the_waiter_in(self) -> None:
        """The old publisher disconnects during the wait: Publish.Start at once."""
        old = self.publisher()
        new = self.peer("ffmpeg_publish")
        new.publish("cam")
        self.clock.advance(1.0)
        old.lose()
        new.deliver()
        self.assertEqual(new.client.status_codes(), ["NetStream.Publish.Start"])
        publication = self.hub.get("live", "cam")
        assert publication is not None
        self.assertIs(publication.publisher, new.protocol)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1, "only the ping timer of new")

    def test_waiting_publisher_leaving_forgets_the_wait(self) -> None:
        """The waiting publisher disconnects: its wait is cancelled, nothing else changes."""
        old = self.publisher()
        new = self.peer("ffmpeg_publish")
        new.publish("cam")
        new.lose()
        self.assertFalse(self.live.waits.waiting("cam"))
        self.clock.advance(10.0)
        self.assertTrue(old.connected)
        third = self.peer("ffmpeg_publish")
        third.publish("cam")
        self.assertEqual(third.client.status_codes(), ["NetStream.Publish.Start"])

    def test_only_one_waiter(self) -> None:
        """A third publisher while one already waits gets BadName at once."""
        self.publisher()
        self.peer("ffmpeg_publish").publish("cam")
        third = self.peer("ffmpeg_publish")
        third.publish("cam")
        self.assertEqual(third.client.status_codes(), ["NetStream.Publish.BadName"])


class CleanCutTests(TakeoverTestCase):
    """After every kind of cut, the next video frame a player gets is a keyframe."""

    takeover = "always"
    limits = Limits(max_send_backlog=2000, slow_player_timeout=5.0)

    def playing(self) -> tuple[Peer, Peer]:
        """A publisher mid-GOP and a player that got the start."""
        publisher = self.publisher()
        player = self.peer()
        player.play("cam")
        self.send_start(publisher)
        player.client.clear()
        return publisher, player

    def continue_gop(self, publisher: Peer, t0: int) -> None:
        """Inter frames with audio, then a keyframe, then an inter frame."""
        publisher.video(t0, avc_inter(t0))
        publisher.audio(t0 + 5, aac_frame(1))
        publisher.video(t0 + 40, avc_inter(t0 + 1))
        publisher.video(t0 + 80, avc_keyframe(t0 + 2))
        publisher.video(t0 + 120, avc_inter(t0 + 3))

    def assert_clean(self, player: Peer, t0: int, *, audio: bool = True) -> None:
        """The player's first video frame is the keyframe; audio flowed (if expected)."""
        player.deliver()
        self.assertEqual(first_video(player)[:2], [avc_keyframe(t0 + 2), avc_inter(t0 + 3)])
        audio_frames = [
            m
            for m in player.client.media()
            if m.type_id == MessageType.AUDIO and not media.is_audio_sequence_header(m.payload)
        ]
        self.assertEqual(bool(audio_frames), audio)

    def test_full_send_backlog(self) -> None:
        """
        A player whose transport holds more than half of max_send_backlog skips video
        (audio flows); once drained, video restarts on the next keyframe.
        """
        publisher, player = self.playing()
        player.protocol.pauseProducing()
        publisher.video(80, avc_inter(2) + bytes(1200))  # now past the backlog limit
        self.assertTrue(player.protocol.backlog_full())
        publisher.video(120, avc_keyframe(3))
        publisher.audio(130, aac_frame(3))
        player.protocol.resumeProducing()
        player.client.clear()
        player.transport.clear()
        self.continue_gop(publisher, 200)
        self.assert_clean(player, 200)
        self.assertGreaterEqual(player.protocol.streams[player.stream_id].frames_dropped, 2)

    def test_receive_video_toggle_with_new_header(self) -> None:
        """
        receiveVideo(false), the publisher changes its header, receiveVideo(true):
        the player gets the new header then the keyframe; audio never stopped.
        """
        publisher, player = self.playing()
        player.client.receive_video(player.stream_id, False)
        player.pump()
        publisher.video(80, NEW_AVC_HEADER)
        publisher.video(80, avc_keyframe(50))
        publisher.audio(90, aac_frame(5))
        player.client.receive_video(player.stream_id, True)
        player.pump()
        self.continue_gop(publisher, 200)
        self.assert_clean(player, 200)
        self.assertEqual(player.video_payloads()[0], NEW_AVC_HEADER)

    def test_pause_unpause(self) -> None:
        """pause(true) then pause(false): video restarts on a keyframe."""
        publisher, player = self.playing()
        player.client.pause(player.stream_id, True)
        player.pump()
        publisher.video(80, avc_inter(2))
        player.client.pause(player.stream_id, False)
        player.pump()
        player.client.clear()
        self.continue_gop(publisher, 200)
        self.assert_clean(player, 200)

    def test_takeover(self) -> None:
        """A takeover: the new publisher's inter frames before its keyframe are not shown."""
        _, player = self.playing()
        new = self.peer("ffmpeg_publish")
        new.publish("cam")
        self.continue_gop(new, 200)
        self.assert_clean(player, 200)
