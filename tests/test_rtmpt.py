# trial's assertion methods and StringTransport are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""
Tests for :mod:`flashstream.rtmpt`: the RTMPT endpoints through treq's
in-memory ``StubTreq``, sessions carrying real RTMP conversations
(:class:`tests.helpers.FlashClient`), expiry and limits on a ``Clock``, and
the web ``Site``'s body limit and bad-request logging on a string transport.
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from flashstream.applications import LiveApplication
from flashstream.config import ApplicationConfig
from flashstream.hub import StreamHub
from flashstream.protocol import RTMPServerFactory, RTMPServerProtocol
from flashstream.rtmp.limits import Limits
from flashstream.rtmp.tunnel import TunnelLimits
from flashstream.rtmpt import RTMPTGateway, make_site
from flashstream.web import WebRoot
from tests.helpers import AVC_SEQUENCE_HEADER, FlashClient, avc_keyframe, seeded_random


class Server:
    """A hub, an RTMP factory and an RTMPT gateway on one Clock, behind StubTreq."""

    def __init__(
        self, limits: TunnelLimits = TunnelLimits(), rtmp_limits: Limits = Limits()
    ) -> None:
        self.clock = Clock()
        self.hub = StreamHub()
        live = LiveApplication(ApplicationConfig("live", "live"), self.hub)
        self.factory = RTMPServerFactory(
            self.hub, {"live": live}, self.clock, random_bytes=seeded_random(99), limits=rtmp_limits
        )
        self.gateway = RTMPTGateway(self.factory, self.clock, limits, seeded_random(5))
        self.root = WebRoot()
        self.gateway.mount_on(self.root)
        self.treq: Any = StubTreq(self.root)

    def post(
        self, path: str, body: bytes = b"\x00", scheme: str = "http"
    ) -> tuple[int, Any, bytes]:
        """POST ``body`` to ``path``; return (status, headers, body)."""
        response = self.treq_result(
            self.treq.post(
                f"{scheme}://example.com{path}",
                data=body,
                headers={"Content-Type": "application/x-fcs"},
            )
        )
        content = self.treq_result(response.content())
        return response.code, response.headers, content

    def treq_result(self, deferred: Any) -> Any:
        """The result of an in-memory treq call (they complete at once)."""
        self.treq.flush()
        results: list[Any] = []
        deferred.addBoth(results.append)
        if not results:
            # an empty idle poll is held for idle_hold seconds
            self.clock.advance(self.gateway.limits.idle_hold)
            self.treq.flush()
        assert results, "treq call did not complete"
        return results[0]


class TunnelClient:
    """A FlashClient speaking through RTMPT requests like ffmpeg (seq from 0 after open)."""

    def __init__(
        self,
        server: Server,
        scheme: str = "http",
        byte_at_a_time: bool = False,
        kind: str = "ffmpeg",
    ) -> None:
        self.server = server
        self.scheme = scheme
        self.byte_at_a_time = byte_at_a_time
        self.client = FlashClient(kind, seeded_random(len(server.gateway.protocols) + 1))
        code, _, body = server.post("/open/1", scheme=scheme)
        assert code == 200, code
        self.session_id = body.decode().strip()
        self.seq = 0
        self.poll_bytes: list[int] = []
        self.stream_id = 0

    @property
    def protocol(self) -> RTMPServerProtocol:
        """The server-side protocol of this session."""
        return self.server.gateway.protocols[self.session_id]

    def request(self, command: str, body: bytes = b"\x00") -> tuple[int, bytes]:
        """One RTMPT request; hand any answer data to the client."""
        path = f"/{command}/{self.session_id}/{self.seq}"
        self.seq += 1
        code, _, answer = self.server.post(path, body, self.scheme)
        if code == 200 and answer and command != "close":
            self.poll_bytes.append(answer[0])
            if answer[1:]:
                self.client.receive(answer[1:])
        return code, answer

    def pump(self) -> None:
        """Send what the client has, poll, until both sides are quiet."""
        for _ in range(50):
            data = self.client.data_to_send()
            if data:
                pieces = (
                    [data[i : i + 1] for i in range(len(data))] if self.byte_at_a_time else [data]
                )
                for piece in pieces:
                    self.request("send", piece)
            code, answer = self.request("idle")
            if not data and len(answer) <= 1:
                return
        raise AssertionError("the RTMPT conversation did not settle")

    def connect_and_create_stream(self) -> None:
        """Handshake, connect to live, createStream."""
        self.pump()
        self.client.connect("live")
        self.pump()
        txn = self.client.create_stream()
        self.pump()
        value = self.client.result(txn).arguments[0]
        assert isinstance(value, float)
        self.stream_id = int(value)


