# trial's assertion methods are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""The JSON API and its admin actions (flashstream.api)."""

from __future__ import annotations

from flashstream.api import API
from tests.helpers import AVC_SEQUENCE_HEADER, avc_keyframe
from tests.monitoring_kit import TOKEN, MonitoredTestCase


class ReadTests(MonitoredTestCase):
    """GET routes."""

    def test_server_streams_clients(self) -> None:
        """The read routes answer JSON; unknown streams and clients are 404."""
        publisher = self.publisher()
        publisher.video(0, AVC_SEQUENCE_HEADER)
        code, _, headers = self.get("/api/v1/server")
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json"])
        server = self.get_json("/api/v1/server")
        for key in ("uptime", "connections", "streams", "bytes_in", "cpu_percent", "memory_bytes"):
            self.assertIn(key, server)
        self.assertGreater(server["memory_bytes"], 0)
        stream = self.get_json("/api/v1/streams/live/cam")
        self.assertEqual(stream["video"]["codec"], "H.264")
        client = self.get_json(f"/api/v1/clients/{publisher.protocol.client_id}")
        self.assertEqual(client["streams"][0]["name"], "cam")
        self.assertEqual(self.get("/api/v1/streams/live/nope")[0], 404)
        self.assertEqual(self.get("/api/v1/clients/999")[0], 404)


class AdminTests(MonitoredTestCase):
    """Drop a client, stop a stream: bearer token required."""

    def test_no_token_wrong_token_401(self) -> None:
        """Without the token, or with a wrong one, admin actions are 401 and change nothing."""
        player = self.peer()
        player.play("cam")
        path = f"/api/v1/clients/{player.protocol.client_id}/drop"
        self.assertEqual(self.post(path)[0], 401)
        self.assertEqual(self.post(path, token="not-the-token")[0], 401)
        response = self.successResultOf(
            self.web.post(f"http://127.0.0.1{path}", headers={"Authorization": TOKEN})
        )
        self.assertEqual(response.code, 401)  # the Bearer scheme is required
        self.assertTrue(player.connected)
        self.assertEqual(self.formats("Refused admin request")[0]["method"], b"POST")

    def test_drop_closes_exactly_that_client(self) -> None:
        """With the token, dropping a client closes it and no other."""
        publisher = self.publisher()
        first, second = self.peer(), self.peer()
        first.play("cam")
        second.play("cam")
        code, body = self.post(f"/api/v1/clients/{first.protocol.client_id}/drop", TOKEN)
        self.assertEqual((code, body), (200, {"dropped": first.protocol.client_id}))
        self.assertFalse(first.connected)
        self.assertTrue(second.connected)
        self.assertTrue(publisher.connected)
        first.deliver()
        self.assertIn("NetStream.Play.Stop", first.client.status_codes())
        self.assertEqual(self.post("/api/v1/clients/999/drop", TOKEN)[0], 404)

    def test_stop_stream_closes_its_publisher(self) -> None:
        """Stopping a stream ends it (Unpublish for the publisher, UnpublishNotify for players)."""
        publisher = self.publisher()
        publisher.video(0, avc_keyframe())
        player = self.peer()
        player.play("cam")
        player.client.clear()
        code, body = self.post("/api/v1/streams/live/cam/stop", TOKEN)
        self.assertEqual((code, body), (200, {"stopped": "live/cam"}))
        self.assertFalse(publisher.connected)
        self.assertTrue(player.connected)
        player.deliver()
        self.assertIn("NetStream.Play.UnpublishNotify", player.client.status_codes())
        self.assertIsNone(self.hub.get("live", "cam"))
        self.assertEqual(self.post("/api/v1/streams/live/cam/stop", TOKEN)[0], 404)

    def test_no_configured_token_403(self) -> None:
        """While no admin token is configured, admin actions are refused with 403."""
        api = API(self.qos, self.monitoring.feed, admin_token=None)
        self.root.mount("api", api.app.resource())
        player = self.peer()
        player.play("cam")
        self.assertEqual(
            self.post(f"/api/v1/clients/{player.protocol.client_id}/drop", TOKEN)[0], 403
        )
        self.assertTrue(player.connected)
