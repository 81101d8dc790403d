# trial's assertion methods are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""
Tests for :mod:`flashstream.vod.player` and the ``vod`` application, through
the Twisted adapter on a :class:`~twisted.internet.task.Clock`: the exact
onStatus sequences and first timestamps of play, seek, pause, unpause,
paused seek, play2 and the end of a file, pacing, and getStreamLength.
"""

from __future__ import annotations

import os

from flashstream.applications import LiveApplication, VodApplication
from flashstream.config import ApplicationConfig
from flashstream.rtmp import commands as cmd
from flashstream.rtmp import messages as msg
from flashstream.rtmp.messages import Message, MessageType
from flashstream.vod.flv import decode_metadata

from .test_protocol import PLAY_START_CODES, Peer, ProtocolTestCase
from .vod_media import copy_media


class VodTestCase(ProtocolTestCase):
    """The protocol test bench with the test media in the vod media root."""

    def setUp(self) -> None:
        """Copy the media and use a vod application on the test clock."""
        super().setUp()
        copy_media(self.media_root)
        self.vod = VodApplication(
            ApplicationConfig("vod", "vod"), self.media_root, reactor=self.clock
        )
        self.applications["vod"] = self.vod

    def player(self, name: str = "clip", start: float = -2000, duration: float = -1) -> Peer:
        """A peer playing ``vod/name`` with a 3 s buffer, as ffmpeg asks."""
        peer = self.peer()
        peer.connect("vod")
        peer.create_stream()
        peer.client.play(peer.stream_id, name, start, duration)
        peer.client.set_buffer_length(peer.stream_id, 3000)
        peer.pump()
        return peer

    def run_for(self, peer: Peer, seconds: float, step: float = 0.05) -> None:
        """Advance the clock in steps, delivering what the server writes."""
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            peer.deliver()

    def media(self, peer: Peer) -> list[Message]:
        """Audio and video messages received, sequence headers included."""
        return [
            m for m in peer.client.media() if m.type_id in (MessageType.AUDIO, MessageType.VIDEO)
        ]

    def frames(self, peer: Peer) -> list[Message]:
        """Audio and video messages received, without sequence headers."""
        return [m for m in self.media(peer) if m.payload[1:2] != b"\x00"]

    def player_timers(self) -> list[object]:
        """Delayed calls of players still pending."""
        return [c for c in self.clock.getDelayedCalls() if "VodPlayer" in repr(c)]

    def play_status(self, peer: Peer) -> list[str]:
        """The onPlayStatus codes received."""
        return [
            str(r.value.arguments[0]["code"])  # type: ignore[index]
            for r in peer.client.received
            if isinstance(r.value, cmd.DataMessage) and r.value.name == "onPlayStatus"
        ]


class PlayTests(VodTestCase):
    """Starting, pacing and ending playback of files."""

    def test_play_replies_metadata_headers_then_keyframe(self) -> None:
        """
        play answers StreamIsRecorded, StreamBegin, Reset/Start/Data.Start; then
        onMetaData (duration 20 s), the AVC and AAC headers, and a keyframe at 0.
        """
        peer = self.player()
        self.assertEqual(peer.client.status_codes(), PLAY_START_CODES)
        controls = peer.client.controls()
        self.assertEqual(controls[-2:], [msg.StreamIsRecorded(1), msg.StreamBegin(1)])
        media = peer.client.media()
        metadata = decode_metadata(media[0].payload)
        assert metadata is not None
        self.assertAlmostEqual(float(metadata["duration"]), 20.07, places=2)  # type: ignore[arg-type]
        self.assertEqual([m.payload[:2] for m in media[1:3]], [b"\x17\x00", b"\xaf\x00"])
        first = self.frames(peer)[0]
        self.assertEqual((first.type_id, first.timestamp, first.payload[:2]), (9, 0, b"\x17\x01"))

    def test_pacing_sends_the_buffer_at_once_then_real_time(self) -> None:
        """
        The first second goes out at once (buffer not yet known), then media stays
        the 3 s buffer ahead of the clock: never further, never behind.
        """
        peer = self.player()
        self.assertLessEqual(max(m.timestamp for m in self.frames(peer)), 1000)
        self.assertGreaterEqual(max(m.timestamp for m in self.frames(peer)), 900)
        self.run_for(peer, 5.0)
        latest = max(m.timestamp for m in self.frames(peer))
        self.assertLessEqual(latest, 8000)
        self.assertGreaterEqual(latest, 7900)

    def test_whole_file_then_complete(self) -> None:
        """
        Every frame arrives once, in order; the end is StreamEOF, onPlayStatus
        Play.Complete, Play.Stop.
        """
        peer = self.player("mp4:clip.mp4")
        peer.client.clear()
        self.run_for(peer, 21.0, step=0.5)
        self.assertEqual(peer.client.status_codes(), ["NetStream.Play.Stop"])
        self.assertEqual(self.play_status(peer), ["NetStream.Play.Complete"])
        self.assertIn(msg.StreamEOF(1), peer.client.controls())
        self.assertEqual(self.player_timers(), [])

    def test_every_frame_exactly_once(self) -> None:
        """Across the start burst and the paced part, the frame count equals the file's."""
        peer = self.player("mp4:clip.mp4")
        self.run_for(peer, 21.0, step=0.5)
        source = self.vod.source("mp4:clip.mp4")
        reader = source.open(source.seek_point(0))
        expected = []
        while (frame := reader.read()) is not None:
            expected.append((frame.type_id, frame.timestamp, frame.payload))
        got = [(m.type_id, m.timestamp, m.payload) for m in self.frames(peer)]
        self.assertEqual(got, expected)

    def test_start_and_length(self) -> None:
        """play(name, 10000, 3000) starts at the keyframe at 9.6 s and ends after 13 s."""
        peer = self.player(start=10000, duration=3000)
        self.run_for(peer, 6.0)
        frames = self.frames(peer)
        self.assertEqual((frames[0].timestamp, frames[0].payload[:2]), (9600, b"\x17\x01"))
        self.assertLessEqual(max(m.timestamp for m in frames), 13000)
        self.assertGreaterEqual(max(m.timestamp for m in frames), 12900)
        self.assertEqual(peer.client.status_codes()[-1], "NetStream.Play.Stop")

    def test_missing_absolute_and_symlinked_out_are_not_found(self) -> None:
        """Missing files, absolute names, ``..`` and symlinks out are StreamNotFound."""
        outside = self.media_root.parent / f"outside-{os.getpid()}.flv"
        outside.write_bytes((self.media_root / "clip.flv").read_bytes()[:1000])
        self.addCleanup(outside.unlink)
        (self.media_root / "link.flv").symlink_to(outside)
        for name in ("nothing", "/etc/passwd", "../clip", "sub/../../clip", "link"):
            peer = self.player(name)
            self.assertEqual(peer.client.status_codes(), ["NetStream.Play.StreamNotFound"], name)

    def test_unplayable_file_is_play_failed(self) -> None:
        """A file that is not media answers Play.Failed."""
        peer = self.player("exists")
        self.assertEqual(peer.client.status_codes(), ["NetStream.Play.Failed"])

    def test_get_stream_length(self) -> None:
        """getStreamLength answers the file's duration in seconds (0 if missing)."""
        peer = self.peer()
        peer.connect("vod")
        peer.client.call("getStreamLength", 7, "mp4:clip.mp4")
        peer.client.call("getStreamLength", 8, "clip")
        peer.client.call("getStreamLength", 9, "missing")
        peer.pump()
        self.assertEqual(peer.client.result(7).arguments, (20.0,))
        self.assertEqual(peer.client.result(8).arguments, (20.072,))
        self.assertEqual(peer.client.result(9).arguments, (0.0,))

    def test_close_stops_timers(self) -> None:
        """closeStream stops the player's timer and file."""
        peer = self.player()
        peer.client.close_stream(peer.stream_id)
        peer.pump()
        self.assertEqual(self.player_timers(), [])
        before = len(self.frames(peer))
        self.run_for(peer, 2.0)
        self.assertEqual(len(self.frames(peer)), before)


