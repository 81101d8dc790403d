# trial's assertion methods are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""Tracking events, the access log, the SSE feed and webhooks (flashstream.tracking)."""

from __future__ import annotations

import io
import json
from typing import Any

from klein import Klein
from treq.testing import StubTreq
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from flashstream.tracking import (
    ACCESS_LOG_FIELDS,
    AccessLog,
    EventFeed,
    Tracker,
    TrackingEvent,
    Webhooks,
    access_log_line,
)
from tests.helpers import AVC_SEQUENCE_HEADER, avc_inter, avc_keyframe
from tests.monitoring_kit import MonitoredTestCase, StreamingRequest


def event(**fields: Any) -> TrackingEvent:
    """A tracking event with plausible defaults."""
    values: dict[str, Any] = {
        "id": 1,
        "kind": "stop",
        "time": 1700000000.25,
        "client_id": 7,
        "transport": "rtmp",
        "address": "10.0.0.5:50123",
        "app": "live",
        "stream": "cam",
        "client_version": "LNX 9,0,124,2",
        "bytes_in": 3500,
        "bytes_out": 123456,
        "stream_bytes_out": 120000,
        "duration": 12.5,
    }
    values.update(fields)
    return TrackingEvent(**values)


class TrackerTests(MonitoredTestCase):
    """Events from real RTMP conversations."""

    def test_session_events_in_order_with_bytes_and_durations(self) -> None:
        """
        connect, publish, play, pause, unpause, seek, stop and disconnect are
        recorded in order; stop and disconnect carry durations and bytes that
        match what the player received.
        """
        publisher = self.publisher()
        publisher.video(0, AVC_SEQUENCE_HEADER)
        publisher.video(0, avc_keyframe(1))
        self.clock.advance(1)
        player = self.peer()
        player.play("cam")
        start_bytes = self.connection_of(player).bytes_sent
        for n in range(2, 6):
            publisher.video(n * 40, avc_inter(n))
        self.clock.advance(2)
        player.client.pause(player.stream_id, True, 100.0)
        player.client.pause(player.stream_id, False, 100.0)
        player.client.seek(player.stream_id, 500.0)
        player.pump()
        received = sum(len(m.payload) for m in player.client.media())
        player.lose()
        publisher.lose()
        pid, vid = publisher.protocol.client_id, player.protocol.client_id
        self.assertEqual(
            self.kinds(),
            [
                ("connect", pid, None),
                ("publish", pid, "cam"),
                ("connect", vid, None),
                ("play", vid, "cam"),
                ("pause", vid, "cam"),
                ("unpause", vid, "cam"),
                ("seek", vid, "cam"),
                ("stop", vid, "cam"),
                ("disconnect", vid, None),
                ("stop", pid, "cam"),
                ("disconnect", pid, None),
            ],
        )
        stop = self.events[7]
        self.assertEqual(stop.stream_bytes_out, received)  # the cached start included
        self.assertEqual(stop.duration, 2.0)
        self.assertEqual(self.events[6].position, 500.0)
        gone = self.events[8]
        self.assertEqual(gone.bytes_out, self.connection_of(player).bytes_sent)
        self.assertGreater(gone.bytes_out, start_bytes)
        self.assertEqual(gone.transport, "rtmp")
        self.assertEqual(gone.client_version, "LNX 9,0,124,2")
        publish_stop = self.events[9]
        self.assertEqual(publish_stop.duration, 3.0)
        self.assertEqual(
            publish_stop.stream_bytes_in,
            len(AVC_SEQUENCE_HEADER)
            + len(avc_keyframe(1))
            + sum(len(avc_inter(n)) for n in range(2, 6)),
        )

    def test_refused_connections_leave_no_events(self) -> None:
        """A connect to an unknown application is not a session: no connect, no disconnect."""
        peer = self.peer()
        peer.connect("nope")
        peer.lose()
        self.assertEqual(self.events, [])


class AccessLogTests(SynchronousTestCase):
    """The W3C extended access log."""

    def test_header_then_one_line_per_event(self) -> None:
        """A new file starts with #Version/#Software/#Date/#Fields; each event is one line."""
        clock = Clock()
        clock.advance(1700000000)
        out = io.StringIO()
        log = AccessLog(out, clock)
        log(event())
        log(event(id=2, kind="disconnect", stream=None, stream_bytes_out=None))
        lines = out.getvalue().splitlines()
        self.assertEqual(lines[0], "#Version: 1.0")
        self.assertTrue(lines[1].startswith("#Software: flashstream "))
        self.assertEqual(lines[2], "#Date: 2023-11-14 22:13:20")
        self.assertEqual(lines[3], "#Fields: " + " ".join(ACCESS_LOG_FIELDS))
        rows = [dict(zip(ACCESS_LOG_FIELDS, line.split("\t"), strict=True)) for line in lines[4:]]
        self.assertEqual(rows[0]["x-event"], "stop")
        self.assertEqual(rows[0]["x-category"], "stream")
        self.assertEqual(
            (rows[0]["date"], rows[0]["time"], rows[0]["tz"]), ("2023-11-14", "22:13:20", "UTC")
        )
        self.assertEqual(rows[0]["c-ip"], "10.0.0.5")
        self.assertEqual(rows[0]["x-duration"], "12.5")
        self.assertEqual(rows[0]["sc-bytes"], "123456")
        self.assertEqual(rows[0]["sc-stream-bytes"], "120000")
        self.assertEqual(rows[0]["cs-stream-bytes"], "-")
        self.assertEqual(rows[0]["c-user-agent"], "LNX 9,0,124,2")
        self.assertEqual((rows[1]["x-category"], rows[1]["x-sname"]), ("session", "-"))

    def test_existing_file_gets_no_second_header(self) -> None:
        """Appending to a log that has content writes lines only."""
        out = io.StringIO("#Version: 1.0\n")
        out.seek(0, io.SEEK_END)
        AccessLog(out, Clock())(event())
        self.assertEqual(out.getvalue().count("#Version"), 1)

    def test_fields_never_break_the_line(self) -> None:
        """Tabs, newlines and control characters a peer sends in its flashVer become spaces."""
        line = access_log_line(event(client_version="evil\tname\r\nx-event\x01"))
        self.assertEqual(len(line.split("\t")), len(ACCESS_LOG_FIELDS))
        self.assertNotIn("\n", line)
        self.assertIn("evil name  x-event ", line)


