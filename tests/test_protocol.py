# -*- test-case-name: tests.test_protocol -*-
# trial's assertion methods and StringTransport are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""
Tests for :mod:`flashstream.protocol`: the Twisted adapter, without a network.

Each :class:`Peer` is a :class:`tests.helpers.FlashClient` talking to one
:class:`~flashstream.protocol.RTMPServerProtocol` over a
``StringTransportWithDisconnection``; the factory runs on a
:class:`~twisted.internet.task.Clock` and a real
:class:`~flashstream.hub.StreamHub` with the built-in applications.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import (
    EventLoggingObserver,
    StringTransport,
    StringTransportWithDisconnection,
)
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from flashstream.applications import LiveApplication, Rejected, VodApplication
from flashstream.config import ApplicationConfig
from flashstream.hub import StreamHub
from flashstream.interfaces import IStreamApplication
from flashstream.protocol import NAGLE_AFTER_PLAY, RTMPServerFactory, RTMPServerProtocol
from flashstream.rtmp import commands as cmd
from flashstream.rtmp import messages as msg
from flashstream.rtmp.amf0 import ECMAArray
from flashstream.rtmp.handshake import FP_KEY, build_handshake_packet
from flashstream.rtmp.limits import Limits
from flashstream.rtmp.messages import Message, MessageType
from tests.helpers import (
    AAC_SEQUENCE_HEADER,
    AVC_SEQUENCE_HEADER,
    FlashClient,
    aac_frame,
    avc_inter,
    avc_keyframe,
    seeded_random,
)

METADATA: dict[str, object] = {"width": 640.0, "height": 360.0, "videocodecid": 7.0}
ON_METADATA = cmd.encode_data(cmd.DataMessage("onMetaData", (ECMAArray(METADATA),)))

PLAY_START_CODES = ["NetStream.Play.Reset", "NetStream.Play.Start", "NetStream.Data.Start"]


class Peer:
    """A FlashClient connected to one RTMPServerProtocol through a string transport."""

    def __init__(
        self,
        factory: RTMPServerFactory,
        kind: str = "ffmpeg",
        *,
        port: int = 50000,
        byte_at_a_time: bool = False,
        everyone: list[Peer] | None = None,
        transport: StringTransportWithDisconnection | None = None,
    ) -> None:
        self.client = FlashClient(kind, seeded_random(port))
        #: Every peer of the test: :meth:`pump` delivers what the server wrote to each.
        self.everyone = everyone if everyone is not None else []
        self.everyone.append(self)
        address = IPv4Address("TCP", "127.0.0.1", port)
        protocol = factory.buildProtocol(address)
        assert isinstance(protocol, RTMPServerProtocol)
        self.protocol = protocol
        self.transport = transport or StringTransportWithDisconnection(peerAddress=address)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)
        self.byte_at_a_time = byte_at_a_time
        self.stream_id = 0

    @property
    def connected(self) -> bool:
        """Whether the server has not closed the transport."""
        return bool(self.transport.connected)

    def send(self, data: bytes) -> None:
        """Deliver raw bytes to the protocol (one at a time if so configured)."""
        if self.byte_at_a_time:
            for i in range(len(data)):
                self.protocol.dataReceived(data[i : i + 1])
        elif data:
            self.protocol.dataReceived(data)

    def deliver(self) -> None:
        """Give the client what the server wrote so far."""
        out = self.transport.value()
        self.transport.clear()
        if out:
            self.client.receive(out)

    def pump(self) -> None:
        """Move bytes both ways until both sides are quiet."""
        for _ in range(20):
            data = self.client.data_to_send()
            self.send(data)
            out = self.transport.value()
            self.deliver()
            if not data and not out:
                for peer in self.everyone:
                    peer.deliver()
                return
        raise AssertionError("the conversation did not settle")

    def connect(self, app: str = "live") -> None:
        """Handshake and connect to ``app``."""
        self.pump()
        self.client.connect(app)
        self.pump()

    def create_stream(self) -> int:
        """createStream; remember and return the id."""
        txn = self.client.create_stream()
        self.pump()
        value = self.client.result(txn).arguments[0]
        assert isinstance(value, float)
        self.stream_id = int(value)
        return self.stream_id

    def publish(self, name: str, app: str = "live") -> None:
        """Connect and publish ``name`` the way ffmpeg does."""
        self.connect(app)
        self.client.release_stream(name)
        self.client.fc_publish(name)
        self.create_stream()
        self.client.publish(self.stream_id, name)
        self.pump()

    def play(self, name: str, app: str = "live") -> None:
        """Connect and play ``name`` the way ffmpeg does."""
        self.connect(app)
        self.create_stream()
        self.client.play(self.stream_id, name)
        self.client.set_buffer_length(self.stream_id, 3000)
        self.pump()

    def video(self, timestamp: int, payload: bytes) -> None:
        """Publish one video message."""
        self.client.video(self.stream_id, timestamp, payload)
        self.pump()

    def audio(self, timestamp: int, payload: bytes) -> None:
        """Publish one audio message."""
        self.client.audio(self.stream_id, timestamp, payload)
        self.pump()

    def video_payloads(self) -> list[bytes]:
        """The video payloads received so far."""
        return [m.payload for m in self.client.media() if m.type_id == MessageType.VIDEO]

    def lose(self) -> None:
        """The peer goes away."""
        self.transport.loseConnection()


