# trial's assertion methods and StringTransport are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""
Tests for :mod:`flashstream.sniff`: deciding from the first bytes (whole and
one byte at a time) and handing the connection to the RTMP protocol or the
web Site with every byte intact; refusing TLS on the plain port, garbage and
silence with a log line.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransportWithDisconnection
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from flashstream.applications import LiveApplication
from flashstream.config import ApplicationConfig
from flashstream.hub import StreamHub
from flashstream.protocol import RTMPServerFactory, RTMPServerProtocol
from flashstream.rtmpt import RTMPTGateway, make_site
from flashstream.sniff import MAX_PREFIX, Kind, SniffingFactory, classify
from flashstream.web import WebRoot
from tests.helpers import FlashClient, seeded_random

#: The start of a real TLS 1.2 ClientHello record.
CLIENT_HELLO = bytes.fromhex("16030100c8010000c40303") + bytes(32)


class ClassifyTests(SynchronousTestCase):
    """The pure decision."""

    def test_rtmp_c0_values(self) -> None:
        """C0 0x03, 0x06, 0x08 and 0x09 are RTMP from the first byte; other C0 values are not."""
        for c0 in (3, 6, 8, 9):
            self.assertIs(classify(bytes([c0])), Kind.RTMP)
        for c0 in (0, 1, 2, 4, 5, 7, 10, 0x20, 0xFF):
            self.assertIs(classify(bytes([c0])), Kind.UNKNOWN)

    def test_http_methods_byte_at_a_time(self) -> None:
        """Every prefix of 'METHOD ' is undecided; the space decides HTTP."""
        for method in (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"OPTIONS ", b"CONNECT "):
            line = method + b"/open/1 HTTP/1.1\r\n"
            for n in range(len(method)):
                self.assertIs(classify(line[:n]), Kind.UNDECIDED, line[:n])
            for n in range(len(method), len(line)):
                self.assertIs(classify(line[:n]), Kind.HTTP, line[:n])

    def test_tls_and_garbage(self) -> None:
        """0x16 is a TLS ClientHello; text that is no method prefix is unknown at once."""
        self.assertIs(classify(CLIENT_HELLO[:1]), Kind.TLS)
        self.assertIs(classify(b"PROXY TCP4"), Kind.UNKNOWN)
        self.assertIs(classify(b"GEX"), Kind.UNKNOWN)
        self.assertIs(classify(b"get / HTTP/1.1"), Kind.UNKNOWN)
        self.assertIs(classify(b"POSTX"), Kind.UNKNOWN)
        self.assertIs(classify(b""), Kind.UNDECIDED)
        self.assertEqual(MAX_PREFIX, 8)


class Harness:
    """A sniffing factory over a real RTMP factory and web Site, on a Clock."""

    def __init__(self, tls: bool = False) -> None:
        self.clock = Clock()
        hub = StreamHub()
        live = LiveApplication(ApplicationConfig("live", "live"), hub)
        self.rtmp = RTMPServerFactory(
            hub, {"live": live}, self.clock, random_bytes=seeded_random(3)
        )
        root = WebRoot()
        RTMPTGateway(self.rtmp, self.clock, random_bytes=seeded_random(4)).mount_on(root)
        self.site = make_site(root, self.clock, 1 << 20)
        self.factory = SniffingFactory(self.rtmp, self.site, self.clock, tls=tls, timeout=5.0)

    def connect(self) -> tuple[Any, StringTransportWithDisconnection]:
        """A sniffer on a string transport."""
        address = IPv4Address("TCP", "192.0.2.7", 5555)
        protocol = self.factory.buildProtocol(address)
        assert protocol is not None
        transport = StringTransportWithDisconnection(peerAddress=address)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return protocol, transport


def feed(protocol: Any, data: bytes, byte_at_a_time: bool) -> None:
    """Deliver ``data`` whole or one byte at a time."""
    if byte_at_a_time:
        for i in range(len(data)):
            protocol.dataReceived(data[i : i + 1])
    else:
        protocol.dataReceived(data)