class EventFeedTests(SynchronousTestCase):
    """Server-Sent Events."""

    def setUp(self) -> None:
        """A tracker with one old event and a feed."""
        self.clock = Clock()
        self.tracker = Tracker(self.clock)
        self.tracker.record("connect", client_id=1, transport="rtmp", address="a:1", app="live")
        self.feed = EventFeed(self.tracker, self.clock, max_clients=2, keepalive=15)

    def messages(self, request: StreamingRequest) -> list[dict[str, Any]]:
        """The data of every SSE message written to ``request``."""
        text = b"".join(request.written).decode()
        return [
            json.loads(line[len("data: ") :])
            for line in text.splitlines()
            if line.startswith("data: ")
        ]

    def test_history_then_live_events(self) -> None:
        """A new client gets past events, then each new one as id/event/data lines."""
        request = StreamingRequest([b"v1", b"events"])
        self.feed.serve(request)
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-type"), [b"text/event-stream"]
        )
        self.tracker.record(
            "publish", client_id=1, transport="rtmp", address="a:1", app="live", stream="s"
        )
        self.assertEqual([m["kind"] for m in self.messages(request)], ["connect", "publish"])
        self.assertIn(b"id: 2\nevent: publish\ndata: ", b"".join(request.written))

    def test_last_event_id_resumes(self) -> None:
        """A reconnecting client (Last-Event-ID) gets only what it missed."""
        self.tracker.record("disconnect", client_id=1, transport="rtmp", address="a:1", app="live")
        request = StreamingRequest([])
        request.requestHeaders.setRawHeaders(b"last-event-id", [b"1"])
        self.feed.serve(request)
        self.assertEqual([m["kind"] for m in self.messages(request)], ["disconnect"])

    def test_keepalive_and_client_limit(self) -> None:
        """Idle feeds get a comment every keepalive; clients past the limit get 503."""
        first, second, third = StreamingRequest([]), StreamingRequest([]), StreamingRequest([])
        self.feed.serve(first)
        self.feed.serve(second)
        self.assertEqual(self.feed.serve(third), b"too many event feed clients\n")
        self.assertEqual(third.responseCode, 503)
        self.clock.advance(15)
        self.assertEqual(first.written[-1], b": keep-alive\n\n")

    def test_gone_and_slow_clients_are_forgotten(self) -> None:
        """A cancelled request (client gone) or one that stops reading leaves the feed."""
        gone, slow = StreamingRequest([]), StreamingRequest([])
        done = self.feed.serve(gone)
        self.feed.serve(slow)
        assert not isinstance(done, bytes)
        done.cancel()
        self.failureResultOf(done, CancelledError)
        self.assertEqual(len(self.feed.clients), 1)
        slow.producer.pauseProducing()
        self.tracker.record("connect", client_id=2, transport="rtmp", address="b:2", app="live")
        self.assertEqual(self.feed.clients, [])


class WebhookTests(SynchronousTestCase):
    """Events POSTed as JSON."""

    def test_each_event_posted_as_json(self) -> None:
        """Every URL receives every event; failures are logged, not raised."""
        received: list[tuple[bytes, Any]] = []

        class Receiver:
            app = Klein()

            @app.route("/hook", methods=["POST"])
            def hook(self, request: Any) -> bytes:
                received.append((request.path, json.loads(request.content.read())))
                return b"ok"

        http = StubTreq(Receiver().app.resource())
        hooks = Webhooks(("http://hooks.example/hook",), http, max_in_flight=4)
        hooks(event())
        http.flush()
        self.assertEqual(received[0][0], b"/hook")
        self.assertEqual(received[0][1]["kind"], "stop")
        self.assertEqual(received[0][1]["stream_bytes_out"], 120000)
        self.assertEqual(hooks.in_flight, 0)

    def test_bounded_in_flight(self) -> None:
        """Past max_in_flight pending requests, events are dropped (and counted)."""

        class NeverAnswers:
            def __init__(self) -> None:
                self.calls = 0

            def post(self, url: str, **kwargs: Any) -> Any:
                from twisted.internet.defer import Deferred

                self.calls += 1
                return Deferred()

        http = NeverAnswers()
        hooks = Webhooks(("http://a/", "http://b/"), http, max_in_flight=3)
        hooks(event())
        hooks(event(id=2))
        self.assertEqual((http.calls, hooks.dropped, hooks.in_flight), (3, 1, 3))