class ProtocolTestCase(SynchronousTestCase):
    """A clock, a hub, the ``live`` and ``vod`` applications and a log observer."""

    limits = Limits()
    wait_for_publisher = True
    takeover = "idle"
    takeover_idle = 5.0

    def setUp(self) -> None:
        """Build the factory on a fresh clock and hub."""
        self.clock = Clock()
        self.hub = StreamHub()
        # Not self.mktemp(): under pytest that would write into the work tree.
        self.media_root = Path(tempfile.mkdtemp(prefix="flashstream-media-"))
        self.addCleanup(shutil.rmtree, self.media_root, True)
        (self.media_root / "exists.flv").write_bytes(b"FLV\x01")
        live = LiveApplication(
            ApplicationConfig(
                "live",
                "live",
                wait_for_publisher=self.wait_for_publisher,
                takeover=self.takeover,
                takeover_idle=self.takeover_idle,
            ),
            self.hub,
            reactor=self.clock,
        )
        self.live = live
        vod = VodApplication(ApplicationConfig("vod", "vod"), self.media_root)
        self.applications: dict[str, IStreamApplication] = {"live": live, "vod": vod}
        self.factory = RTMPServerFactory(
            self.hub,
            self.applications,
            self.clock,
            limits=self.limits,
            random_bytes=seeded_random(0),
        )
        # createWithCleanup is annotated for trial's TestCase; it only needs addCleanup.
        self.log = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        self._ports = 50000
        self.peers: list[Peer] = []

    def peer(self, kind: str = "ffmpeg", *, byte_at_a_time: bool = False) -> Peer:
        """A new peer with its own port number."""
        self._ports += 1
        return Peer(
            self.factory,
            kind,
            port=self._ports,
            byte_at_a_time=byte_at_a_time,
            everyone=self.peers,
        )

    def publisher(self, name: str = "cam", *, byte_at_a_time: bool = False) -> Peer:
        """A publisher of ``live/name`` that got Publish.Start."""
        peer = self.peer("ffmpeg_publish", byte_at_a_time=byte_at_a_time)
        peer.publish(name)
        self.assertEqual(peer.client.status_codes(), ["NetStream.Publish.Start"])
        peer.client.clear()
        return peer

    def formats(self, prefix: str) -> list[dict[str, object]]:
        """The log events whose format starts with ``prefix``."""
        return [dict(e) for e in self.log if str(e.get("log_format", "")).startswith(prefix)]


