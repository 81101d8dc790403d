"""
Interop: every transport with real clients and real sockets.

One server with all three listeners (``--rtmp``, ``--rtmps`` with the
development certificate, ``--http``) on ephemeral loopback ports serves most
tests: ffmpeg publishes and plays over rtmp, rtmps, rtmpt and rtmpts;
rtmpdump plays over rtmp, rtmps and rtmpt; one stream is watched over every
transport at once; ffmpeg plays RTMPT through a real HTTP proxy (squid).  A
second server with a small RTMPT session limit takes bad input on every port.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .interop_kit import (
    FlashstreamServer,
    ffmpeg_play_args,
    ffmpeg_publish_args,
    finish,
    require_tool,
    running_server,
    start,
    stop_process,
)

pytestmark = pytest.mark.interop


class Ports:
    """The listeners of one server."""

    def __init__(self, server: FlashstreamServer) -> None:
        self.server = server
        self.rtmp = server.port
        self.http = server.port_of("http")
        self.rtmps = server.port_of("rtmps")

    def url(self, transport: str, name: str) -> str:
        """A URL for ``live/name`` over ``transport`` (rtmpt-1935: RTMPT on the RTMP port)."""
        port = {
            "rtmp": self.rtmp,
            "rtmpe": self.rtmp,
            "rtmps": self.rtmps,
            "rtmpte": self.http,
            "rtmpt": self.http,
            "rtmpts": self.rtmps,
            "rtmpt-1935": self.rtmp,
        }[transport]
        scheme = transport.split("-")[0]
        return f"{scheme}://127.0.0.1:{port}/live/{name}"


def listener_args(tmp: Path) -> list[str]:
    """All three listeners on loopback, the development certificate under ``tmp``."""
    return [
        "--rtmps",
        "ssl:0:interface=127.0.0.1",
        "--http",
        "tcp:0:interface=127.0.0.1",
        "--state-dir",
        str(tmp / "state"),
    ]


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    """A server with every listener, shared by the tests of this module."""
    require_tool("ffmpeg")
    tmp = tmp_path_factory.mktemp("transports")
    with running_server(listener_args(tmp), media_root=tmp) as server:
        server.wait_for(r"Created a self-signed development certificate", timeout=5)
        yield Ports(server)


def publish(ports: Ports, transport: str, name: str, seconds: float) -> subprocess.Popen[str]:
    """Start ffmpeg publishing ``live/name`` over ``transport``; wait until it is live."""
    mark = ports.server.mark()
    publisher = start(ffmpeg_publish_args(ports.url(transport, name), seconds=seconds))
    ports.server.wait_for(rf"Publishing live/{name}\b", timeout=20, start=mark)
    return publisher


def ffmpeg_play(url: str, seconds: float) -> subprocess.Popen[str]:
    """Start an ffmpeg player decoding ``seconds`` of ``url`` to framecrc."""
    return start(ffmpeg_play_args(url, seconds))


def frames(process: subprocess.Popen[str], seconds: float) -> tuple[int, int]:
    """Wait for an ffmpeg player; return its (video, audio) frame counts."""
    code, out, err = finish(process, timeout=seconds + 40)
    assert code == 0, f"ffmpeg player failed ({code}):\n{err}"
    video = sum(1 for line in out.splitlines() if line.startswith("0,"))
    audio = sum(1 for line in out.splitlines() if line.startswith("1,"))
    return video, audio


def rtmpdump(url: str, output: Path) -> subprocess.Popen[str]:
    """Start rtmpdump saving live ``url`` to ``output``."""
    return start([require_tool("rtmpdump"), "--live", "-q", "-r", url, "-o", str(output)])


def finish_dump(process: subprocess.Popen[str], output: Path, size: int = 120_000) -> int:
    """
    Let rtmpdump run until ``output`` holds ``size`` bytes (about 3 s of the
    test stream), stop it, and return how many video frames ffmpeg decodes
    from the file without an error.
    """
    deadline = time.monotonic() + 40
    while (not output.exists() or output.stat().st_size < size) and process.poll() is None:
        assert time.monotonic() < deadline, f"rtmpdump wrote too little to {output}"
        time.sleep(0.2)  # polling a file another process writes: no event to await
    stop_process(process)
    check = [require_tool("ffmpeg"), "-v", "error", "-i", str(output), "-f", "framecrc", "-"]
    code, out, err = finish(start(check), timeout=30)
    assert code == 0, err
    return sum(1 for line in out.splitlines() if line.startswith("0,"))


@pytest.mark.parametrize("transport", ["rtmp", "rtmps", "rtmpt", "rtmpts"])
def test_ffmpeg_publishes_and_plays_over(ports: Ports, transport: str) -> None:
    """
    ffmpeg publishes over the transport and an ffmpeg player over the same
    transport decodes about 3 s of video and audio; the server logs both
    connections with the transport's name.
    """
    name = f"pub-{transport}"
    mark = ports.server.mark()
    publisher = publish(ports, transport, name, seconds=12)
    player = ffmpeg_play(ports.url(transport, name), 3)
    video, audio = frames(player, 3)
    assert video >= 45, video
    assert audio >= 70, audio
    connected = [
        line for line in ports.server.lines[mark:] if f"connected to live over {transport} " in line
    ]
    assert len(connected) >= 2, "\n".join(ports.server.lines[mark:])
    stop_process(publisher)


def test_one_stream_every_transport_at_once(ports: Ports, tmp_path: Path) -> None:
    """
    One stream published once over RTMP is played at the same time by ffmpeg
    over rtmp, rtmps, rtmpt, rtmpts and RTMPT on the RTMP port, and by
    rtmpdump over rtmp, rtmps, rtmpt, rtmpe and rtmpte: all six transports at
    once, every player with decodable video; the server names each transport.
    """
    mark = ports.server.mark()
    publisher = publish(ports, "rtmp", "all", seconds=25)
    players = {
        transport: ffmpeg_play(ports.url(transport, "all"), 3)
        for transport in ("rtmp", "rtmps", "rtmpt", "rtmpts", "rtmpt-1935")
    }
    dumps = {
        transport: (rtmpdump(ports.url(transport, "all"), tmp_path / f"{transport}.flv"))
        for transport in ("rtmp", "rtmps", "rtmpt", "rtmpe", "rtmpte")
    }
    for transport, player in players.items():
        video, _ = frames(player, 3)
        assert video >= 45, (transport, video)
    for transport, dumper in dumps.items():
        video = finish_dump(dumper, tmp_path / f"{transport}.flv")
        assert video >= 40, (transport, video)
    named = "\n".join(ports.server.lines[mark:])
    for transport in ("rtmp", "rtmps", "rtmpt", "rtmpts", "rtmpe", "rtmpte"):
        assert f"connected to live over {transport} " in named, transport
    stop_process(publisher)


def free_port() -> int:
    """An unused loopback port for a helper that cannot listen on port 0."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def squid(request: pytest.FixtureRequest) -> Iterator[tuple[int, Path]]:
    """
    A squid forward proxy on a loopback port, with its own configuration;
    ``request.param`` says whether it keeps connections to the server open
    between requests (reuse) or opens a new one for every poll (close).
    """
    sbin = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin"
    binary = shutil.which("squid", path=sbin) or require_tool("squid")
    port = free_port()
    # squid drops to the 'proxy' user when started as root: its directory must
    # be reachable by that user (pytest's tmp_path is not).
    directory = Path(tempfile.mkdtemp(prefix="flashstream-squid-"))
    request.addfinalizer(lambda: shutil.rmtree(directory, ignore_errors=True))
    directory.chmod(0o755)
    persistent = "on" if request.param == "reuse" else "off"
    config = directory / "squid.conf"
    config.write_text(
        f"http_port 127.0.0.1:{port}\n"
        f"pid_filename {directory}/squid.pid\n"
        "cache deny all\n"
        f"access_log stdio:{directory}/access.log\n"
        f"cache_log {directory}/cache.log\n"
        "http_access allow localhost\n"
        "http_access deny all\n"
        f"server_persistent_connections {persistent}\n"
        "client_persistent_connections on\n"
        "shutdown_lifetime 0 seconds\n"
    )
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "proxy", str(directory)], check=True)
        with config.open("a") as file:
            file.write("cache_effective_user proxy\n")
    proxy = start([binary, "-N", "-f", str(config)])
    deadline = time.monotonic() + 30
    log = directory / "cache.log"
    while not (log.exists() and "Accepting HTTP Socket connections" in log.read_text()):
        assert proxy.poll() is None, f"squid exited: {finish(proxy)[2]}"
        assert time.monotonic() < deadline, "squid did not start"
        time.sleep(0.1)  # squid reports readiness only in its log file
    try:
        yield port, directory / "access.log"
    finally:
        stop_process(proxy)