class GatewayTests(SynchronousTestCase):
    """The RTMPT endpoints."""

    def setUp(self) -> None:
        """Capture log events."""
        # createWithCleanup is annotated for trial's TestCase; it only needs addCleanup.
        self.log = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )

    def logged(self, text: str) -> list[dict[str, Any]]:
        """Log events whose format contains ``text``."""
        return [e for e in self.log if text in e.get("log_format", "")]

    def test_open_answers_id_newline_with_exact_headers(self) -> None:
        """/open/1: 200, application/x-fcs, exact Content-Length, the session id and a newline."""
        server = Server()
        code, headers, body = server.post("/open/1")
        self.assertEqual(code, 200)
        self.assertEqual(body, seeded_random(5)(16).hex().encode() + b"\n")
        self.assertEqual(headers.getRawHeaders("Content-Type"), ["application/x-fcs"])
        self.assertIsNone(headers.getRawHeaders("Transfer-Encoding"))
        protocol = server.gateway.protocols[body.decode().strip()]
        self.assertEqual(protocol.transport_name, "rtmpt")
        self.assertIn(protocol, server.factory.connections)

    def test_rtmpts_over_tls(self) -> None:
        """A session opened over HTTPS is named rtmpts."""
        server = Server()
        client = TunnelClient(server, scheme="https")
        self.assertEqual(client.protocol.transport_name, "rtmpts")

    def test_rtmpte_comes_for_free(self) -> None:
        """RTMPE bytes inside RTMPT polls connect, and the session is named rtmpte."""
        server = Server()
        client = TunnelClient(server, kind="librtmp_rtmpe", byte_at_a_time=True)
        client.connect_and_create_stream()
        self.assertEqual(client.protocol.transport_name, "rtmpte")

    def test_ident2_and_unknown_sessions_are_404(self) -> None:
        """/fcs/ident2 is 404 (Flash carries on); send/idle/close for unknown ids are 404."""
        server = Server()
        self.assertEqual(server.post("/fcs/ident2")[0], 404)
        for command in ("send", "idle", "close"):
            code, headers, _ = server.post(f"/{command}/nosuch/0")
            self.assertEqual(code, 404)
            self.assertEqual(headers.getRawHeaders("Content-Type"), ["application/x-fcs"])
        self.assertEqual(len(self.logged("unknown session")), 3)

    def test_publish_and_play_through_the_tunnel(self) -> None:
        """
        A publisher and a player, each in its own RTMPT session, complete the
        RTMP conversation and the player receives the publisher's video.
        """
        server = Server()
        publisher = TunnelClient(server)
        publisher.connect_and_create_stream()
        publisher.client.publish(publisher.stream_id, "cam")
        publisher.pump()
        self.assertIn("NetStream.Publish.Start", publisher.client.status_codes())
        publisher.client.video(publisher.stream_id, 0, AVC_SEQUENCE_HEADER)
        publisher.client.video(publisher.stream_id, 0, avc_keyframe())
        publisher.pump()
        player = TunnelClient(server, byte_at_a_time=True)
        player.connect_and_create_stream()
        player.client.play(player.stream_id, "cam")
        player.pump()
        self.assertIn("NetStream.Play.Start", player.client.status_codes())
        payloads = [m.payload for m in player.client.media(player.stream_id)]
        self.assertIn(AVC_SEQUENCE_HEADER, payloads)
        self.assertIn(avc_keyframe(), payloads)

    def test_duplicate_request_is_not_fed_twice(self) -> None:
        """A /send repeated with the same seq is not fed twice; the handshake completes."""
        server = Server()
        client = TunnelClient(server)
        c0c1 = client.client.data_to_send()
        client.request("send", c0c1)
        client.seq -= 1
        client.request("send", c0c1)
        self.assertTrue(client.client.handshake_done)
        client.pump()
        client.client.connect("live")
        client.pump()
        self.assertEqual(client.client.result(1.0).name, "_result")

    def test_idle_backoff(self) -> None:
        """Idle polls without data get 1 ten times, then 3, 5, 9, 17, 33."""
        server = Server()
        client = TunnelClient(server)
        for _ in range(16):
            client.request("idle")
        self.assertEqual(client.poll_bytes, [1] * 10 + [3, 5, 9, 17, 33, 33])

    def test_expiry_releases_the_hub(self) -> None:
        """A session silent for session_timeout is torn down and its stream unpublished."""
        server = Server(TunnelLimits(session_timeout=20.0))
        client = TunnelClient(server)
        client.connect_and_create_stream()
        client.client.publish(client.stream_id, "gone")
        client.pump()
        self.assertIsNotNone(server.hub.get("live", "gone"))
        server.clock.advance(19.0)
        self.assertIn(client.session_id, server.gateway.protocols)
        server.clock.advance(1.0)
        self.assertNotIn(client.session_id, server.gateway.protocols)
        self.assertIsNone(server.hub.get("live", "gone"))
        self.assertEqual(server.factory.connections, set())
        self.assertEqual(len(self.logged("expired")), 1)
        self.assertEqual(client.request("idle")[0], 404)

    def test_requests_keep_a_session_alive(self) -> None:
        """Each request pushes expiry back."""
        server = Server(TunnelLimits(session_timeout=20.0))
        client = TunnelClient(server)
        client.pump()
        for _ in range(3):
            server.clock.advance(15.0)
            self.assertEqual(client.request("idle")[0], 200)
        self.assertIn(client.session_id, server.gateway.protocols)

    def test_client_close(self) -> None:
        """/close answers 0x00, ends the protocol's connection, and later requests get 404."""
        server = Server()
        client = TunnelClient(server)
        client.connect_and_create_stream()
        protocol = client.protocol
        code, answer = client.request("close")
        self.assertEqual((code, answer), (200, b"\x00"))
        self.assertNotIn(protocol, server.factory.connections)
        self.assertEqual(client.request("idle")[0], 404)

    def test_server_drop_delivers_last_bytes_then_ends(self) -> None:
        """
        Garbage after the handshake: the protocol drops the peer; the session
        ends (the next request is 404) and the drop is logged.
        """
        server = Server()
        client = TunnelClient(server)
        client.pump()
        self.assertTrue(client.client.handshake_done)
        code, _ = client.request("send", b"\xff" * 64)
        self.assertEqual(code, 200)
        self.assertEqual(client.request("idle")[0], 404)
        self.assertEqual(server.factory.connections, set())
        self.assertTrue(self.logged("Dropping {peer}"))

    def test_session_limit(self) -> None:
        """Opens beyond max_sessions get 503 and one log line; room again after a close."""
        server = Server(TunnelLimits(max_sessions=3))
        clients = [TunnelClient(server) for _ in range(3)]
        for _ in range(50):
            self.assertEqual(server.post("/open/1")[0], 503)
        self.assertEqual(len(self.logged("session limit")), 1)
        clients[0].request("close")
        self.assertEqual(server.post("/open/1")[0], 200)
        self.assertEqual(len(self.logged("accepted again")), 1)
        self.assertEqual(len(server.gateway.protocols), 3)
        self.assertEqual(clients[1].request("idle")[0], 200)

    def test_connection_limits_apply_to_sessions(self) -> None:
        """An /open past max_connections_per_address gets 503 and leaves no session behind."""
        server = Server(rtmp_limits=Limits(max_connections_per_address=2))
        clients = [TunnelClient(server) for _ in range(2)]
        self.assertEqual(server.post("/open/1")[0], 503)
        self.assertEqual(len(server.gateway.sessions), 2)
        self.assertEqual(server.factory.refused["max_connections_per_address"], 1)
        self.assertEqual(len(self.logged("Refusing a connection")), 1)
        clients[0].request("close")
        self.assertEqual(server.post("/open/1")[0], 200)

    def test_body_limit(self) -> None:
        """A /send body over max_request_body gets 413 and ends that session only."""
        server = Server(TunnelLimits(max_request_body=2000))
        victim = TunnelClient(server)
        other = TunnelClient(server)
        code, _ = victim.request("send", b"\x03" * 2001)
        self.assertEqual(code, 413)
        self.assertEqual(victim.request("idle")[0], 404)
        self.assertEqual(server.post("/open/1", b"x" * 2001)[0], 413)
        other.pump()
        self.assertTrue(other.client.handshake_done)
        self.assertEqual(len(self.logged("request body over")), 1)

    def test_backpressure_pauses_the_protocol(self) -> None:
        """Too many queued bytes mark the session's protocol congested until polls drain them."""
        server = Server(TunnelLimits(write_buffer_high=1000, max_response_body=400))
        client = TunnelClient(server)
        client.pump()
        transport = server.gateway.transports[client.session_id]
        transport.write(b"x" * 1200)
        self.assertTrue(client.protocol.is_congested())
        client.server.post(f"/idle/{client.session_id}/{client.seq}")
        client.seq += 1
        self.assertTrue(client.protocol.is_congested())
        client.server.post(f"/idle/{client.session_id}/{client.seq}")
        self.assertFalse(client.protocol.is_congested())


