"""
:class:`tests.helpers.FlashClient` on a real socket, for interop tests.

``SocketClient`` connects to a running server over loopback TCP, sends what
the sans-IO client queues and feeds it what arrives.  It answers the
server's calls with ``handlers`` (``onBWCheck`` by default), optionally after
a fixed ``reply_delay`` -- the known delay the bandwidth test injects.
Every wait is bounded and fails with what was received so far.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Sequence

from flashstream.rtmp import commands as cmd
from tests.helpers import FlashClient, Received, seeded_random

Handler = Callable[[cmd.Command], object]


class SocketClient:
    """A FlashClient talking to a real server."""

    def __init__(self, port: int, kind: str = "flash", seed: int = 1) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.client = FlashClient(kind, seeded_random(seed))
        #: Server calls we answer: name -> function of the command giving the ``_result`` value.
        self.handlers: dict[str, Handler] = {"onBWCheck": lambda command: 0.0}
        #: Seconds to wait before answering a server call.
        self.reply_delay = 0.0
        #: Server calls received (name, transaction id, arguments).
        self.server_calls: list[cmd.Command] = []
        self.closed = False

    def flush(self) -> None:
        """Send whatever the client queued."""
        data = self.client.data_to_send()
        if data:
            self.sock.sendall(data)

    def _answer(self, received: list[Received]) -> None:
        for item in received:
            value = item.value
            if (
                isinstance(value, cmd.Command)
                and item.message.stream_id == 0
                and value.name not in ("_result", "_error", "onStatus")
            ):
                self.server_calls.append(value)
                handler = self.handlers.get(value.name)
                if handler is not None and value.transaction_id > 0:
                    result = handler(value)
                    if self.reply_delay:
                        time.sleep(self.reply_delay)  # the injected delay under test
                    self.client.command("_result", value.transaction_id, None, result)
                    self.flush()

    def pump(
        self,
        until: Callable[[], bool],
        timeout: float = 15.0,
        what: str = "",
        also: Sequence[SocketClient] = (),
    ) -> None:
        """Read and answer until ``until()`` holds; AssertionError after ``timeout``.

        Clients in ``also`` are served at the same time (they answer server calls).
        """
        deadline = time.monotonic() + timeout
        everyone = [self, *also]
        for client in everyone:
            client.flush()
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                raise AssertionError(
                    f"waited for {what or until} ({'closed' if self.closed else 'timeout'}); "
                    f"received {self.client.values()[-20:]}"
                )
            open_clients = [c for c in everyone if not c.closed]
            readable, _, _ = select.select([c.sock for c in open_clients], [], [], remaining)
            for client in open_clients:
                if client.sock in readable:
                    client._read_once()

    def _read_once(self) -> None:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return
        self._answer(self.client.receive(data))
        self.flush()

    def wait_result(self, txn: float, timeout: float = 15.0) -> cmd.Command:
        """The ``_result``/``_error`` of transaction ``txn``."""
        self.pump(lambda: bool(self.client.results(txn)), timeout, f"an answer to {txn}")
        return self.client.result(txn)

    def connect(self, app: str, *extra: object, tc_url: str | None = None) -> cmd.Command:
        """Handshake and ``connect``; return the answer (``_result`` or ``_error``)."""
        self.client.connect(app, extra=extra, object_encoding=3, tc_url=tc_url)
        return self.wait_result(1.0)

    def create_stream(self) -> int:
        """``createStream``; the new stream id."""
        result = self.wait_result(self.client.create_stream())
        assert result.name == "_result", result
        stream_id = result.arguments[0]
        assert isinstance(stream_id, float)
        return int(stream_id)

    def wait_status(self, code: str, stream_id: int | None = None, timeout: float = 15.0) -> None:
        """Wait for an ``onStatus`` with ``code``."""
        self.pump(lambda: code in self.client.status_codes(stream_id), timeout, f"status {code}")

    def call(self, method: str, *args: object, also: Sequence[SocketClient] = ()) -> cmd.Command:
        """``NetConnection.call(method, responder, args...)``; the answer.

        Clients in ``also`` are served meanwhile (to answer the server's calls).
        """
        txn = self.client.next_txn()
        self.client.call(method, txn, *args)
        self.pump(lambda: bool(self.client.results(txn)), what=f"an answer to {method}", also=also)
        return self.client.result(txn)

    def close(self) -> None:
        """Close the socket."""
        self.closed = True
        self.sock.close()