class LiveTests(ProtocolTestCase):
    """Publishing and playing live streams through the hub."""

    def send_gop(self, publisher: Peer) -> None:
        """Metadata, sequence headers, then keyframe 0, inter 1, keyframe 2, inter 3."""
        publisher.client.set_data_frame(publisher.stream_id, METADATA)
        publisher.client.video(publisher.stream_id, 0, AVC_SEQUENCE_HEADER)
        publisher.client.audio(publisher.stream_id, 0, AAC_SEQUENCE_HEADER)
        publisher.pump()
        publisher.video(0, avc_keyframe(0))
        publisher.audio(10, aac_frame(0))
        publisher.video(40, avc_inter(1))
        publisher.video(80, avc_keyframe(2))
        publisher.audio(90, aac_frame(1))
        publisher.video(120, avc_inter(3))

    def test_late_joiner(self) -> None:
        """A late player gets Play.Start, metadata, headers, the keyframe group, then live."""
        publisher = self.publisher()
        self.send_gop(publisher)
        player = self.peer()
        player.play("cam")
        self.assertEqual(player.client.status_codes(player.stream_id), PLAY_START_CODES)
        sid = player.stream_id
        self.assertEqual(
            player.client.media(),
            [
                Message(MessageType.DATA_AMF0, sid, 80, ON_METADATA),
                Message(MessageType.AUDIO, sid, 80, AAC_SEQUENCE_HEADER),
                Message(MessageType.VIDEO, sid, 80, AVC_SEQUENCE_HEADER),
                Message(MessageType.VIDEO, sid, 80, avc_keyframe(2)),
                Message(MessageType.AUDIO, sid, 90, aac_frame(1)),
                Message(MessageType.VIDEO, sid, 120, avc_inter(3)),
            ],
        )
        # Play.Start comes before any media.
        kinds = ["status" if r.status_code else r.message.type_id for r in player.client.received]
        self.assertLess(kinds.index("status"), kinds.index(MessageType.VIDEO))
        player.client.clear()
        publisher.video(160, avc_inter(4))
        publisher.audio(170, aac_frame(2))
        self.assertEqual(
            player.client.media(),
            [
                Message(MessageType.VIDEO, sid, 160, avc_inter(4)),
                Message(MessageType.AUDIO, sid, 170, aac_frame(2)),
            ],
        )
        self.assertTrue(publisher.connected and player.connected)

    def test_whole_scenario_one_byte_at_a_time(self) -> None:
        """Publish and play with every byte delivered separately on both connections."""
        publisher = self.publisher(byte_at_a_time=True)
        player = self.peer("librtmp_plain", byte_at_a_time=True)
        player.play("cam")
        self.assertEqual(player.client.status_codes(), PLAY_START_CODES)
        self.send_gop(publisher)
        self.assertEqual(
            player.video_payloads(),
            [AVC_SEQUENCE_HEADER, avc_keyframe(0), avc_inter(1), avc_keyframe(2), avc_inter(3)],
        )
        publisher.client.fc_unpublish("cam")
        publisher.client.delete_stream(publisher.stream_id)
        publisher.pump()
        self.assertEqual(publisher.client.status_codes(), ["NetStream.Unpublish.Success"])
        player.deliver()
        self.assertEqual(player.client.status_codes()[-1:], ["NetStream.Play.UnpublishNotify"])
        self.assertIsNone(self.hub.get("live", "cam"))

    def test_waiting_player_gets_publish_notify(self) -> None:
        """A player waiting for a publisher gets Play.Start, then PublishNotify and media."""
        player = self.peer()
        player.play("cam")
        self.assertEqual(player.client.status_codes(), PLAY_START_CODES)
        self.assertEqual(player.client.media(), [])
        player.client.clear()
        publisher = self.publisher()
        player.deliver()
        self.assertEqual(
            player.client.values(),
            [
                msg.StreamBegin(player.stream_id),
                cmd.Command(
                    "onStatus",
                    0.0,
                    None,
                    (
                        {
                            "level": "status",
                            "code": "NetStream.Play.PublishNotify",
                            "description": "cam is now published.",
                            "details": "cam",
                        },
                    ),
                ),
            ],
        )
        player.client.clear()
        publisher.video(0, avc_inter(0))  # no keyframe yet: not sent
        self.send_gop(publisher)
        self.assertEqual(
            player.video_payloads(),
            [AVC_SEQUENCE_HEADER, avc_keyframe(0), avc_inter(1), avc_keyframe(2), avc_inter(3)],
        )
        self.assertEqual(player.client.media()[0].payload, ON_METADATA)

    def test_publisher_disconnect_notifies_players(self) -> None:
        """When the publisher's connection is lost, players get StreamEOF and UnpublishNotify."""
        publisher = self.publisher()
        self.send_gop(publisher)
        player = self.peer()
        player.play("cam")
        player.client.clear()
        publisher.lose()
        player.deliver()
        self.assertEqual(player.client.values()[0], msg.StreamEOF(player.stream_id))
        self.assertEqual(player.client.status_codes(), ["NetStream.Play.UnpublishNotify"])
        self.assertIsNone(self.hub.get("live", "cam"))
        self.assertTrue(player.connected)
        # The player keeps waiting: a new publisher brings PublishNotify.
        player.client.clear()
        self.publisher()
        player.deliver()
        self.assertEqual(player.client.status_codes(), ["NetStream.Play.PublishNotify"])

    def test_second_publisher_bad_name(self) -> None:
        """
        With ``takeover = "never"`` a second publisher of a name in use gets
        Publish.BadName; the first continues.
        """
        self.live.reconfigure(attrs.evolve(self.live.config, takeover="never"))
        first = self.publisher()
        player = self.peer()
        player.play("cam")
        second = self.peer("ffmpeg_publish")
        second.publish("cam")
        self.assertEqual(second.client.status_codes(), ["NetStream.Publish.BadName"])
        (bad_name,) = second.client.commands("onStatus")
        info = bad_name.arguments[0]
        assert isinstance(info, dict)
        self.assertEqual(info["level"], "error")
        self.assertTrue(second.connected)
        # Media of the refused publisher goes nowhere; the first one's still flows.
        player.client.clear()
        second.video(0, avc_keyframe(9))
        first.video(0, avc_keyframe(1))
        self.assertEqual(player.video_payloads(), [avc_keyframe(1)])
        publication = self.hub.get("live", "cam")
        assert publication is not None
        self.assertIs(publication.publisher, first.protocol)
        second.lose()
        self.assertIs(self.hub.get("live", "cam"), publication)

    def test_connection_lost_releases_publication(self) -> None:
        """After the publisher's connection is lost the name can be published again."""
        first = self.publisher()
        self.assertIsNotNone(self.hub.get("live", "cam"))
        first.lose()
        self.assertIsNone(self.hub.get("live", "cam"))
        self.assertNotIn(first.protocol, self.factory.connections)
        second = self.publisher()
        publication = self.hub.get("live", "cam")
        assert publication is not None
        self.assertIs(publication.publisher, second.protocol)
        self.assertEqual(self.clock.getDelayedCalls()[0].active(), True)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1, "first's timer cancelled")

    def test_close_stream_unpublishes(self) -> None:
        """closeStream ends the publication: Unpublish.Success to the publisher, notify players."""
        publisher = self.publisher()
        player = self.peer()
        player.play("cam")
        player.client.clear()
        publisher.client.close_stream(publisher.stream_id)
        publisher.pump()
        self.assertEqual(publisher.client.status_codes(), ["NetStream.Unpublish.Success"])
        self.assertIsNone(self.hub.get("live", "cam"))
        player.deliver()
        self.assertEqual(player.client.status_codes(), ["NetStream.Play.UnpublishNotify"])
        # The same stream can publish again.
        publisher.client.publish(publisher.stream_id, "cam")
        publisher.pump()
        self.assertEqual(publisher.client.status_codes()[-1], "NetStream.Publish.Start")

    def test_congested_player_under_backlog_limit_loses_nothing(self) -> None:
        """A paused transport alone drops nothing: frames queue until the backlog limit."""
        publisher = self.publisher()
        player = self.peer()
        player.play("cam")
        publisher.video(0, avc_keyframe(0))
        player.client.clear()
        player.protocol.pauseProducing()
        self.assertTrue(player.protocol.is_congested())
        publisher.video(40, avc_inter(1))
        publisher.video(80, avc_inter(2))
        self.assertEqual(player.video_payloads(), [avc_inter(1), avc_inter(2)])
        self.assertEqual(player.protocol.streams[player.stream_id].frames_dropped, 0)

    def test_one_publisher_read_is_one_write_per_player(self) -> None:
        """
        Everything one publisher read fans out reaches each player in a
        single ``writeSequence`` (the hub batch), in order.
        """
        publisher = self.publisher()
        players = [self.peer(), self.peer()]
        writes: list[list[int]] = [[], []]
        for player, counts in zip(players, writes, strict=True):
            player.play("cam")
            player.client.clear()
            sequence = player.transport.writeSequence

            def counting(
                pieces: list[bytes], sequence: Any = sequence, counts: list[int] = counts
            ) -> None:
                counts.append(len(pieces))
                sequence(pieces)

            player.transport.writeSequence = counting  # type: ignore[method-assign]
        publisher.client.video(publisher.stream_id, 0, avc_keyframe(0))
        publisher.client.audio(publisher.stream_id, 10, aac_frame(0))
        publisher.client.video(publisher.stream_id, 40, avc_inter(1))
        publisher.protocol.dataReceived(publisher.client.data_to_send())  # one read
        for player, counts in zip(players, writes, strict=True):
            self.assertEqual(len(counts), 1)
            player.deliver()
            self.assertEqual(
                [m.payload for m in player.client.media()],
                [avc_keyframe(0), aac_frame(0), avc_inter(1)],
            )

    def test_receive_video_false(self) -> None:
        """receiveVideo(false) stops video (audio continues); true restarts at a keyframe."""
        publisher = self.publisher()
        player = self.peer()
        player.play("cam")
        publisher.video(0, avc_keyframe(0))
        player.client.clear()
        player.client.receive_video(player.stream_id, False)
        player.pump()
        publisher.video(40, avc_inter(1))
        publisher.audio(50, aac_frame(1))
        publisher.video(80, avc_keyframe(2))
        self.assertEqual([m.type_id for m in player.client.media()], [MessageType.AUDIO])
        player.client.receive_video(player.stream_id, True)
        player.pump()
        publisher.video(120, avc_inter(3))
        publisher.video(160, avc_keyframe(4))
        self.assertEqual(player.video_payloads(), [avc_keyframe(4)])

    def test_receive_audio_false(self) -> None:
        """receiveAudio(false) stops audio only."""
        publisher = self.publisher()
        player = self.peer()
        player.play("cam")
        player.client.receive_audio(player.stream_id, False)
        player.pump()
        player.client.clear()
        publisher.audio(0, aac_frame(0))
        publisher.video(0, avc_keyframe(0))
        self.assertEqual(player.video_payloads(), [avc_keyframe(0)])
        self.assertEqual(len(player.client.media()), 1)

    def test_pause_and_unpause(self) -> None:
        """pause stops media with Pause.Notify; unpause resumes at the next keyframe."""
        publisher = self.publisher()
        player = self.peer()
        player.play("cam")
        publisher.video(0, avc_keyframe(0))
        player.client.clear()
        player.client.pause(player.stream_id, True, 0)
        player.pump()
        publisher.video(40, avc_keyframe(1))
        player.client.pause(player.stream_id, False, 40)
        player.pump()
        publisher.video(80, avc_inter(2))
        publisher.video(120, avc_keyframe(3))
        self.assertEqual(
            player.client.status_codes(),
            ["NetStream.Pause.Notify", "NetStream.Unpause.Notify"],
        )
        self.assertEqual(player.video_payloads(), [avc_keyframe(3)])

    def test_player_disconnect_unsubscribes(self) -> None:
        """A player whose connection is lost is no longer a subscriber."""
        publisher = self.publisher()
        player = self.peer()
        player.play("cam")
        publication = self.hub.get("live", "cam")
        assert publication is not None
        self.assertEqual(len(publication.subscribers), 1)
        player.lose()
        self.assertEqual(publication.subscribers, [])
        publisher.video(0, avc_keyframe(0))
        self.assertTrue(publisher.connected)

    def test_empty_name_bad_name(self) -> None:
        """Publishing an empty name gets Publish.BadName."""
        peer = self.peer("ffmpeg_publish")
        peer.publish("")
        self.assertEqual(peer.client.status_codes(), ["NetStream.Publish.BadName"])

    def test_calls(self) -> None:
        """getStreamLength gets a _result, unknown calls an _error, txn 0 calls nothing."""
        peer = self.peer("librtmp_plain")
        peer.connect()
        peer.client.clear()
        peer.client.call("getStreamLength", 2, "cam")
        peer.client.call("whatever", 3, 1.0)
        peer.client.call("fireAndForget", 0)
        peer.pump()
        self.assertEqual(
            peer.client.values(),
            [
                cmd.Command("_result", 2.0, None, (0.0,)),
                cmd.Command(
                    "_error",
                    3.0,
                    None,
                    (
                        {
                            "level": "error",
                            "code": "NetConnection.Call.Failed",
                            "description": "Method 'whatever' is not available.",
                        },
                    ),
                ),
            ],
        )

    def test_connect_logged(self) -> None:
        """A connect is logged with the peer, the app and the flashVer."""
        peer = self.peer()
        peer.connect()
        (event,) = self.formats("{peer} connected to")
        self.assertEqual(event["app"], "live")
        self.assertEqual(event["flash_version"], "LNX 9,0,124,2")
        self.assertEqual(event["peer"], f"127.0.0.1:{self._ports}")
        self.assertIs(peer.protocol.app, self.applications["live"])
        self.assertEqual(peer.protocol.client_properties["app"], "live")


