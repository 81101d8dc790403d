"""
The in-repo RTMP client (:class:`tests.helpers.FlashClient`) over a real socket.

Interop tests use :class:`SocketPeer` where they need to craft what a
publisher sends (timestamps that jump, chosen frames) or to assert on the
exact bytes a player receives.  ``Pipe`` is the byte transport underneath,
one per RTMP transport the scenario tests cover (:data:`TRANSPORTS`).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable

import attrs

from flashstream.rtmp.messages import Message, MessageType
from tests.helpers import FlashClient, Received, seeded_random


class Pipe:
    """Bytes to and from the server: plain TCP (RTMP)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.closed = False

    def send(self, data: bytes) -> None:
        """Send everything."""
        if data:
            self.sock.sendall(data)

    def recv(self, timeout: float) -> bytes:
        """Up to 64 KB, or b"" if nothing came within ``timeout``; sets ``closed`` at EOF."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return b""
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
        return data

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def _insecure() -> ssl.SSLContext:
    """A TLS client context for the server's self-signed development certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class TLSPipe(Pipe):
    """RTMPS: the same bytes inside TLS."""

    def __init__(self, host: str, port: int) -> None:
        raw = socket.create_connection((host, port), timeout=10)
        self.sock = _insecure().wrap_socket(raw, server_hostname="localhost")
        self.closed = False

    def recv(self, timeout: float) -> bytes:
        """As :meth:`Pipe.recv`; TLS errors at close count as EOF."""
        try:
            return super().recv(timeout)
        except ssl.SSLError:
            self.closed = True
            return b""


class TunnelPipe(Pipe):
    """RTMPT (or RTMPTS with ``tls``): the bytes in HTTP POSTs ``/send`` and ``/idle``."""

    tls = False

    def __init__(self, host: str, port: int) -> None:
        if self.tls:
            self.http: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=20, context=_insecure()
            )
        else:
            self.http = http.client.HTTPConnection(host, port, timeout=20)
        self.closed = False
        self.seq = 0
        status, body = self._post("/open/1", b"\x00")
        assert status == 200, (status, body)
        self.session = body.strip().decode("ascii")

    def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.http.request(
            "POST", path, body, {"Content-Type": "application/x-fcs", "Connection": "Keep-Alive"}
        )
        response = self.http.getresponse()
        return response.status, response.read()

    def _command(self, command: str, body: bytes) -> bytes:
        if self.closed:
            return b""
        self.seq += 1
        status, answer = self._post(f"/{command}/{self.session}/{self.seq}", body)
        if status != 200:
            self.closed = True  # the server ended the session
            return b""
        return answer[1:]  # the first byte is the polling interval

    def send(self, data: bytes) -> None:
        """POST the bytes; what comes back is kept for the next :meth:`recv`."""
        if data:
            self._pending = getattr(self, "_pending", b"") + self._command("send", data)

    def recv(self, timeout: float) -> bytes:
        """What a ``/send`` brought back, or one ``/idle`` poll (held by the server)."""
        pending = getattr(self, "_pending", b"")
        if pending:
            self._pending = b""
            return pending
        return self._command("idle", b"\x00")

    def close(self) -> None:
        """Close the session, then the HTTP connection."""
        if not self.closed:
            try:
                self._command("close", b"\x00")
            except (OSError, http.client.HTTPException):
                pass
        self.http.close()


class TLSTunnelPipe(TunnelPipe):
    """RTMPTS: RTMPT inside HTTPS."""

    tls = True


@attrs.frozen
class Transport:
    """One RTMP transport: how to open its byte pipe, which client kind speaks it."""

    open: Callable[[str, int], Pipe]
    #: A :class:`FlashClient` kind (RTMPE kinds encrypt after the handshake).
    kind: str
    #: The listener it uses: ``rtmp``, ``rtmps`` or ``http``.
    listener: str = "rtmp"
    #: Whether a player that stops reading can be congested and come back.
    #: Not over the HTTP tunnels: a session nobody polls is ended (see the
    #: report of issue 9; the scenario leaves that phase out for them).
    can_stall: bool = True

    def peer(self, port: int, seed: int) -> SocketPeer:
        """A :class:`SocketPeer` over this transport to the listener on ``port``."""
        return SocketPeer(self.open("127.0.0.1", port), self.kind, seed)


#: The transports the scenario tests run over.  RTMPE is served on the RTMP
#: port (the C0 byte tells them apart), RTMPT on the HTTP port, RTMPS and
#: RTMPTS on the TLS port (the first bytes inside tell them apart).
TRANSPORTS: dict[str, Transport] = {}