@pytest.mark.parametrize("squid", ["close", "reuse"], indirect=True)
def test_ffmpeg_plays_rtmpt_through_http_proxy(ports: Ports, squid: tuple[int, Path]) -> None:
    """
    ffmpeg with ``http_proxy`` plays RTMPT through squid, whether the proxy
    opens a new connection to flashstream for every poll or reuses them.
    """
    port, access_log = squid
    name = f"proxied-{port}"
    publisher = publish(ports, "rtmp", name, seconds=12)
    env = {**os.environ, "http_proxy": f"http://127.0.0.1:{port}", "no_proxy": ""}
    args = [
        require_tool("ffmpeg"),
        "-hide_banner",
        "-v",
        "error",
        "-i",
        ports.url("rtmpt", name),
        "-t",
        "3",
        "-f",
        "framecrc",
        "-",
    ]
    player = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    video, _ = frames(player, 3)
    assert video >= 45, video
    access = access_log.read_text()
    assert "/open/1" in access and "/idle/" in access, access
    stop_process(publisher)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    """A server with all listeners and an RTMPT limit of 200 sessions and 64 KiB bodies."""
    tmp = tmp_path_factory.mktemp("limited")
    config = tmp / "flashstream.toml"
    config.write_text("[rtmpt]\nmax_sessions = 200\nmax_request_body = 65536\n")
    with running_server(["--config", str(config), *listener_args(tmp)], media_root=tmp) as server:
        yield Ports(server)


