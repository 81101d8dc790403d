# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics at ``/metrics`` (prometheus-client, our own registry).

Every figure is labelled by application and transport at most -- never by
client or stream name -- so the number of series stays small however many
people connect.  Values are read from :class:`~flashstream.qos.QosMonitor`
and the :class:`~flashstream.tracking.Tracker` at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from .qos import QosMonitor
from .tracking import Tracker, TrackingEvent


class EventCounter:
    """Counts tracking events by kind, application and transport."""

    def __init__(self, tracker: Tracker) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}
        tracker.observers.append(self)

    def __call__(self, event: TrackingEvent) -> None:
        """Count one event."""
        key = (event.kind, event.app, event.transport)
        self.counts[key] = self.counts.get(key, 0) + 1


#: Tracking event kind -> (metric name, help).
_EVENT_METRICS = {
    "connect": ("flashstream_connects", "Connections accepted."),
    "publish": ("flashstream_publishes", "Streams published."),
    "play": ("flashstream_plays", "Plays started."),
    "stop": ("flashstream_stops", "Publishes and plays that ended."),
    "disconnect": ("flashstream_disconnects", "Connections that ended."),
}


class FlashstreamCollector(Collector):
    """Reads the QoS monitor and event counts at each scrape."""

    def __init__(self, qos: QosMonitor, events: EventCounter) -> None:
        self.qos = qos
        self.events = events

    def collect(self) -> Iterator[Metric]:
        """The current metrics."""
        qos = self.qos
        labels = ["application", "transport"]
        connections = GaugeMetricFamily(
            "flashstream_connections", "Clients connected now.", labels=labels
        )
        for (app, transport), count in sorted(qos.connections_by().items()):
            connections.add_metric([app, transport], count)
        yield connections

        bytes_by: dict[tuple[str, str], list[int]] = {
            k: list(v) for k, v in qos.closed_bytes.items()
        }
        for protocol in qos.factory.connections:
            if protocol.connection is None:
                continue
            entry = bytes_by.setdefault((protocol.app_name, protocol.transport_name), [0, 0])
            entry[0] += protocol.connection.bytes_received
            entry[1] += protocol.connection.bytes_sent
        for viewer in qos.http_clients.values():
            entry = bytes_by.setdefault((viewer.app_name, viewer.transport_name), [0, 0])
            entry[1] += viewer.bytes_sent
        received = CounterMetricFamily(
            "flashstream_received_bytes", "Bytes received from clients.", labels=labels
        )
        sent = CounterMetricFamily(
            "flashstream_sent_bytes", "Bytes sent to clients.", labels=labels
        )
        for (app, transport), (bytes_in, bytes_out) in sorted(bytes_by.items()):
            received.add_metric([app, transport], bytes_in)
            sent.add_metric([app, transport], bytes_out)
        yield received
        yield sent

        streams = GaugeMetricFamily(
            "flashstream_streams", "Live streams being published now.", labels=["application"]
        )
        viewers = GaugeMetricFamily(
            "flashstream_viewers", "Players of live streams now.", labels=labels
        )
        stream_counts: dict[str, int] = {}
        viewer_counts: dict[tuple[str, str], int] = {}
        for stream in qos.streams():
            stream_counts[stream["app"]] = stream_counts.get(stream["app"], 0) + 1
            for transport, count in stream["viewers_by_transport"].items():
                key = (stream["app"], transport)
                viewer_counts[key] = viewer_counts.get(key, 0) + count
        for app, count in sorted(stream_counts.items()):
            streams.add_metric([app], count)
        for (app, transport), count in sorted(viewer_counts.items()):
            viewers.add_metric([app, transport], count)
        yield streams
        yield viewers

        for kind, (name, text) in _EVENT_METRICS.items():
            family = CounterMetricFamily(name, text, labels=labels)
            for (event_kind, app, transport), count in sorted(self.events.counts.items()):
                if event_kind == kind:
                    family.add_metric([app, transport], count)
            yield family

        yield CounterMetricFamily(
            "flashstream_cpu_seconds", "CPU time used by the server.", value=qos._cpu_seconds()
        )
        yield GaugeMetricFamily(
            "flashstream_resident_memory_bytes", "Resident memory.", value=qos.memory_bytes()
        )
        yield GaugeMetricFamily(
            "flashstream_uptime_seconds",
            "Seconds since the server started.",
            value=qos.clock.seconds() - qos.started_at,
        )


class Metrics(Resource):
    """``/metrics``, with its own registry (not prometheus-client's global one).

    A leaf resource rather than a Klein app: the bare ``/metrics`` path (what
    Prometheus scrapes) must answer without a redirect to ``/metrics/``.
    """

    isLeaf = True

    def __init__(self, qos: QosMonitor, tracker: Tracker) -> None:
        super().__init__()
        self.registry = CollectorRegistry(auto_describe=False)
        self.events = EventCounter(tracker)
        self.registry.register(FlashstreamCollector(qos, self.events))

    def render_GET(self, request: IRequest) -> bytes:
        """The Prometheus text exposition."""
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self.registry)