class NoWaitTests(ProtocolTestCase):
    """A ``live`` application whose players do not wait for publishers."""

    wait_for_publisher = False

    def test_play_missing_stream(self) -> None:
        """Playing a stream nobody publishes is Play.StreamNotFound, and nothing is sent."""
        player = self.peer()
        player.play("nobody")
        self.assertEqual(player.client.status_codes(), ["NetStream.Play.StreamNotFound"])
        self.assertEqual(player.client.media(), [])
        self.assertTrue(player.connected)


class ConnectTests(ProtocolTestCase):
    """Applications refusing connects, plays and publishes."""

    def test_unknown_app(self) -> None:
        """An unknown app gets Connect.InvalidApp and the connection is closed."""
        peer = self.peer("librtmp_plain")
        peer.connect("nope")
        (error,) = peer.client.commands("_error")
        info = error.arguments[0]
        assert isinstance(info, dict)
        self.assertEqual(info["code"], "NetConnection.Connect.InvalidApp")
        self.assertEqual(info["level"], "error")
        self.assertFalse(peer.connected)
        (dropped,) = self.formats("Dropping")
        self.assertEqual(dropped["app"], "nope")
        self.assertNotIn(peer.protocol, self.factory.connections)

    def test_application_rejects_connect(self) -> None:
        """An application raising Rejected in connect refuses with its code and closes."""

        class Closed(LiveApplication):
            def connect(self, client: object) -> None:
                raise Rejected("NetConnection.Connect.Rejected", "closed for today")

        self.applications["closed"] = Closed(ApplicationConfig("closed"), self.hub)
        peer = self.peer()
        peer.connect("closed")
        (error,) = peer.client.commands("_error")
        self.assertEqual(
            error.arguments[0],
            {
                "level": "error",
                "code": "NetConnection.Connect.Rejected",
                "description": "closed for today",
            },
        )
        self.assertFalse(peer.connected)
        self.assertEqual(len(self.formats("Dropping")), 1)

    def test_vod_missing_file(self) -> None:
        """Playing a missing file in vod is Play.StreamNotFound."""
        peer = self.peer()
        peer.play("missing", app="vod")
        self.assertEqual(peer.client.status_codes(), ["NetStream.Play.StreamNotFound"])
        self.assertTrue(peer.connected)

    def test_vod_escape_refused(self) -> None:
        """A play name that leaves the media root is Play.StreamNotFound."""
        peer = self.peer()
        peer.play("../../etc/passwd", app="vod")
        self.assertEqual(peer.client.status_codes(), ["NetStream.Play.StreamNotFound"])

    def test_vod_existing_file_not_media(self) -> None:
        """An existing file that is not playable media answers Play.Failed."""
        peer = self.peer()
        peer.play("exists", app="vod")
        self.assertEqual(peer.client.status_codes(), ["NetStream.Play.Failed"])

    def test_vod_publish_denied(self) -> None:
        """Publishing into vod is Publish.Denied."""
        peer = self.peer("ffmpeg_publish")
        peer.publish("x", app="vod")
        self.assertEqual(peer.client.status_codes(), ["NetStream.Publish.Denied"])