class ControlTests(VodTestCase):
    """seek, pause, unpause, paused seek and play2."""

    def test_seek(self) -> None:
        """
        seek(10000): StreamEOF, Seek.Notify, StreamBegin, Play.Start, then metadata,
        headers and the keyframe at 9.6 s, paced from there.
        """
        peer = self.player()
        self.run_for(peer, 1.0)
        peer.client.clear()
        peer.client.seek(peer.stream_id, 10000)
        peer.pump()
        self.assertEqual(
            peer.client.status_codes(), ["NetStream.Seek.Notify", "NetStream.Play.Start"]
        )
        self.assertEqual(peer.client.controls(), [msg.StreamEOF(1), msg.StreamBegin(1)])
        media = peer.client.media()
        self.assertEqual(media[0].type_id, MessageType.DATA_AMF0)
        self.assertEqual(
            [m.payload[:2] for m in media[1:4]], [b"\x17\x00", b"\xaf\x00", b"\x17\x01"]
        )
        self.assertEqual([m.timestamp for m in media[:4]], [9600] * 4)
        self.assertLessEqual(max(m.timestamp for m in media), 9600 + 3000)
        self.run_for(peer, 2.0)
        self.assertGreaterEqual(max(m.timestamp for m in self.frames(peer)), 14500)

    def test_pause_and_unpause(self) -> None:
        """
        pause: Pause.Notify and nothing more while paused; unpause: Unpause.Notify,
        StreamBegin, then frames go on after the last one sent (nothing repeated).
        """
        peer = self.player()
        self.run_for(peer, 2.0)
        last = max(m.timestamp for m in self.frames(peer))
        count = len(self.frames(peer))
        peer.client.pause(peer.stream_id, True, 2000)
        peer.pump()
        self.run_for(peer, 5.0)
        self.assertEqual(len(self.frames(peer)), count)
        self.assertEqual(peer.client.status_codes()[-1], "NetStream.Pause.Notify")
        peer.client.clear()
        peer.client.pause(peer.stream_id, False, 2000)
        peer.pump()
        self.assertEqual(peer.client.status_codes(), ["NetStream.Unpause.Notify"])
        self.assertEqual(peer.client.controls(), [msg.StreamBegin(1)])
        # the player holds up to 2 s + 3 s of buffer: paced from its playhead
        self.run_for(peer, 1.0)
        resumed = self.frames(peer)
        self.assertGreater(resumed[0].timestamp, last - 50)
        self.assertLessEqual(max(m.timestamp for m in resumed), 2000 + 1000 + 3000)
        self.assertGreaterEqual(max(m.timestamp for m in resumed), 2000 + 1000 + 3000 - 100)
        video = [m.timestamp for m in resumed if m.type_id == MessageType.VIDEO]
        self.assertEqual(len(video), len(set(video)))

    def test_seek_while_paused_shows_the_keyframe(self) -> None:
        """
        A seek while paused sends Seek.Notify, Play.Start, headers and only the
        target keyframe; unpause continues after it.
        """
        peer = self.player()
        peer.client.pause(peer.stream_id, True, 500)
        peer.pump()
        peer.client.clear()
        peer.client.seek(peer.stream_id, 15000)
        peer.pump()
        self.run_for(peer, 3.0)
        self.assertEqual(
            peer.client.status_codes(), ["NetStream.Seek.Notify", "NetStream.Play.Start"]
        )
        frames = self.frames(peer)
        self.assertEqual([(m.timestamp, m.payload[:2]) for m in frames], [(14400, b"\x17\x01")])
        peer.client.clear()
        peer.client.pause(peer.stream_id, False, 14400)
        peer.pump()
        frames = self.frames(peer)
        self.assertGreater(len(frames), 10)
        self.assertTrue(all(m.timestamp >= 14400 for m in frames))
        self.assertNotIn(b"\x17\x01", [m.payload[:2] for m in frames if m.timestamp == 14400])

    def test_play2_switches_at_the_next_keyframe(self) -> None:
        """
        play2 switch: Play.Transition at once; at the new file's first keyframe
        after what was sent, onPlayStatus Play.TransitionComplete, the new
        sequence header, then the new file's keyframe.
        """
        peer = self.player()
        self.run_for(peer, 1.0)
        sent = max(m.timestamp for m in self.frames(peer))
        peer.client.clear()
        peer.client.command(
            "play2", 0, None,
            {"streamName": "clip_hi", "oldStreamName": "clip", "transition": "switch",
             "start": 0.0, "len": -1.0, "offset": 0.0},
            stream_id=peer.stream_id,
        )  # fmt: skip
        peer.pump()
        self.assertEqual(peer.client.status_codes(), ["NetStream.Play.Transition"])
        self.run_for(peer, 2.0)
        self.assertEqual(self.play_status(peer), ["NetStream.Play.TransitionComplete"])
        switch_at = ((sent // 2400) + 1) * 2400
        hi = self.vod.source("clip_hi")
        media = self.media(peer)
        header_index = next(i for i, m in enumerate(media) if m.payload == hi.headers[0].payload)
        self.assertTrue(all(m.timestamp < switch_at for m in media[:header_index]))
        after = [m for m in media[header_index:] if m.type_id == MessageType.VIDEO]
        self.assertEqual((after[1].timestamp, after[1].payload[:2]), (switch_at, b"\x17\x01"))

    def test_play2_unknown_file_fails(self) -> None:
        """play2 to a missing file answers Play.Failed and playback goes on."""
        peer = self.player()
        peer.client.clear()
        peer.client.command("play2", 0, None, {"streamName": "nope"}, stream_id=peer.stream_id)
        peer.pump()
        self.assertEqual(peer.client.status_codes(), ["NetStream.Play.Failed"])
        self.run_for(peer, 1.0)
        self.assertTrue(self.frames(peer))

    def test_play2_on_a_live_stream_fails(self) -> None:
        """play2 on a stream that plays nothing seekable answers Play.Failed."""
        live = LiveApplication(ApplicationConfig("live", "live"), self.hub)
        self.applications["live"] = live
        peer = self.peer()
        peer.play("cam")
        peer.client.clear()
        peer.client.command("play2", 0, None, {"streamName": "x"}, stream_id=peer.stream_id)
        peer.pump()
        self.assertEqual(peer.client.status_codes(), ["NetStream.Play.Failed"])

    def test_seek_after_the_end_plays_again(self) -> None:
        """After Play.Complete, a seek starts playing again from the keyframe."""
        peer = self.player("mp4:tone.m4a")
        self.run_for(peer, 8.0, step=0.5)
        self.assertEqual(peer.client.status_codes()[-1], "NetStream.Play.Stop")
        peer.client.clear()
        peer.client.seek(peer.stream_id, 2500)
        peer.pump()
        self.assertEqual(
            peer.client.status_codes(), ["NetStream.Seek.Notify", "NetStream.Play.Start"]
        )
        point = self.vod.source("mp4:tone.m4a").seek_point(2500)
        self.assertEqual(self.frames(peer)[0].timestamp, point.time)
