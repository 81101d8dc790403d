# trial's assertion methods are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""Prometheus metrics (flashstream.metrics), parsed with prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import AVC_SEQUENCE_HEADER
from tests.monitoring_kit import MonitoredTestCase


class MetricsTests(MonitoredTestCase):
    """``/metrics``."""

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``/metrics``, by name and sorted labels."""
        code, body, headers = self.get("/metrics")
        self.assertEqual(code, 200)
        self.assertTrue(headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain"))
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        }

    def test_figures_by_application_and_transport(self) -> None:
        """Connections, viewers, bytes and event totals carry only application/transport labels."""
        publisher = self.publisher()
        publisher.video(0, AVC_SEQUENCE_HEADER)
        player = self.peer()
        player.protocol.transport_name = "rtmpt"
        player.play("cam")
        samples = self.samples()
        rtmp = (("application", "live"), ("transport", "rtmp"))
        rtmpt = (("application", "live"), ("transport", "rtmpt"))
        self.assertEqual(samples[("flashstream_connections", rtmp)], 1)
        self.assertEqual(samples[("flashstream_connections", rtmpt)], 1)
        self.assertEqual(samples[("flashstream_viewers", rtmpt)], 1)
        self.assertEqual(samples[("flashstream_streams", (("application", "live"),))], 1)
        self.assertEqual(samples[("flashstream_plays_total", rtmpt)], 1)
        self.assertEqual(samples[("flashstream_publishes_total", rtmp)], 1)
        self.assertEqual(
            samples[("flashstream_received_bytes_total", rtmp)],
            self.connection_of(publisher).bytes_received,
        )
        self.assertGreater(samples[("flashstream_resident_memory_bytes", ())], 0)
        for name, labels in samples:
            self.assertLessEqual({k for k, _ in labels}, {"application", "transport"}, name)

    def test_totals_survive_disconnects(self) -> None:
        """Byte counters never go down when clients leave."""
        player = self.peer()
        player.play("cam")
        sent = self.connection_of(player).bytes_sent
        player.lose()
        samples = self.samples()
        rtmp = (("application", "live"), ("transport", "rtmp"))
        self.assertEqual(samples[("flashstream_sent_bytes_total", rtmp)], sent)
        self.assertEqual(samples[("flashstream_disconnects_total", rtmp)], 1)
        self.assertNotIn(("flashstream_connections", rtmp), samples)

    def test_own_registry(self) -> None:
        """Nothing is registered in prometheus-client's global registry."""
        names = {m.name for m in REGISTRY.collect()}
        self.assertFalse({n for n in names if n.startswith("flashstream")})