class DropTests(ProtocolTestCase):
    """Protocol errors and timers drop connections, and only those."""

    def test_garbage_drops_only_that_connection(self) -> None:
        """Garbage after the handshake drops the connection with a Dropping log event."""
        publisher = self.publisher()
        player = self.peer()
        player.play("cam")
        bad = self.peer()
        bad.connect()
        bad.client.send_raw(b"\xc5garbage")
        bad.pump()
        self.assertFalse(bad.connected)
        (dropped,) = self.formats("Dropping")
        self.assertIn("protocol error", str(dropped["log_format"]))
        self.assertEqual(dropped["peer"], f"127.0.0.1:{self._ports}")
        self.assertIn("error", dropped)
        # Later bytes are ignored, and the others carry on.
        bad.protocol.dataReceived(b"\x03more")
        player.client.clear()
        publisher.video(0, avc_keyframe(0))
        self.assertEqual(player.video_payloads(), [avc_keyframe(0)])
        self.assertTrue(publisher.connected and player.connected)

    def test_garbage_handshake(self) -> None:
        """An HTTP request instead of a handshake is dropped."""
        peer = self.peer()
        peer.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertFalse(peer.connected)
        self.assertEqual(len(self.formats("Dropping")), 1)

    def test_command_before_connect(self) -> None:
        """createStream before connect drops the connection."""
        peer = self.peer()
        peer.pump()
        peer.client.create_stream()
        peer.pump()
        self.assertFalse(peer.connected)
        self.assertEqual(len(self.formats("Dropping")), 1)

    def test_handshake_timeout(self) -> None:
        """A peer that does not finish the handshake in time is dropped."""
        peer = self.peer()
        peer.protocol.dataReceived(peer.client.data_to_send())  # C0+C1, never C2
        self.clock.advance(self.limits.handshake_timeout - 0.5)
        self.assertTrue(peer.connected)
        self.clock.advance(0.5)
        self.assertFalse(peer.connected)
        (dropped,) = self.formats("Dropping")
        self.assertEqual(dropped["timeout"], self.limits.handshake_timeout)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_handshake_done_cancels_timeout(self) -> None:
        """Completing the handshake replaces the handshake timer with the ping timer."""
        peer = self.peer()
        peer.connect()
        self.clock.advance(self.limits.handshake_timeout + 1)
        self.assertTrue(peer.connected)
        self.assertEqual(self.formats("Dropping"), [])

    def test_idle_peer_pinged_then_dropped(self) -> None:
        """A silent peer gets a PingRequest after ping_interval and is dropped at idle_timeout."""
        peer = self.peer()
        peer.connect()
        peer.client.clear()
        self.clock.advance(self.limits.ping_interval)
        peer.deliver()
        ping = int(self.limits.ping_interval * 1000)
        self.assertEqual(peer.client.values(), [msg.PingRequest(ping)])
        self.assertTrue(peer.connected)
        self.clock.advance(self.limits.idle_timeout - self.limits.ping_interval)
        self.assertFalse(peer.connected)
        (dropped,) = self.formats("Dropping")
        self.assertIn("no data", str(dropped["log_format"]))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_active_peer_not_dropped(self) -> None:
        """A peer that keeps answering pings is never dropped."""
        peer = self.peer()
        peer.connect()
        for _ in range(5):
            self.clock.advance(self.limits.ping_interval)
            peer.deliver()
            ping = peer.client.values()[-1]
            assert isinstance(ping, msg.PingRequest)
            peer.client.ping_response(ping.timestamp)
            peer.pump()
        self.assertTrue(peer.connected)
        self.assertEqual(self.formats("Dropping"), [])

    def test_connection_lost_cancels_timer(self) -> None:
        """connectionLost cancels the pending timer and logs the close."""
        peer = self.peer()
        peer.connect()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        peer.lose()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.formats("Connection from {peer} closed")), 1)


