"""
Interop: RTMPE through the real server with rtmpdump (librtmp).

ffmpeg publishes over plain RTMP; ``rtmpdump -r rtmpe://...`` plays that
stream over RTMPE on the normal RTMP port, and the FLV it saves must decode
without errors.  rtmpdump's debug log shows the RTMPE handshake it did (C0 6,
S0, its Diffie-Hellman secret and "Genuine Adobe Flash Media Server", which
it only prints once our S1 digest and S2 signature checked out).

rtmpdump always sends C0 = 6, but librtmp's FP10 code wraps signatures
according to the server's S0.  A one-byte rewriting proxy turns the client's
6 into 8 or 9 on the way in, so the server treats it as an XTEA or Blowfish
client and answers S0 = 8/9 with a wrapped S2: rtmpdump then verifies the
wrapped S2 and wraps its own C2, exercising types 8 and 9 against the real
librtmp.

Debian's ffmpeg has no ``rtmpe`` protocol (it is built with GnuTLS, and
ffmpeg's RTMPE needs gcrypt, GMP or OpenSSL), so ffmpeg is not an RTMPE
client here.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .interop_kit import (
    assert_flv_decodes,
    ffmpeg_publish_args,
    finish,
    require_tool,
    running_server,
    start,
    stop_process,
)

pytestmark = pytest.mark.interop

GENUINE = "HandShake: Genuine Adobe Flash Media Server"
#: The stream every test plays.
STREAM = "enc"


class C0RewritingProxy:
    """
    A loopback TCP proxy to the server that replaces the first byte a client
    sends (C0) with ``c0``; everything else passes through untouched.
    """

    def __init__(self, target_port: int, c0: int) -> None:
        self.target_port = target_port
        self.c0 = c0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, rewrite: bool) -> None:
        try:
            while data := source.recv(65536):
                if rewrite:
                    data, rewrite = bytes([self.c0]) + data[1:], False
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        """Close the listener and every proxied connection."""
        for sock in self._sockets:
            sock.close()


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, tuple[str, Path]]]:
    """
    One ffmpeg publisher of ``live/enc`` over plain RTMP, played at the same
    time by three ``rtmpdump -r rtmpe://`` runs: straight to the server (type
    6) and through proxies that make it a type 8 and a type 9 client.  Maps
    the type to (rtmpdump's debug log, the FLV it saved).

    The dumps start as soon as the stream is published: rtmpdump's ``--stop``
    is only honoured from the start of a live stream.
    """
    require_tool("ffmpeg")
    rtmpdump = require_tool("rtmpdump")
    folder = tmp_path_factory.mktemp("rtmpe")
    with running_server() as server:
        mark = server.mark()
        publisher = start(ffmpeg_publish_args(server.url("live", STREAM), seconds=9))
        proxies = {c0: C0RewritingProxy(server.port, c0) for c0 in (8, 9)}
        ports = {6: server.port} | {c0: proxy.port for c0, proxy in proxies.items()}
        try:
            server.wait_for(rf"Publishing live/{STREAM}\b", timeout=15, start=mark)
            players = {
                c0: start(
                    [rtmpdump, "-z", "--live", "--stop", "4", "-o", str(folder / f"{c0}.flv")]
                    + ["-r", f"rtmpe://127.0.0.1:{port}/live/{STREAM}"]
                )
                for c0, port in ports.items()
            }
            results = {}
            for c0, player in players.items():
                code, _, err = finish(player, timeout=40)
                assert code in (0, 2), f"rtmpdump ({c0}) failed ({code}):\n{err[-3000:]}"
                results[c0] = (err, folder / f"{c0}.flv")
            yield results
        finally:
            stop_process(publisher)
            for proxy in proxies.values():
                proxy.close()


def test_rtmpdump_plays_over_rtmpe(dumps: dict[int, tuple[str, Path]]) -> None:
    """rtmpdump plays a live stream over rtmpe:// on the RTMP port; the FLV decodes."""
    err, dump = dumps[6]
    assert "HandShake: Client type: 06" in err
    assert "HandShake: Type Answer   : 06" in err
    assert "Type mismatch" not in err
    assert "HandShake: Secret key:" in err  # the DH exchange ran and RC4 was set up
    assert GENUINE in err
    assert_flv_decodes(dump)


@pytest.mark.parametrize("c0", [8, 9], ids=["xtea", "blowfish"])
def test_rtmpdump_verifies_wrapped_signatures(dumps: dict[int, tuple[str, Path]], c0: int) -> None:
    """
    Served as type 8 (XTEA) or 9 (Blowfish), rtmpdump's FP10 code accepts our
    wrapped S2, and the server takes its wrapped C2 and RC4 stream.
    """
    err, dump = dumps[c0]
    assert f"HandShake: Type Answer   : 0{c0}" in err
    assert GENUINE in err
    assert_flv_decodes(dump)
