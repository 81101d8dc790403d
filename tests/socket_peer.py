"""
The in-repo RTMP client (:class:`tests.helpers.FlashClient`) over a real socket.

Interop tests use :class:`SocketPeer` where they need to craft what a
publisher sends (timestamps that jump, chosen frames) or to assert on the
exact bytes a player receives.  ``Pipe`` is the byte transport underneath,
one per RTMP transport the scenario tests cover (:data:`TRANSPORTS`).
"""

from __future__ import annotations

import socket
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


@attrs.frozen
class Transport:
    """One RTMP transport: how to open its byte pipe, which client kind speaks it."""

    open: Callable[[str, int], Pipe]
    #: A :class:`FlashClient` kind (RTMPE kinds encrypt after the handshake).
    kind: str

    def peer(self, port: int, seed: int) -> SocketPeer:
        """A :class:`SocketPeer` over this transport to the server on ``port``."""
        return SocketPeer(self.open("127.0.0.1", port), self.kind, seed)


#: The transports the scenario tests run over.  RTMPE is served on the RTMP
#: port (the C0 byte tells them apart); RTMPS/RTMPT are not served yet.
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