class BugTests(ProtocolTestCase):
    """Known bugs in flashstream (see the reasons); each should pass once fixed."""

    limits = Limits(max_send_backlog=2000)

    def test_publish_and_delete_in_one_packet(self) -> None:
        """publish and deleteStream arriving together neither crash nor leak the name."""
        peer = self.peer("ffmpeg_publish")
        peer.connect()
        stream_id = peer.create_stream()
        peer.client.publish(stream_id, "cam")
        peer.client.delete_stream(stream_id)
        peer.protocol.dataReceived(peer.client.data_to_send())
        self.assertIsNone(self.hub.get("live", "cam"))
        self.assertNotIn(stream_id, peer.protocol.streams)

    def test_play_and_delete_in_one_packet(self) -> None:
        """play and deleteStream arriving together neither crash nor leave a subscriber."""
        peer = self.peer()
        peer.connect()
        stream_id = peer.create_stream()
        peer.client.play(stream_id, "cam")
        peer.client.delete_stream(stream_id)
        peer.protocol.dataReceived(peer.client.data_to_send())
        self.assertNotIn(stream_id, peer.protocol.streams)

    def test_idle_timing_counts_from_last_input(self) -> None:
        """The ping comes ping_interval after the last input, the drop idle_timeout after it."""
        peer = self.peer()
        peer.connect()
        self.clock.advance(1)
        peer.client.ping_response(0)
        peer.pump()
        peer.client.clear()
        # Advance in one-second steps so each timer sees the time it was scheduled for.
        self.clock.pump([1.0] * int(self.limits.ping_interval))
        peer.deliver()
        self.assertEqual(
            peer.client.values(),
            [msg.PingRequest(int((1 + self.limits.ping_interval) * 1000))],
            "pinged at last input + ping_interval",
        )
        self.clock.pump([1.0] * int(self.limits.idle_timeout - self.limits.ping_interval))
        self.assertFalse(peer.connected, "dropped at last input + idle_timeout")

    def test_congested_player_backlog_is_bounded(self) -> None:
        """While congested, a player is written at most about max_send_backlog bytes."""
        publisher = self.publisher()
        player = self.peer()
        player.play("cam")
        player.deliver()
        player.protocol.pauseProducing()
        for i in range(100):
            publisher.client.audio(publisher.stream_id, i * 23, aac_frame(i) + bytes(100))
        publisher.protocol.dataReceived(publisher.client.data_to_send())
        written = len(player.transport.value())
        self.assertLessEqual(written, 2 * self.limits.max_send_backlog)


class RTMPETests(ProtocolTestCase):
    """RTMPE peers through the adapter: same hub, RC4 on the wire, bad keys dropped."""

    def test_rtmpe_publisher_and_players_share_the_hub(self) -> None:
        """An RTMPE publisher reaches an RTMPE (type 9) player and a plain player alike."""
        publisher = self.peer("librtmp_rtmpe")
        publisher.publish("enc")
        self.assertEqual(publisher.client.status_codes(), ["NetStream.Publish.Start"])
        encrypted = self.peer("rtmpe_blowfish", byte_at_a_time=True)
        encrypted.play("enc")
        plain = self.peer()
        plain.play("enc")
        publisher.client.video(publisher.stream_id, 0, avc_keyframe(7))
        wire = publisher.client.data_to_send()
        self.assertNotIn(avc_keyframe(7), wire)
        publisher.send(wire)
        for peer in self.peers:
            peer.deliver()
        self.assertEqual(encrypted.video_payloads(), [avc_keyframe(7)])
        self.assertEqual(plain.video_payloads(), [avc_keyframe(7)])

    def test_rtmpe_invalid_public_key_is_dropped(self) -> None:
        """C0 = 6 with a DH key of 1: one Dropping log line naming the key, connection closed."""
        peer = self.peer()
        c1 = build_handshake_packet(
            time_ms=0,
            version=bytes([128, 0, 3, 2]),
            random_part=bytes(1528),
            scheme=2,
            digest_key=FP_KEY[:30],
            dh_public_key=(1).to_bytes(128, "big"),
        )
        peer.protocol.dataReceived(b"\x06" + c1)
        self.assertFalse(peer.connected)
        self.assertEqual(peer.transport.value(), b"")
        (dropped,) = self.formats("Dropping")
        self.assertIn("Diffie-Hellman public key", str(dropped["error"]))