class SniffingProtocolTests(SynchronousTestCase):
    """Hand-over and refusal on a string transport."""

    def setUp(self) -> None:
        """Capture log events."""
        # createWithCleanup is annotated for trial's TestCase; it only needs addCleanup.
        self.log = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )

    def dropped(self) -> list[dict[str, Any]]:
        """The 'Dropping' log events."""
        return [e for e in self.log if e.get("log_format", "").startswith("Dropping")]

    def rtmp_handover(self, tls: bool, byte_at_a_time: bool) -> None:
        """C0+C1 reach an RTMPServerProtocol intact; it answers S0+S1+S2 and connects."""
        harness = Harness(tls=tls)
        sniffer, transport = harness.connect()
        client = FlashClient("ffmpeg", seeded_random(8))
        feed(sniffer, client.data_to_send(), byte_at_a_time)
        self.assertIsInstance(sniffer.inner, RTMPServerProtocol)
        self.assertEqual(sniffer.inner.transport_name, "rtmps" if tls else "rtmp")
        client.receive(transport.value())
        transport.clear()
        self.assertTrue(client.handshake_done)
        client.connect("live")
        feed(sniffer, client.data_to_send(), byte_at_a_time)
        client.receive(transport.value())
        self.assertEqual(client.result(1.0).name, "_result")
        transport.loseConnection()
        self.assertEqual(harness.rtmp.connections, set())
        self.assertEqual(self.dropped(), [])

    def test_rtmp_whole(self) -> None:
        """RTMP on the plain port, bytes in one piece."""
        self.rtmp_handover(tls=False, byte_at_a_time=False)

    def test_rtmp_byte_at_a_time(self) -> None:
        """RTMP on the plain port, one byte per read."""
        self.rtmp_handover(tls=False, byte_at_a_time=True)

    def test_rtmps_byte_at_a_time(self) -> None:
        """RTMP inside TLS is named rtmps."""
        self.rtmp_handover(tls=True, byte_at_a_time=True)

    def test_rtmpe_is_named_rtmpe(self) -> None:
        """An RTMPE handshake (C0 = 6) through the plain port completes and is named rtmpe."""
        harness = Harness()
        sniffer, transport = harness.connect()
        client = FlashClient("librtmp_rtmpe", seeded_random(9))
        feed(sniffer, client.data_to_send(), byte_at_a_time=True)
        self.assertEqual(sniffer.inner.transport_name, "rtmp")
        client.receive(transport.value())
        transport.clear()
        client.connect("live")
        feed(sniffer, client.data_to_send(), byte_at_a_time=False)
        client.receive(transport.value())
        self.assertEqual(client.result(1.0).name, "_result")
        self.assertEqual(sniffer.inner.transport_name, "rtmpe")

    def test_http_byte_at_a_time(self) -> None:
        """An HTTP request, one byte per read, is served by the Site (RTMPT /open answered)."""
        for byte_at_a_time in (False, True):
            sniffer, transport = Harness().connect()
            feed(
                sniffer,
                b"POST /open/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n\x00",
                byte_at_a_time,
            )
            reply = transport.value()
            self.assertTrue(reply.startswith(b"HTTP/1.1 200 "), reply)
            self.assertTrue(reply.endswith(seeded_random(4)(16).hex().encode() + b"\n"))

    def test_tls_on_plain_port(self) -> None:
        """A ClientHello on the plain port: a log line saying so and a closed connection."""
        sniffer, transport = Harness().connect()
        feed(sniffer, CLIENT_HELLO, byte_at_a_time=False)
        self.assertFalse(transport.connected)
        self.assertEqual(transport.value(), b"")
        [event] = self.dropped()
        self.assertIn("TLS ClientHello", event["log_format"])
        self.assertEqual(event["peer"], "192.0.2.7:5555")

    def test_garbage(self) -> None:
        """Random bytes (whole or byte by byte) are refused with the bytes in the log line."""
        for byte_at_a_time in (False, True):
            sniffer, transport = Harness(tls=byte_at_a_time).connect()
            feed(sniffer, b"\x00\x17junk" * 20, byte_at_a_time)
            self.assertFalse(transport.connected)
        events = self.dropped()
        self.assertEqual(len(events), 2)
        self.assertEqual(events[0]["prefix"], b"\x00\x17junk\x00\x17")
        self.assertIn("TLS port", events[1]["log_format"])

    def test_tls_inside_tls_is_garbage(self) -> None:
        """On the TLS port a second ClientHello is just not RTMP or HTTP."""
        sniffer, transport = Harness(tls=True).connect()
        feed(sniffer, CLIENT_HELLO, byte_at_a_time=True)
        self.assertFalse(transport.connected)
        [event] = self.dropped()
        self.assertIn("neither RTMP", event["log_format"])

    def test_silence_times_out(self) -> None:
        """A client that sends nothing decisive is dropped after the timeout, not before."""
        harness = Harness()
        sniffer, transport = harness.connect()
        feed(sniffer, b"PO", byte_at_a_time=True)
        harness.clock.advance(4.9)
        self.assertTrue(transport.connected)
        harness.clock.advance(0.1)
        self.assertFalse(transport.connected)
        [event] = self.dropped()
        self.assertEqual(event["prefix"], b"PO")

    def test_decided_connection_has_no_sniff_timer(self) -> None:
        """Once handed over, the sniff timeout no longer applies."""
        harness = Harness()
        sniffer, transport = harness.connect()
        feed(sniffer, b"\x03", byte_at_a_time=False)
        harness.clock.advance(5.0)
        self.assertEqual(self.dropped(), [])
        # the RTMP protocol's own handshake timeout (10 s) still applies
        harness.clock.advance(5.0)
        self.assertFalse(transport.connected)