def exchange(port: int, data: bytes, tls: bool = False) -> bytes:
    """Send ``data`` to a port and read until the server closes (at most 10 s)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock: socket.socket = raw
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(raw, server_hostname="localhost")
    with sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            received += chunk
        return received


def post(port: int, path: str, body: bytes = b"\x00") -> tuple[int, bytes]:
    """One RTMPT-style POST on a fresh connection; (status, body)."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-fcs\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    reply = exchange(port, request)
    head, _, content = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), content


def test_bad_input_on_every_port(limited: Ports) -> None:
    """
    Random bytes, a TLS ClientHello on the plain port, garbage inside TLS,
    garbage HTTP, a huge RTMPT body and thousands of RTMPT opens each get a
    log line and a closed connection or an HTTP error; an RTMPT session opened
    before them still answers and a player still plays afterwards.
    """
    server = limited.server
    code, sid = post(limited.http, "/open/1")
    assert code == 200
    session = sid.decode().strip()

    mark = server.mark()
    assert exchange(limited.rtmp, b"\x00" + random.Random(4).randbytes(3000)) == b""
    server.wait_for(r"neither RTMP .* nor HTTP", start=mark)

    mark = server.mark()
    with pytest.raises(OSError):  # the TLS handshake fails: the server hung up
        exchange(limited.rtmp, b"", tls=True)
    server.wait_for(r"TLS ClientHello on a plain port", start=mark)

    mark = server.mark()
    assert exchange(limited.rtmps, b"\x00garbage" * 100, tls=True) == b""
    server.wait_for(r"on the TLS port: first bytes", start=mark)

    mark = server.mark()
    assert exchange(limited.http, b"GET /\x00\x01 what\r\n\r\n").startswith(b"HTTP/1.1 400")
    server.wait_for(r"malformed HTTP request", start=mark)

    mark = server.mark()
    huge = b"POST /send/x/0 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n" + bytes(4096)
    assert exchange(limited.rtmp, huge).startswith(b"HTTP/1.1 413")
    server.wait_for(r"HTTP request body of 1000000000 bytes is over the limit", start=mark)

    mark = server.mark()
    with socket.create_connection(("127.0.0.1", limited.http), timeout=30) as flood:
        request = b"POST /open/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n\x00"
        flood.sendall(request * 2000)
        replies = b""
        while replies.count(b"HTTP/1.1 ") < 2000:
            chunk = flood.recv(1 << 20)
            assert chunk, "server closed the flood connection"
            replies += chunk
    assert replies.count(b"HTTP/1.1 503 ") == 2000 - 199, replies.count(b"HTTP/1.1 200 ")
    server.wait_for(r"RTMPT session limit \(200\) reached", start=mark)
    assert sum("session limit" in line for line in server.lines[mark:]) == 1

    code, answer = post(limited.http, f"/idle/{session}/0")
    assert code == 200 and answer[:1] in (b"\x01", b"\x03"), (code, answer)
    publisher = publish(limited, "rtmp", "survivor", seconds=10)
    video, _ = frames(ffmpeg_play(limited.url("rtmps", "survivor"), 2), 2)
    assert video >= 30
    stop_process(publisher)