class SocketPeer:
    """A FlashClient talking to the real server through a :class:`Pipe`."""

    def __init__(self, pipe: Pipe, kind: str = "ffmpeg", seed: int = 1) -> None:
        self.pipe = pipe
        self.client = FlashClient(kind, seeded_random(seed))
        self.stream_id = 0

    def flush(self) -> None:
        """Send what the client queued."""
        self.pipe.send(self.client.data_to_send())

    def read_until(
        self, done: Callable[[], bool], timeout: float = 10.0, what: str = "a reply"
    ) -> None:
        """Exchange bytes until ``done()`` (AssertionError after ``timeout`` s or at EOF)."""
        deadline = time.monotonic() + timeout
        self.flush()
        while not done():
            if self.pipe.closed:
                raise AssertionError(f"connection closed while waiting for {what}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {timeout}s: {self.client.status_codes()}")
            self.client.receive(self.pipe.recv(min(remaining, 0.5)))
            self.flush()

    def read_for(self, seconds: float) -> None:
        """Exchange bytes for ``seconds`` (or until EOF)."""
        deadline = time.monotonic() + seconds
        self.flush()
        while not self.pipe.closed and (remaining := deadline - time.monotonic()) > 0:
            self.client.receive(self.pipe.recv(min(remaining, 0.2)))
            self.flush()

    def wait_closed(self, timeout: float = 10.0) -> None:
        """Read until the server closes the connection."""
        deadline = time.monotonic() + timeout
        while not self.pipe.closed:
            if time.monotonic() > deadline:
                raise AssertionError("the server did not close the connection")
            self.client.receive(self.pipe.recv(0.5))

    def sync(self, timeout: float = 20.0) -> None:
        """Wait until the server has handled everything sent so far.

        The server handles a connection's commands in order, so the answer
        to a ``createStream`` sent now comes after all of them.
        """
        txn = self.client.create_stream()
        self.read_until(lambda: bool(self.client.results(txn)), timeout, "createStream answer")

    def status(self, code: str, timeout: float = 10.0) -> None:
        """Wait for an onStatus ``code``."""
        self.read_until(lambda: code in self.client.status_codes(), timeout, code)

    def connect(self, app: str) -> None:
        """Handshake and connect; wait for the answer."""
        self.client.connect(app)
        self.read_until(lambda: bool(self.client.results(1.0)), what="connect answer")

    def create_stream(self) -> int:
        """createStream; wait for and return the id."""
        txn = self.client.create_stream()
        self.read_until(lambda: bool(self.client.results(txn)), what="createStream answer")
        value = self.client.result(txn).arguments[0]
        assert isinstance(value, float)
        self.stream_id = int(value)
        return self.stream_id

    def publish(self, app: str, name: str, expect: str | None = "NetStream.Publish.Start") -> None:
        """Connect, createStream and publish like ffmpeg; wait for ``expect``."""
        self.connect(app)
        self.client.release_stream(name)
        self.client.fc_publish(name)
        self.create_stream()
        self.client.publish(self.stream_id, name)
        if expect is not None:
            self.status(expect)

    def play(self, app: str, name: str) -> None:
        """Connect, createStream and play; wait for Play.Start."""
        self.connect(app)
        self.create_stream()
        self.client.play(self.stream_id, name)
        self.client.set_buffer_length(self.stream_id, 3000)
        self.status("NetStream.Play.Start")

    def video(self, timestamp: int, payload: bytes) -> None:
        """Queue and send a video message."""
        self.client.video(self.stream_id, timestamp, payload)
        self.flush()

    def audio(self, timestamp: int, payload: bytes) -> None:
        """Queue and send an audio message."""
        self.client.audio(self.stream_id, timestamp, payload)
        self.flush()

    def media(self, type_id: int | None = None) -> list[Message]:
        """Media received on the peer's stream (of ``type_id``, if given)."""
        return [
            m for m in self.client.media(self.stream_id) if type_id is None or m.type_id == type_id
        ]

    def video_count(self) -> int:
        """How many video messages arrived so far."""
        return len(self.media(MessageType.VIDEO))

    def received(self) -> list[Received]:
        """Everything received so far."""
        return self.client.received

    def close(self) -> None:
        """Close the pipe."""
        self.pipe.close()


TRANSPORTS["rtmp"] = Transport(Pipe, "ffmpeg")
TRANSPORTS["rtmpe"] = Transport(Pipe, "librtmp_rtmpe")
TRANSPORTS["rtmps"] = Transport(TLSPipe, "ffmpeg", "rtmps")
TRANSPORTS["rtmpt"] = Transport(TunnelPipe, "ffmpeg", "http", can_stall=False)
TRANSPORTS["rtmpts"] = Transport(TLSTunnelPipe, "ffmpeg", "rtmps", can_stall=False)
TRANSPORTS["rtmpte"] = Transport(TunnelPipe, "librtmp_rtmpe", "http", can_stall=False)