class SlowPlayerTests(ProtocolTestCase):
    """A player that cannot keep up skips video, then is dropped; nobody else notices."""

    #: Video skips past 1000 bytes waiting (half the cap); the cap is 2000.
    limits = Limits(max_send_backlog=2000, slow_player_timeout=5.0)

    def slow_player(self) -> tuple[Peer, Peer]:
        """A publisher and a player whose transport holds more than half of max_send_backlog."""
        publisher = self.publisher()
        player = self.peer()
        player.play("cam")
        publisher.video(0, avc_keyframe(0))
        player.client.clear()
        player.protocol.pauseProducing()
        # 1200 bytes now wait to be sent: past half of max_send_backlog.
        publisher.video(40, avc_inter(1) + bytes(1200))
        player.client.clear()
        return publisher, player

    def test_backlogged_player_skips_video_to_next_keyframe(self) -> None:
        """Past half of max_send_backlog video is skipped (keyframes too), audio continues;
        once drained, video restarts at the next keyframe."""
        publisher, player = self.slow_player()
        other = self.peer()
        other.play("cam")
        other.client.clear()
        publisher.video(80, avc_inter(2))
        publisher.audio(90, aac_frame(1))
        publisher.video(120, avc_keyframe(3))
        self.assertEqual(player.video_payloads(), [])
        self.assertEqual(
            [m.payload for m in player.client.media() if m.type_id == MessageType.AUDIO],
            [aac_frame(1)],
        )
        self.assertEqual(other.video_payloads(), [avc_inter(2), avc_keyframe(3)])
        player.protocol.resumeProducing()
        publisher.video(160, avc_inter(4))
        publisher.video(200, avc_keyframe(5))
        publisher.video(240, avc_inter(6))
        self.assertEqual(player.video_payloads(), [avc_keyframe(5), avc_inter(6)])
        self.assertEqual(player.protocol.streams[player.stream_id].frames_dropped, 3)
        self.assertTrue(player.connected)

    def test_player_behind_too_long_is_dropped(self) -> None:
        """A player past the backlog limit for slow_player_timeout seconds is dropped and logged."""
        publisher, player = self.slow_player()
        publisher.audio(50, aac_frame(1))
        self.clock.advance(self.limits.slow_player_timeout - 1)
        publisher.audio(60, aac_frame(2))
        self.assertTrue(player.connected)
        self.clock.advance(1)
        publisher.audio(70, aac_frame(3))
        self.assertFalse(player.connected)
        (dropped,) = self.formats("Dropping")
        self.assertIn("too far behind", str(dropped["log_format"]))
        self.assertTrue(publisher.connected)

    def test_player_catching_up_is_kept(self) -> None:
        """The timeout restarts when the backlog falls under the limit."""
        publisher, player = self.slow_player()
        self.clock.advance(self.limits.slow_player_timeout - 1)
        publisher.video(80, avc_inter(2))  # past the limit since t=0: skipped
        player.protocol.resumeProducing()
        player.protocol.pauseProducing()
        publisher.video(120, avc_keyframe(3))  # under the limit again
        publisher.video(160, avc_inter(4) + bytes(1200))
        self.clock.advance(2)
        publisher.video(200, avc_inter(5))
        self.assertTrue(player.connected)
        self.assertEqual(self.formats("Dropping"), [])

    def test_backlog_never_passes_the_cap(self) -> None:
        """Bytes that would take the backlog past max_send_backlog drop the player instead."""
        publisher, player = self.slow_player()
        written = len(player.transport.value())
        publisher.audio(50, aac_frame(1) + bytes(900))
        self.assertFalse(player.connected)
        self.assertEqual(len(player.transport.value()), written)
        (dropped,) = self.formats("Dropping")
        self.assertEqual(dropped["limit"], 2000)

    def test_tcp_buffer_is_measured(self) -> None:
        """With a TCP-style transport the backlog is what its buffers hold in memory:
        the whole joined string (its sent prefix is freed only at the next join)."""
        player = self.peer()
        player.connect()
        transport = player.transport
        transport.dataBuffer = b"x" * 700  # type: ignore[attr-defined]
        transport.offset = 100  # type: ignore[attr-defined]
        transport._tempDataLen = 50  # type: ignore[attr-defined]
        self.assertEqual(player.protocol.send_backlog(), 0, "not congested: nothing waits")
        player.protocol.pauseProducing()
        self.assertEqual(player.protocol.send_backlog(), 750)
        self.assertFalse(player.protocol.backlog_full())
        transport.dataBuffer = b"x" * 1200  # type: ignore[attr-defined]
        self.assertTrue(player.protocol.backlog_full())


class ConnectionLimitTests(ProtocolTestCase):
    """max_connections and max_connections_per_address refuse, log and count."""

    limits = Limits(max_connections=3, max_connections_per_address=2)

    def build(self, host: str, port: int) -> RTMPServerProtocol | None:
        """What the factory builds for a new connection from ``host``; connect it if any."""
        address = IPv4Address("TCP", host, port)
        protocol = self.factory.buildProtocol(address)
        if protocol is not None:
            assert isinstance(protocol, RTMPServerProtocol)
            transport = StringTransportWithDisconnection(peerAddress=address)
            transport.protocol = protocol
            protocol.makeConnection(transport)
        return protocol

    def test_per_address_limit(self) -> None:
        """A third connection from one address is refused; other addresses still get in."""
        first = self.build("10.0.0.1", 1)
        self.assertIsNotNone(self.build("10.0.0.1", 2))
        self.assertIsNone(self.build("10.0.0.1", 3))
        self.assertIsNotNone(self.build("10.0.0.2", 1))
        self.assertEqual(self.factory.refused["max_connections_per_address"], 1)
        (refusal,) = self.formats("Refusing a connection")
        self.assertEqual(refusal["host"], "10.0.0.1")
        self.assertEqual(refusal["limit"], "max_connections_per_address")
        self.assertEqual(refusal["value"], 2)
        assert first is not None and first.transport is not None
        first.transport.loseConnection()
        self.assertEqual(self.factory.per_address, {"10.0.0.1": 1, "10.0.0.2": 1})
        self.assertIsNotNone(self.build("10.0.0.1", 4), "a closed connection frees its place")

    def test_total_limit(self) -> None:
        """Past max_connections every address is refused, and counted."""
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            self.assertIsNotNone(self.build(host, 1))
        self.assertIsNone(self.build("10.0.0.4", 1))
        self.assertEqual(
            self.factory.refused, {"max_connections": 1, "max_connections_per_address": 0}
        )
        (refusal,) = self.formats("Refusing a connection")
        self.assertEqual((refusal["limit"], refusal["count"]), ("max_connections", 3))

    def test_refusal_lines_are_rate_limited(self) -> None:
        """A flood of refusals logs one line per second per limit, saying how many it covers."""
        self.build("10.0.0.1", 1)
        self.build("10.0.0.1", 2)
        for port in range(3, 8):
            self.assertIsNone(self.build("10.0.0.1", port))
        self.assertEqual(len(self.formats("Refusing a connection")), 1)
        self.clock.advance(1.0)
        self.assertIsNone(self.build("10.0.0.1", 9))
        lines = self.formats("Refusing a connection")
        self.assertEqual([(e["since"], e["total"]) for e in lines], [(1, 1), (5, 6)])