class HeldPollTests(SynchronousTestCase):
    """Empty idle polls are held briefly so clients that poll in a loop do not spin."""

    def start_idle(self, server: Server, client: TunnelClient) -> list[Any]:
        """Send an idle poll without waiting; return the list its response lands in."""
        results: list[Any] = []
        path = f"http://example.com/idle/{client.session_id}/{client.seq}"
        client.seq += 1
        server.treq.post(path, data=b"\x00").addBoth(results.append)
        server.treq.flush()
        return results

    def test_empty_poll_held_until_idle_hold(self) -> None:
        """With nothing queued the answer comes after idle_hold seconds, not before."""
        server = Server(TunnelLimits(idle_hold=0.5))
        client = TunnelClient(server)
        client.pump()
        results = self.start_idle(server, client)
        server.clock.advance(0.4)
        server.treq.flush()
        self.assertEqual(results, [])
        server.clock.advance(0.1)
        server.treq.flush()
        self.assertEqual(results[0].code, 200)
        self.assertEqual(server.treq_result(results[0].content()), b"\x01")

    def test_data_wakes_a_held_poll(self) -> None:
        """Bytes queued for the session answer the held poll at once, all of them together."""
        server = Server(TunnelLimits(idle_hold=30.0))
        client = TunnelClient(server)
        results = self.start_idle(server, client)
        transport = server.gateway.transports[client.session_id]
        transport.write(b"ab")
        transport.write(b"cd")
        server.clock.advance(0)
        server.treq.flush()
        self.assertEqual(server.treq_result(results[0].content()), b"\x01abcd")

    def test_close_releases_held_polls(self) -> None:
        """A session closed by the client answers its held polls at once."""
        server = Server(TunnelLimits(idle_hold=30.0))
        client = TunnelClient(server)
        results = self.start_idle(server, client)
        client.request("close")
        server.treq.flush()
        self.assertEqual(server.treq_result(results[0].content()), b"\x00")


