# trial's assertion methods and StringTransport are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""
A protocol test case with the monitoring stack mounted: QoS, tracking, the
API, metrics, HTTP-FLV and the dashboard on a :class:`WebRoot` reached through
``StubTreq``, all on the test's :class:`~twisted.internet.task.Clock`.
"""

from __future__ import annotations

from typing import Any

import attrs
from treq.testing import StubTreq
from twisted.web.iweb import IRequest
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from flashstream.config import ApiConfig, Config, TrackingConfig
from flashstream.rtmp.connection import ServerConnection
from flashstream.tap import MonitoringService, mount_monitoring
from flashstream.tracking import TrackingEvent
from flashstream.web import WebRoot
from tests.test_protocol import Peer, ProtocolTestCase


@implementer(IRequest)
class StreamingRequest(DummyRequest):  # type: ignore[misc]  # DummyRequest is partial
    """A DummyRequest that keeps a push producer (DummyRequest would pull it forever)."""

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """Remember the producer."""
        self.producer = producer

    def unregisterProducer(self) -> None:
        """Forget it."""
        self.producer = None


TOKEN = "s3cret-token-0123456789"


class MonitoredTestCase(ProtocolTestCase):
    """ProtocolTestCase plus ``self.monitoring``, ``self.web`` (StubTreq) and ``self.events``."""

    tracking = TrackingConfig()

    def setUp(self) -> None:
        """Mount the monitoring stack on a web root and start its timers."""
        super().setUp()
        config = attrs.evolve(Config(), api=ApiConfig(TOKEN), tracking=self.tracking)
        self.root = WebRoot()
        self.monitoring: MonitoringService = mount_monitoring(
            config, self.hub, self.factory, self.root, self.clock
        )
        self.monitoring.startService()
        self.addCleanup(self.monitoring.stopService)
        self.qos = self.monitoring.qos
        self.tracker = self.monitoring.tracker
        self.events: list[TrackingEvent] = []
        self.tracker.observers.append(self.events.append)
        self.web: Any = StubTreq(self.root)

    def get(self, path: str, **kwargs: Any) -> tuple[int, bytes, Any]:
        """GET ``path``; return (code, body, headers)."""
        requested = self.web.get(f"http://127.0.0.1{path}", **kwargs)
        self.web.flush()
        response = self.successResultOf(requested)
        body = response.content()
        self.web.flush()  # static files are written by a producer
        body = self.successResultOf(body)
        return response.code, body, response.headers

    def post(self, path: str, token: str | None = None) -> tuple[int, Any]:
        """POST ``path`` (with ``Authorization: Bearer token`` if given); (code, JSON body)."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        response = self.successResultOf(self.web.post(f"http://127.0.0.1{path}", headers=headers))
        return response.code, self.successResultOf(response.json())

    def get_json(self, path: str) -> Any:
        """GET ``path`` and decode its JSON (asserting 200)."""
        response = self.successResultOf(self.web.get(f"http://127.0.0.1{path}"))
        self.assertEqual(response.code, 200)
        return self.successResultOf(response.json())

    def connection_of(self, peer: Peer) -> ServerConnection:
        """The server side core connection of ``peer``."""
        connection = peer.protocol.connection
        assert connection is not None
        return connection

    def assertNear(self, value: float, expected: float, delta: float) -> None:
        """``value`` is within ``delta`` of ``expected``."""
        self.assertTrue(
            abs(value - expected) <= delta, f"{value} is not within {delta} of {expected}"
        )

    def kinds(self) -> list[tuple[str, int, str | None]]:
        """(kind, client id, stream) of every event so far."""
        return [(e.kind, e.client_id, e.stream) for e in self.events]
