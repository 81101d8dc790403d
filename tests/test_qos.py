# trial's assertion methods are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""QoS figures from real RTMP conversations on a fake clock (flashstream.qos)."""

from __future__ import annotations

from flashstream.qos import Rate
from flashstream.rtmp import messages as msg
from tests.helpers import AAC_SEQUENCE_HEADER, AVC_SEQUENCE_HEADER
from tests.monitoring_kit import MonitoredTestCase
from tests.rtmp.test_media import _avc_sequence_header
from tests.test_protocol import METADATA, Peer

VIDEO_FRAME = 2000  # payload bytes per video frame
AUDIO_FRAME = 300  # payload bytes per audio frame


def test_rate_over_sliding_window() -> None:
    """A Rate averages over its window and forgets older samples."""
    rate = Rate(window=5.0)
    assert rate.bits_per_second() == 0.0
    for second in range(11):
        rate.sample(float(second), second * 1000 if second <= 5 else 5000 + (second - 5) * 3000)
    # The last 5 s grew by 3000 bytes a second.
    assert rate.bits_per_second() == 3000 * 8


class QosTests(MonitoredTestCase):
    """Per-connection, per-stream and server figures."""

    def publish_for(self, publisher: Peer, seconds: int, sequence_header: bytes) -> None:
        """Send headers, metadata, then 25 fps video (keyframe each second) and audio."""
        publisher.client.set_data_frame(publisher.stream_id, METADATA)
        publisher.video(0, sequence_header)
        publisher.audio(0, AAC_SEQUENCE_HEADER)
        for frame in range(seconds * 25):
            timestamp = frame * 40
            first = 0x17 if frame % 25 == 0 else 0x27
            publisher.video(timestamp, bytes([first, 1, 0, 0, 0]) + bytes(VIDEO_FRAME - 5))
            publisher.audio(timestamp, bytes([0xAF, 1]) + bytes(AUDIO_FRAME - 2))
            self.clock.advance(0.04)

    def test_stream_figures_from_media(self) -> None:
        """
        Codecs, resolution (from the SPS), frame rate, audio/video bitrates and
        the keyframe interval are measured from what the publisher sends.
        """
        publisher = self.publisher()
        self.publish_for(publisher, 8, _avc_sequence_header(640, 360, "yuv420p", "high"))
        [stream] = self.get_json("/api/v1/streams")
        self.assertEqual((stream["app"], stream["name"]), ("live", "cam"))
        video, audio = stream["video"], stream["audio"]
        self.assertEqual((video["codec"], video["width"], video["height"]), ("H.264", 640, 360))
        self.assertEqual(video["keyframe_interval_ms"], 1000)
        self.assertNear(video["frame_rate"], 25.0, delta=0.5)
        self.assertNear(video["bitrate"], VIDEO_FRAME * 25 * 8, delta=VIDEO_FRAME * 8)
        self.assertEqual(
            (audio["codec"], audio["sample_rate"], audio["channels"]), ("AAC", 44100, 2)
        )
        self.assertNear(audio["bitrate"], AUDIO_FRAME * 25 * 8, delta=AUDIO_FRAME * 8)
        self.assertEqual(stream["publisher"]["client"], publisher.protocol.client_id)
        self.assertEqual(stream["publisher"]["transport"], "rtmp")

    def test_resolution_falls_back_to_metadata(self) -> None:
        """An SPS that cannot be read leaves width and height to onMetaData."""
        publisher = self.publisher()
        self.publish_for(publisher, 1, AVC_SEQUENCE_HEADER)
        [stream] = self.get_json("/api/v1/streams")
        self.assertEqual((stream["video"]["width"], stream["video"]["height"]), (640, 360))
        self.assertEqual(stream["metadata"]["width"], 640.0)

    def test_viewers_by_transport(self) -> None:
        """Each viewer is listed with its client id and transport, and counted per transport."""
        self.publisher()
        first = self.peer()
        first.play("cam")
        second = self.peer()
        second.protocol.transport_name = "rtmpt"  # what the RTMPT tunnel sets
        second.play("cam")
        [stream] = self.get_json("/api/v1/streams")
        self.assertEqual(stream["viewers_by_transport"], {"rtmp": 1, "rtmpt": 1})
        self.assertEqual(
            sorted((v["client"], v["transport"]) for v in stream["viewers"]),
            [(first.protocol.client_id, "rtmp"), (second.protocol.client_id, "rtmpt")],
        )
        server = self.get_json("/api/v1/server")
        self.assertEqual(server["connections"], 3)
        self.assertEqual(server["connections_by_transport"], {"rtmp": 2, "rtmpt": 1})
        self.assertEqual((server["streams"], server["viewers"]), (1, 2))

    def test_rtt_from_ping_requests(self) -> None:
        """Every ping_interval each client gets a PingRequest; its answer gives the RTT."""
        player = self.peer()
        player.play("cam")
        player.client.clear()
        requests: list[msg.PingRequest] = []
        for _ in range(10):  # its slice comes up once within ping_interval
            self.clock.advance(self.qos.config.ping_interval / 10)
            player.deliver()
            requests = [c for c in player.client.controls() if isinstance(c, msg.PingRequest)]
            if requests:
                break
        [request] = requests
        self.clock.advance(0.035)
        player.client.ping_response(request.timestamp)
        player.pump()
        [client] = self.get_json("/api/v1/clients")
        self.assertEqual(client["rtt_ms"], 35.0)

    def test_pings_are_spread_over_the_interval(self) -> None:
        """Clients are pinged a slice at a time: each once per ping_interval,
        never all in the same reactor turn."""
        players = []
        for _ in range(20):
            player = self.peer()
            player.connect()
            player.client.clear()
            players.append(player)
        step = self.qos.config.ping_interval / 10
        pinged_per_step = []
        for _ in range(10):
            self.clock.advance(step)
            count = 0
            for player in players:
                player.deliver()
                count += sum(isinstance(c, msg.PingRequest) for c in player.client.controls())
                player.client.clear()
            pinged_per_step.append(count)
        self.assertEqual(sum(pinged_per_step), 20)
        self.assertLessEqual(max(pinged_per_step), 3)

    def test_connection_figures(self) -> None:
        """Bytes, bitrates, unacknowledged bytes, client version, streams and uptime."""
        publisher = self.publisher()
        player = self.peer()
        player.play("cam")
        self.publish_for(publisher, 6, AVC_SEQUENCE_HEADER)
        sent = self.connection_of(player).bytes_sent
        player.client.control(msg.Acknowledgement(sent - 5000))
        player.pump()
        clients = {c["id"]: c for c in self.get_json("/api/v1/clients")}
        me = clients[player.protocol.client_id]
        self.assertEqual(me["transport"], "rtmp")
        self.assertEqual(me["address"], player.protocol.peer)
        self.assertEqual(me["client_version"], "LNX 9,0,124,2")
        self.assertEqual(me["app"], "live")
        self.assertEqual(me["bytes_out"], sent)
        self.assertEqual(me["unacknowledged_bytes"], 5000)
        self.assertEqual(me["send_backlog"], 0)
        self.assertEqual(me["frames_dropped"], 0)
        self.assertEqual([(s["name"], s["mode"]) for s in me["streams"]], [("cam", "playing")])
        rate = (VIDEO_FRAME + AUDIO_FRAME) * 25 * 8
        self.assertNear(me["bitrate_out"], rate, delta=rate * 0.1)
        them = clients[publisher.protocol.client_id]
        self.assertNear(them["bitrate_in"], rate, delta=rate * 0.1)
        self.assertEqual(them["streams"][0]["mode"], "publishing")
        self.assertNear(me["uptime"], 6.0, delta=0.5)

    def test_bytes_of_gone_clients_stay_in_totals(self) -> None:
        """When a client leaves, the server's byte totals keep what it moved."""
        publisher = self.publisher()
        self.publish_for(publisher, 1, AVC_SEQUENCE_HEADER)
        received = self.connection_of(publisher).bytes_received
        publisher.lose()
        server = self.get_json("/api/v1/server")
        self.assertEqual(server["connections"], 0)
        self.assertEqual(server["bytes_in"], received)
        self.assertEqual(self.get_json("/api/v1/streams"), [])

    def test_rtmpe_clients_are_reported_as_rtmpe(self) -> None:
        """A client whose handshake negotiated encryption is listed with transport rtmpe."""
        publisher = self.publisher()
        publisher.video(0, AVC_SEQUENCE_HEADER)
        player = self.peer("librtmp_rtmpe")
        player.play("cam")
        [stream] = self.get_json("/api/v1/streams")
        self.assertEqual(stream["viewers_by_transport"], {"rtmpe": 1})
        self.assertEqual(
            self.get_json(f"/api/v1/clients/{player.protocol.client_id}")["transport"], "rtmpe"
        )
