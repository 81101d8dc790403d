# trial's assertion methods are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""Live HTTP-FLV (flashstream.httpflv): routing, the FLV it writes, drops and endings."""

from __future__ import annotations

from typing import Any

import treq
from twisted.internet.defer import CancelledError

from flashstream.httpflv import HTTPFLVViewer, flv_header, flv_tag
from flashstream.rtmp.limits import Limits
from tests.helpers import (
    AAC_SEQUENCE_HEADER,
    AVC_SEQUENCE_HEADER,
    aac_frame,
    avc_inter,
    avc_keyframe,
)
from tests.monitoring_kit import TOKEN, MonitoredTestCase, StreamingRequest

Tag = tuple[int, int, bytes]


def parse_flv(data: bytes) -> tuple[int, list[Tag]]:
    """(header flags, [(type, timestamp, body)]) of a complete FLV byte string."""
    assert data[:3] == b"FLV" and data[5:9] == b"\x00\x00\x00\x09", data[:13]
    assert data[9:13] == b"\x00\x00\x00\x00"
    tags: list[Tag] = []
    position = 13
    while position < len(data):
        type_id = data[position]
        size = int.from_bytes(data[position + 1 : position + 4], "big")
        stamp = int.from_bytes(data[position + 4 : position + 7], "big") | (
            data[position + 7] << 24
        )
        body = data[position + 11 : position + 11 + size]
        trailer = int.from_bytes(data[position + 11 + size : position + 15 + size], "big")
        assert len(body) == size and trailer == size + 11
        tags.append((type_id, stamp, body))
        position += 15 + size
    return data[4], tags


def test_flv_tag_layout() -> None:
    """A tag is type, 24-bit size, 24+8-bit timestamp, stream id 0, body, PreviousTagSize."""
    tag = flv_tag(9, 0x12345678, b"abc")
    assert tag == bytes.fromhex("09000003345678120000 00") + b"abc" + (14).to_bytes(4, "big")
    assert flv_header(audio=True, video=False)[4] == 4
    assert parse_flv(flv_header(True, True) + tag) == (5, [(9, 0x12345678, b"abc")])