class ShutdownTests(ProtocolTestCase):
    """factory.shutdown(): goodbyes, then wait for clients up to shutdown_timeout."""

    limits = Limits(shutdown_timeout=4.0)

    def test_clients_that_close_end_the_wait(self) -> None:
        """When every client closes after its goodbye the Deferred fires at once."""
        publisher = self.publisher("bye")
        player = self.peer()
        player.connect()
        done = self.factory.shutdown()
        self.assertEqual(self.successResultOf(done), None)
        self.assertFalse(publisher.connected)
        self.assertFalse(player.connected)
        self.assertEqual(self.factory.per_address, {})

    def test_client_that_never_closes_is_cut_off(self) -> None:
        """A connection that stays open after its goodbye is aborted after shutdown_timeout."""
        address = IPv4Address("TCP", "10.0.0.9", 9)
        protocol = self.factory.buildProtocol(address)
        assert isinstance(protocol, RTMPServerProtocol)
        stuck = StringTransport(peerAddress=address)  # loseConnection never closes it
        protocol.makeConnection(stuck)
        done = self.factory.shutdown()
        self.assertNoResult(done)
        self.assertTrue(stuck.disconnecting)
        self.clock.advance(self.limits.shutdown_timeout - 0.1)
        self.assertNoResult(done)
        self.assertFalse(stuck.disconnected)
        self.clock.advance(0.1)
        self.assertTrue(stuck.disconnected, "aborted")
        self.successResultOf(done)
        (line,) = self.formats("{count} clients did not close")
        self.assertEqual(line["count"], 1)
        protocol.connectionLost()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_no_new_connections_while_stopping(self) -> None:
        """Once shutdown started, new connections are refused."""
        self.successResultOf(self.factory.shutdown())
        self.assertIsNone(self.factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1)))

    def test_dropped_peer_that_never_drains_is_aborted(self) -> None:
        """A dropped peer whose transport does not close is aborted after close_timeout."""
        address = IPv4Address("TCP", "10.0.0.8", 8)
        protocol = self.factory.buildProtocol(address)
        assert isinstance(protocol, RTMPServerProtocol)
        stuck = StringTransport(peerAddress=address)
        protocol.makeConnection(stuck)
        protocol.dataReceived(b"\x16\x03\x01")  # TLS, not RTMP: dropped
        self.assertTrue(stuck.disconnecting)
        self.clock.advance(self.limits.close_timeout - 0.1)
        self.assertFalse(stuck.disconnected)
        self.clock.advance(0.1)
        self.assertTrue(stuck.disconnected, "aborted")
        (line,) = self.formats("Aborting {peer}")
        self.assertEqual(line["timeout"], self.limits.close_timeout)
        protocol.connectionLost()
        self.assertEqual(self.factory.connections, set())


class NoDelayTransport(StringTransportWithDisconnection):
    """A string transport that records ``setTcpNoDelay`` calls, as TCP has them."""

    def __init__(self, port: int) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        self.no_delay_calls: list[bool] = []

    def setTcpNoDelay(self, enabled: bool) -> None:
        """Record the call."""
        self.no_delay_calls.append(enabled)


class NoDelayTests(ProtocolTestCase):
    """``[rtmp] tcp_nodelay``: when Nagle's algorithm may hold what we write."""

    def tcp_peer(self, port: int) -> tuple[Peer, NoDelayTransport]:
        """A player peer whose transport records ``setTcpNoDelay``."""
        transport = NoDelayTransport(port)
        peer = Peer(self.factory, port=port, everyone=self.peers, transport=transport)
        return peer, transport

    def test_setup_answers_without_nagle_then_plays_with_it(self) -> None:
        """The default ("setup") sets TCP_NODELAY on connect, so answers to
        commands never wait for the client's delayed ACK, and clears it
        NAGLE_AFTER_PLAY seconds into a play, so media lets the kernel join
        small writes (fewer segments, less CPU)."""
        self.assertEqual(self.factory.tcp_nodelay, "setup")
        self.publisher("cam")
        player, transport = self.tcp_peer(50990)
        self.assertEqual(transport.no_delay_calls, [True])
        player.play("cam")
        self.assertEqual(transport.no_delay_calls, [True])
        self.clock.advance(NAGLE_AFTER_PLAY - 0.01)
        self.assertEqual(transport.no_delay_calls, [True])
        self.clock.advance(0.01)
        self.assertEqual(transport.no_delay_calls, [True, False])

    def test_setup_keeps_no_delay_for_non_players(self) -> None:
        """A publisher never plays: TCP_NODELAY stays set (it gets little from
        us, and what it gets are answers)."""
        transport = NoDelayTransport(50991)
        publisher = Peer(self.factory, "ffmpeg_publish", port=50991, transport=transport)
        publisher.publish("cam")
        self.clock.advance(NAGLE_AFTER_PLAY * 10)
        self.assertEqual(transport.no_delay_calls, [True])

    def test_setup_timer_ends_with_the_connection(self) -> None:
        """A player that leaves before the switch leaves no timer behind."""
        self.publisher("cam")
        player, transport = self.tcp_peer(50992)
        player.play("cam")
        player.transport.loseConnection()
        self.clock.advance(NAGLE_AFTER_PLAY)
        self.assertEqual(transport.no_delay_calls, [True])
        self.assertEqual([c for c in self.clock.getDelayedCalls() if "_use_nagle" in repr(c)], [])

    def calls_long_after_play(self, setting: bool) -> list[bool]:
        """The ``setTcpNoDelay`` calls of a player ten switch delays into its play."""
        self.factory.tcp_nodelay = setting
        self.publisher("cam")
        player, transport = self.tcp_peer(50993)
        player.play("cam")
        self.clock.advance(NAGLE_AFTER_PLAY * 10)
        return transport.no_delay_calls

    def test_true_sets_no_delay_for_good(self) -> None:
        """``tcp_nodelay = true``: set on connect and never cleared."""
        self.assertEqual(self.calls_long_after_play(True), [True])

    def test_false_leaves_nagle_on(self) -> None:
        """``tcp_nodelay = false`` never touches the option (Nagle, as nginx-rtmp)."""
        self.assertEqual(self.calls_long_after_play(False), [])