class SiteTests(SynchronousTestCase):
    """The web Site built by make_site: body limit and bad requests, on a string transport."""

    def setUp(self) -> None:
        """Capture log events."""
        # createWithCleanup is annotated for trial's TestCase; it only needs addCleanup.
        self.log = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        server = Server(TunnelLimits(max_request_body=1000))
        self.site = make_site(server.root, server.clock, 1000)

    def connect(self) -> tuple[Any, StringTransport]:
        """A channel of the site on a string transport."""
        address = IPv4Address("TCP", "10.0.0.9", 4242)
        channel = self.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        channel.makeConnection(transport)
        return channel, transport

    def test_huge_body_refused_before_it_is_read(self) -> None:
        """A Content-Length over the limit gets 413 and a closed connection, with a log line."""
        channel, transport = self.connect()
        channel.dataReceived(
            b"POST /send/x/0 HTTP/1.1\r\nHost: h\r\nContent-Length: 500000000\r\n\r\n" + b"\0" * 100
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertTrue(transport.disconnecting)
        events = [e for e in self.log if "over the limit" in e.get("log_format", "")]
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["peer"], "10.0.0.9:4242")

    def test_chunked_body_counted(self) -> None:
        """A chunked body growing past the limit is refused too."""
        channel, transport = self.connect()
        channel.dataReceived(
            b"POST /send/x/0 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(3):
            channel.dataReceived(b"1f4\r\n" + b"a" * 500 + b"\r\n")
        channel.dataReceived(b"0\r\n\r\n")
        self.assertIn(b"HTTP/1.1 413 ", transport.value())
        self.assertNotIn(b"200", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_small_post_is_served_with_exact_status_line(self) -> None:
        """A normal /open through the real Site answers 'HTTP/1.1 200 ' with Content-Length."""
        channel, transport = self.connect()
        channel.dataReceived(
            b"POST /open/1 HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-fcs\r\n"
            b"Content-Length: 1\r\n\r\n\x00"
        )
        reply = transport.value()
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 "), reply)
        self.assertIn(b"Content-Length: 33\r\n", reply)
        self.assertNotIn(b"chunked", reply)
        # RTMPT polls stay out of the access log.
        self.assertFalse([e for e in self.log if "POST /open" in str(e.get("log_format", ""))])

    def test_garbage_http_logged_and_closed(self) -> None:
        """A malformed request gets 400, a log line naming the peer, and a closed connection."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET\x00\x01 garbage\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400"))
        self.assertTrue(transport.disconnecting)
        events = [e for e in self.log if "malformed HTTP" in e.get("log_format", "")]
        self.assertEqual([e["peer"] for e in events], ["10.0.0.9:4242"])