class HTTPFLVTests(MonitoredTestCase):
    """GET /APP/STREAM.flv."""

    def live_stream(self) -> Any:
        """A publisher of live/cam with metadata, headers and a keyframe group at t=1000."""
        publisher = self.publisher()
        publisher.client.set_data_frame(publisher.stream_id, {"width": 320.0})
        publisher.audio(1000, AAC_SEQUENCE_HEADER)
        publisher.video(1000, AVC_SEQUENCE_HEADER)
        publisher.video(1000, avc_keyframe(1))
        publisher.audio(1010, aac_frame(1))
        publisher.video(1040, avc_inter(2))
        return publisher

    def test_starts_with_cached_group_then_live_then_ends(self) -> None:
        """
        The body is an FLV header, metadata, sequence headers and the keyframe
        group (timestamps from 0), then live tags; it ends when the publisher
        leaves, and the stop event counts every byte sent.
        """
        publisher = self.live_stream()
        response = self.successResultOf(self.web.get("http://127.0.0.1/live/cam.flv"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"video/x-flv"])
        chunks: list[bytes] = []
        finished = treq.collect(response, chunks.append)
        publisher.video(1080, avc_inter(3))
        self.web.flush()
        self.assertNoResult(finished)
        [viewer] = self.qos.http_clients.values()
        self.assertEqual(viewer.transport_name, "http-flv")
        [stream] = self.get_json("/api/v1/streams")
        self.assertEqual(stream["viewers_by_transport"], {"http-flv": 1})
        publisher.lose()
        self.clock.advance(0)
        self.web.flush()
        self.successResultOf(finished)
        flags, tags = parse_flv(b"".join(chunks))
        self.assertEqual(flags, 5)
        self.assertEqual(
            [(t, s) for t, s, _ in tags],
            [(18, 0), (8, 0), (9, 0), (9, 0), (8, 10), (9, 40), (9, 80)],
        )
        self.assertTrue(tags[0][2].startswith(b"\x02\x00\x0aonMetaData"))
        self.assertEqual(tags[3][2], avc_keyframe(1))
        stop = self.events[-1]
        self.assertEqual((stop.kind, stop.transport), ("stop", "http-flv"))
        self.assertEqual(stop.stream_bytes_out, len(b"".join(chunks)))
        self.assertEqual(self.qos.http_clients, {})
        self.assertEqual(self.hub._waiting, {})

    def test_not_live_or_not_flv_is_404(self) -> None:
        """Streams nobody publishes and paths without .flv are 404."""
        self.assertEqual(self.get("/live/nobody.flv")[0], 404)
        self.live_stream()
        self.assertEqual(self.get("/live/cam")[0], 404)
        self.assertEqual(self.get("/live/cam.mp4")[0], 404)

    def viewer(self, limits: Limits = Limits()) -> tuple[HTTPFLVViewer, StreamingRequest, Any]:
        """A viewer of live/cam on a StreamingRequest (started)."""
        publication = self.hub.get("live", "cam")
        assert publication is not None
        request = StreamingRequest([b"live", b"cam.flv"])
        viewer = HTTPFLVViewer(
            request, publication, self.hub, self.qos, self.tracker, self.clock, limits
        )
        return viewer, request, viewer.start()

    def video_tags(self, request: StreamingRequest) -> list[bytes]:
        """The video tag bodies written so far."""
        return [body for t, _, body in parse_flv(b"".join(request.written))[1] if t == 9]

    def test_starts_video_on_a_keyframe(self) -> None:
        """With no keyframe cached yet, inter frames are dropped until one comes."""
        publisher = self.publisher()
        publisher.video(0, AVC_SEQUENCE_HEADER)
        _, request, _ = self.viewer()
        publisher.video(40, avc_inter(1))
        publisher.video(80, avc_keyframe(2))
        publisher.video(120, avc_inter(3))
        self.assertEqual(
            self.video_tags(request), [AVC_SEQUENCE_HEADER, avc_keyframe(2), avc_inter(3)]
        )

    def test_slow_client_drops_video_until_a_keyframe(self) -> None:
        """While the transport is paused video is dropped; after it resumes, a keyframe first."""
        publisher = self.live_stream()
        viewer, request, _ = self.viewer()
        before = self.video_tags(request)
        viewer.pauseProducing()
        publisher.video(1080, avc_inter(3))
        publisher.video(2000, avc_keyframe(4))
        viewer.resumeProducing()
        publisher.video(2040, avc_inter(5))
        publisher.video(3000, avc_keyframe(6))
        self.assertEqual(self.video_tags(request), [*before, avc_keyframe(6)])
        self.assertEqual(viewer.frames_dropped, 3)

    def test_backlog_limit_drops_everything_but_headers(self) -> None:
        """Past max_send_backlog bytes written while paused, audio is dropped too."""
        publisher = self.live_stream()
        viewer, request, _ = self.viewer(Limits(max_send_backlog=12))
        viewer.pauseProducing()
        written = len(b"".join(request.written))
        publisher.audio(1100, aac_frame(2))  # 5 + 15 bytes: reaches the limit
        publisher.audio(1120, aac_frame(3))
        publisher.audio(1140, AAC_SEQUENCE_HEADER)  # headers always pass
        self.assertEqual(len(b"".join(request.written)), written + 2 * 20 - 1)
        self.assertEqual(viewer.frames_dropped, 1)

    def test_client_gone(self) -> None:
        """A cancelled response (the client went away) unsubscribes and records stop."""
        self.live_stream()
        viewer, _, done = self.viewer()
        done.cancel()
        self.failureResultOf(done, CancelledError)
        publication = self.hub.get("live", "cam")
        assert publication is not None
        self.assertNotIn(viewer, publication.subscribers)
        self.assertEqual(self.qos.http_clients, {})
        self.assertEqual(
            (self.events[-1].kind, self.events[-1].comment), ("stop", "the client went away")
        )
        self.assertEqual(self.get_json("/api/v1/server")["bytes_out"] >= viewer.bytes_sent, True)

    def test_admin_drop(self) -> None:
        """An administrator can drop an HTTP-FLV viewer like any client."""
        self.live_stream()
        viewer, request, done = self.viewer()
        code, _ = self.post(f"/api/v1/clients/{viewer.client_id}/drop", TOKEN)
        self.assertEqual(code, 200)
        self.assertEqual(self.successResultOf(done), b"")
        self.assertEqual(self.qos.http_clients, {})
        self.assertEqual(self.events[-1].comment, "dropped by an administrator")
