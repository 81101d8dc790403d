"""
Interop: shared objects, calls, data messages, bandwidth detection, plugins
and auth, through the real server process on real sockets.

The clients are :class:`tests.socket_client.SocketClient` (the in-repo
FlashClient on a TCP socket, speaking as Flash does) and ffmpeg.  The chat
room plugin of ``examples/chatroom`` and two misbehaving plugins written by
the tests are installed from their own folders, put on the server's
PYTHONPATH, and found through their ``twisted/plugins/``.
"""

from __future__ import annotations

import shutil
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flashstream.auth import token_query
from flashstream.rtmp import commands as cmd
from flashstream.rtmp.messages import MessageType
from flashstream.rtmp.sharedobject import SharedObjectMessage, SOEventType
from tests.helpers import (
    AAC_SEQUENCE_HEADER,
    AVC_SEQUENCE_HEADER,
    aac_frame,
    avc_inter,
    avc_keyframe,
)
from tests.interop_kit import (
    ROOT,
    FlashstreamServer,
    ffmpeg_publish_args,
    finish,
    require_tool,
    running_server,
    start,
    stop_process,
)
from tests.socket_client import SocketClient

pytestmark = pytest.mark.interop

SECRET = "interop-secret"


class Callbacks(BaseHTTPRequestHandler):
    """nginx-rtmp style callback endpoint: /allow 200, /deny 403, /rename 302."""

    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        """Answer by path and remember the form that came."""
        length = int(self.headers.get("Content-Length", 0))
        Callbacks.seen.append(self.path + " " + self.rfile.read(length).decode())
        if self.path.startswith("/allow"):
            self.send_response(200)
        elif self.path.startswith("/rename"):
            self.send_response(302)
            self.send_header("Location", "/live/renamed")
        else:
            self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def http_callbacks() -> Iterator[str]:
    """A loopback HTTP server for on_publish callbacks; its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Callbacks)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


BAD_PLUGINS = """
from twisted.internet.defer import Deferred
from twisted.plugin import IPlugin
from zope.interface import provider

from flashstream.appapi import IServerApplicationFactory, ServerApplication


class Raiser(ServerApplication):
    def on_connect(self, client, arguments):
        if arguments and arguments[0] == "boom":
            raise RuntimeError("this application is broken")

    def remote_crash(self, client):
        return 1 / 0


class Silent(ServerApplication):
    def on_connect(self, client, arguments):
        return Deferred()  # never fires


@provider(IPlugin, IServerApplicationFactory)
class RaiserPlugin:
    name = "raiser"

    @staticmethod
    def build(config):
        return Raiser()


@provider(IPlugin, IServerApplicationFactory)
class SilentPlugin:
    name = "silent"

    @staticmethod
    def build(config):
        return Silent()


raiser = RaiserPlugin
silent = SilentPlugin
"""


def write_config(path: Path, callbacks: str) -> Path:
    """The server configuration of this module."""
    path.write_text(
        textwrap.dedent(
            f"""
            [media]
            shared_objects = "so"

            [applications.chat]
            plugin = "chatroom"
            [applications.chat.settings]
            presenter = "alice"

            [applications.raise]
            plugin = "raiser"

            [applications.silent]
            plugin = "silent"
            hook_timeout = 1.0

            [applications.secure.auth]
            token_secret = "{SECRET}"

            [applications.hooked.auth]
            on_publish = "{callbacks}/deny"

            [applications.hookok.auth]
            on_publish = "{callbacks}/allow"

            [applications.hookrename.auth]
            on_publish = "{callbacks}/rename"

            [applications.locked.auth]
            publish_password = "letmein"
            """
        )
    )
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, http_callbacks: str) -> tuple[Path, list[Path]]:
    """The config file and plugin folders (the chat example, the bad plugins)."""
    base = tmp_path_factory.mktemp("interact")
    chat = base / "chatroom"
    shutil.copytree(ROOT / "examples" / "chatroom", chat)
    bad = base / "badapps"
    (bad / "twisted" / "plugins").mkdir(parents=True)
    (bad / "twisted" / "plugins" / "badapps_plugin.py").write_text(BAD_PLUGINS)
    return write_config(base / "flashstream.toml", http_callbacks), [chat, bad]


@pytest.fixture(scope="module")
def server(setup: tuple[Path, list[Path]]) -> Iterator[FlashstreamServer]:
    """One server for the module."""
    config, paths = setup
    with running_server(["--config", str(config)], extra_path=paths) as running:
        yield running


def connected(server: FlashstreamServer, app: str, *extra: object, seed: int = 1) -> SocketClient:
    """A SocketClient connected to ``app`` (the connect must succeed)."""
    client = SocketClient(server.port, seed=seed)
    result = client.connect(app, *extra)
    assert result.name == "_result", result
    return client


def has_so_event(client: SocketClient, name: str, kind: SOEventType) -> Callable[[], bool]:
    """A wait condition: ``client`` got an event of ``kind`` for ``name``."""
    return lambda: bool(so_events(client, name, kind))


def has_call(client: SocketClient, method: str) -> Callable[[], bool]:
    """A wait condition: the server called ``method`` on ``client``."""
    return lambda: any(c.name == method for c in client.server_calls)


def so_events(client: SocketClient, name: str, kind: SOEventType) -> list[SharedObjectMessage]:
    """Shared object messages for ``name`` holding an event of ``kind``."""
    return [m for m in client.client.shared_objects(name) if any(e.kind is kind for e in m.events)]


# -- shared objects ---------------------------------------------------------------------------


def test_two_clients_see_each_others_changes_with_versions(server: FlashstreamServer) -> None:
    """
    A change from one client comes back as Success to it and as Change to the
    other, with the same new version, from one request; removals and
    ``send`` reach both.
    """
    alice = connected(server, "live", seed=1)
    bob = connected(server, "live", seed=2)
    for client in (alice, bob):
        client.client.so_use("room")
        client.pump(has_so_event(client, "room", SOEventType.USE_SUCCESS))
    start_version = so_events(alice, "room", SOEventType.USE_SUCCESS)[0].version

    alice.client.so_set("room", {"topic": "films", "count": 2.0})
    alice.pump(lambda: bool(so_events(alice, "room", SOEventType.SUCCESS)))
    bob.pump(lambda: bool(so_events(bob, "room", SOEventType.CHANGE)))
    (success,) = so_events(alice, "room", SOEventType.SUCCESS)
    (change,) = so_events(bob, "room", SOEventType.CHANGE)
    assert success.version == change.version == start_version + 1
    assert [e.key for e in success.events] == ["topic", "count"]
    assert dict(change.events[0].pairs) == {"topic": "films", "count": 2.0}

    bob.client.so_set("room", {"topic": "music"})
    bob.flush()
    alice.pump(lambda: len(so_events(alice, "room", SOEventType.CHANGE)) == 1)
    assert so_events(alice, "room", SOEventType.CHANGE)[0].version == start_version + 2

    alice.client.so_remove("room", "count")
    alice.flush()
    for client in (alice, bob):
        client.pump(has_so_event(client, "room", SOEventType.REMOVE))
        (removed,) = so_events(client, "room", SOEventType.REMOVE)
        assert removed.version == start_version + 3
        assert removed.events[0].key == "count"

    bob.client.so_send("room", "onPoke", "hello", 1.0)
    bob.flush()
    for client in (alice, bob):
        client.pump(has_so_event(client, "room", SOEventType.SEND_MESSAGE))
        (sent,) = so_events(client, "room", SOEventType.SEND_MESSAGE)
        assert sent.events[0].arguments == ("onPoke", "hello", 1.0)

    carol = connected(server, "live", seed=3)
    carol.client.so_use("room")
    carol.pump(lambda: bool(so_events(carol, "room", SOEventType.USE_SUCCESS)))
    (use,) = carol.client.shared_objects("room")
    assert use.version == start_version + 3
    assert [e.kind for e in use.events] == [
        SOEventType.USE_SUCCESS,
        SOEventType.CLEAR,
        SOEventType.CHANGE,
    ]
    assert dict(use.events[2].pairs) == {"topic": "music"}
    for client in (alice, bob, carol):
        client.close()


def test_persistent_shared_object_survives_restart(setup: tuple[Path, list[Path]]) -> None:
    """A persistent object's slots and version come back after the server restarts."""
    config, paths = setup
    with running_server(["--config", str(config)], extra_path=paths) as first:
        client = connected(first, "live")
        client.client.so_use("scores", persistent=True)
        client.client.so_set("scores", {"alice": 3.0, "bob": 5.0}, persistent=True)
        client.client.so_set("scores", {"bob": 6.0}, persistent=True)
        client.pump(lambda: len(so_events(client, "scores", SOEventType.SUCCESS)) == 2)
        version = so_events(client, "scores", SOEventType.SUCCESS)[-1].version
        client.close()
    files = list((config.parent / "so" / "live").glob("*.so"))
    assert len(files) == 1
    with running_server(["--config", str(config)], extra_path=paths) as second:
        client = connected(second, "live")
        client.client.so_use("scores", persistent=True)
        client.pump(lambda: bool(so_events(client, "scores", SOEventType.USE_SUCCESS)))
        (use,) = client.client.shared_objects("scores")
        assert use.persistent and use.version == version == 2
        assert [e.kind for e in use.events] == [SOEventType.USE_SUCCESS, SOEventType.CHANGE]
        assert dict(use.events[1].pairs) == {"alice": 3.0, "bob": 6.0}
        second.wait_for(r"Restored shared object live/scores at version 2")
        client.close()


# -- the chat room plugin: hooks, calls both ways ---------------------------------------------


def test_chat_room_plugin(server: FlashstreamServer) -> None:
    """
    The chat example is found through its own twisted/plugins/; its hooks
    run: connect needs a name, the user list is a shared object, client calls
    reach ``remote_*`` methods and get their results, server calls reach the
    clients and their answers come back, and only the presenter publishes.
    """
    anonymous = SocketClient(server.port, seed=9)
    refused = anonymous.connect("chat")
    assert refused.name == "_error"
    info = refused.arguments[0]
    assert isinstance(info, dict)
    assert info["code"] == "NetConnection.Connect.Rejected"
    assert info["description"] == "Give a user name to chat."
    anonymous.close()

    alice = connected(server, "chat", "alice", seed=1)
    alice.client.so_use("users")
    alice.pump(lambda: bool(so_events(alice, "users", SOEventType.USE_SUCCESS)))
    assert "alice" in dict(alice.client.shared_objects("users")[0].events[-1].pairs)

    bob = connected(server, "chat", "bob", seed=2)
    alice.pump(lambda: bool(so_events(alice, "users", SOEventType.CHANGE)[1:]))
    assert "bob" in dict(so_events(alice, "users", SOEventType.CHANGE)[-1].events[0].pairs)

    answer = alice.call("sendMessage", "hello room")
    assert answer.name == "_result" and answer.arguments == (2.0,)
    for client in (alice, bob):
        client.pump(has_call(client, "onMessage"))
        (message,) = [x for x in client.server_calls if x.name == "onMessage"]
        assert message.arguments == ("alice", "hello room")

    bob.handlers["answerQuestion"] = lambda command: f"bob says yes to {command.arguments[0]}"
    asked = alice.call("askEveryone", "pizza?", also=[bob])
    assert asked.name == "_result"
    assert asked.arguments == ({"bob": "bob says yes to pizza?"},)

    missing = alice.call("noSuchMethod")
    assert missing.name == "_error"

    stream_id = bob.create_stream()
    bob.client.publish(stream_id, "talk")
    bob.wait_status("NetStream.Publish.Denied", stream_id)
    statuses = [r.value for r in bob.client.received if r.status_code == "NetStream.Publish.Denied"]
    assert isinstance(statuses[0], cmd.Command)
    assert statuses[0].arguments[0]["description"] == "Only the presenter may publish."  # type: ignore[index]

    bob.close()
    alice.pump(lambda: bool(so_events(alice, "users", SOEventType.REMOVE)))
    assert so_events(alice, "users", SOEventType.REMOVE)[0].events[0].key == "bob"
    alice.close()


def test_misbehaving_plugins_cannot_stall_the_server(server: FlashstreamServer) -> None:
    """
    A plugin that raises refuses with a logged failure; one that never
    answers is timed out and refused, and meanwhile other clients are served.
    """
    mark = server.mark()
    boom = SocketClient(server.port, seed=4)
    refused = boom.connect("raise", "boom")
    assert refused.name == "_error"
    assert "the application failed" in str(refused.arguments[0])
    server.wait_for(r"Application raise failed in connect", start=mark)
    boom.close()

    fine = connected(server, "raise", "fine")
    crashed = fine.call("crash")
    assert crashed.name == "_error"
    assert "the application failed" in str(crashed.arguments[0])
    fine.close()

    silent = SocketClient(server.port, seed=5)
    silent.client.connect("silent")
    silent.flush()
    began = time.monotonic()
    other = connected(server, "live", seed=6)
    other.create_stream()
    served_within = time.monotonic() - began
    assert served_within < 1.0, served_within
    refused = silent.wait_result(1.0)
    assert refused.name == "_error"
    assert "did not answer within 1.0s" in str(refused.arguments[0])
    server.wait_for(r"Application silent did not answer connect within 1.0s", start=mark)
    other.close()
    silent.close()


# -- NetStream.send data --------------------------------------------------------------------


def test_netstream_send_reaches_every_player_in_order(server: FlashstreamServer) -> None:
    """Data messages from the publisher reach two players in order with the media."""
    players = [connected(server, "live", seed=10 + i) for i in range(2)]
    for player in players:
        play_id = player.create_stream()
        player.client.play(play_id, "cues")
        player.wait_status("NetStream.Play.Start", play_id)
    mark = server.mark()
    publisher = SocketClient(server.port, kind="ffmpeg_publish", seed=20)
    assert publisher.connect("live").name == "_result"
    stream_id = publisher.create_stream()
    publisher.client.publish(stream_id, "cues")
    publisher.wait_status("NetStream.Publish.Start", stream_id)
    server.wait_for(r"Publishing live/cues", start=mark)
    sent = publisher.client
    sent.video(stream_id, 0, AVC_SEQUENCE_HEADER)
    sent.audio(stream_id, 0, AAC_SEQUENCE_HEADER)
    sent.video(stream_id, 0, avc_keyframe(1))
    sent.data(stream_id, "onCuePoint", {"name": "intro", "time": 0.01}, timestamp=10)
    sent.audio(stream_id, 20, aac_frame(1))
    sent.data(stream_id, "onTextData", {"text": "subtitle one"}, timestamp=30)
    sent.video(stream_id, 40, avc_inter(2))
    sent.data(stream_id, "onChat", "alice", "hi", timestamp=50, amf3=True)
    sent.audio(stream_id, 60, aac_frame(2))
    sent.data(stream_id, "onCuePoint", {"name": "end", "time": 0.07}, timestamp=70)
    publisher.flush()
    for player in players:
        player.pump(
            lambda: len(player.client.media()) >= 10,  # noqa: B023 (used at once)
            what="ten media messages",
        )
        got = [
            (
                m.type_id,
                m.timestamp,
                cmd.decode_data(m.type_id, m.payload).name
                if m.type_id == MessageType.DATA_AMF0
                else m.payload,
            )
            for m in player.client.media()
        ]
        assert got == [
            (9, 0, AVC_SEQUENCE_HEADER),
            (8, 0, AAC_SEQUENCE_HEADER),
            (9, 0, avc_keyframe(1)),
            (18, 10, "onCuePoint"),
            (8, 20, aac_frame(1)),
            (18, 30, "onTextData"),
            (9, 40, avc_inter(2)),
            (18, 50, "onChat"),
            (8, 60, aac_frame(2)),
            (18, 70, "onCuePoint"),
        ]
        chat = [m for m in player.client.media() if m.timestamp == 50][0]
        assert cmd.decode_data(chat.type_id, chat.payload).arguments == ("alice", "hi")
        player.close()
    publisher.close()


# -- bandwidth detection --------------------------------------------------------------------


def bandwidth_check(server: FlashstreamServer, delay: float, seed: int) -> cmd.Command:
    """Run checkBandwidth with replies delayed by ``delay`` s; the onBWDone call."""
    client = connected(server, "live", seed=seed)
    client.reply_delay = delay
    answer = client.call("checkBandwidth")
    assert answer.name == "_result", answer
    (done,) = [c for c in client.server_calls if c.name == "onBWDone"]
    checks = [c for c in client.server_calls if c.name == "onBWCheck"]
    assert len(checks) >= 2 and checks[0].arguments == () and checks[1].arguments
    client.close()
    return done


def test_bandwidth_detection_tracks_an_injected_delay(server: FlashstreamServer) -> None:
    """onBWDone(kbitDown, deltaDown, deltaTime, latency): latency follows the client's delay."""
    quick = bandwidth_check(server, 0.0, 30)
    kbit, delta_down, delta_time, latency = quick.arguments
    assert isinstance(kbit, float) and kbit > 0
    assert isinstance(delta_down, float) and delta_down > 80  # at least the first ~10 KB
    assert isinstance(delta_time, float) and delta_time > 0
    assert isinstance(latency, float) and 0 <= latency < 200
    slow = bandwidth_check(server, 0.3, 31)
    slow_latency = slow.arguments[3]
    assert isinstance(slow_latency, float)
    assert 300 <= slow_latency < 300 + latency + 300, (latency, slow_latency)
    server.wait_for(r"Bandwidth of 127\.0\.0\.1:\d+: \d+ kbit/s down, latency 3\d\d ms")


# -- auth, with ffmpeg ----------------------------------------------------------------------


def ffmpeg_publish(server: FlashstreamServer, path: str, seconds: float = 2) -> tuple[int, str]:
    """Publish with ffmpeg to ``rtmp://.../path``; (exit code, stderr)."""
    url = f"rtmp://127.0.0.1:{server.port}/{path}"
    code, _, err = finish(start(ffmpeg_publish_args(url, seconds)), timeout=seconds + 30)
    return code, err


def refused_publish(server: FlashstreamServer, path: str, why: str) -> None:
    """ffmpeg fails with ``why`` in its error and the server publishes nothing."""
    app, _, name = path.partition("/")
    name = name.split("?")[0]
    mark = server.mark()
    code, err = ffmpeg_publish(server, path)
    assert code != 0, err
    assert why in err, err
    server.wait_for(rf"Refused publish of {app}/{name} from 127\.0\.0\.1: ", start=mark)
    assert f"Publishing {app}/{name}" not in "\n".join(server.lines[mark:])


def accepted_publish(server: FlashstreamServer, path: str, published: str) -> None:
    """ffmpeg publishes for a moment and the server says so."""
    mark = server.mark()
    url = f"rtmp://127.0.0.1:{server.port}/{path}"
    publisher = start(ffmpeg_publish_args(url, 30))
    server.wait_for(rf"Publishing {published}\b", timeout=20, start=mark)
    stop_process(publisher)


def test_tokens(server: FlashstreamServer) -> None:
    """Publishing needs a valid, unexpired, untampered token."""
    require_tool("ffmpeg")
    refused_publish(server, "secure/cam", "a signed token (expires, token) is required")
    good = token_query(SECRET, "publish", "secure", "cam", int(time.time()) + 600)
    accepted_publish(server, f"secure/cam?{good}", "secure/cam")
    expired = token_query(SECRET, "publish", "secure", "cam", int(time.time()) - 5)
    refused_publish(server, f"secure/cam?{expired}", "the token has expired")
    tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
    refused_publish(server, f"secure/cam?{tampered}", "the token is not valid for this stream")
    other_stream = token_query(SECRET, "publish", "secure", "other", int(time.time()) + 600)
    refused_publish(server, f"secure/cam?{other_stream}", "not valid for this stream")


def test_http_callbacks_and_password(server: FlashstreamServer) -> None:
    """on_publish: 403 refuses, 2xx allows, 3xx renames; a publish password is checked."""
    require_tool("ffmpeg")
    Callbacks.seen.clear()
    refused_publish(server, "hooked/cam", "the publish callback answered HTTP 403")
    assert any(s.startswith("/deny ") and "name=cam" in s for s in Callbacks.seen)
    accepted_publish(server, "hookok/cam", "hookok/cam")
    accepted_publish(server, "hookrename/cam", "hookrename/renamed")
    refused_publish(server, "locked/cam", "wrong or missing publish password")
    refused_publish(server, "locked/cam?password=nope", "wrong or missing publish password")
    accepted_publish(server, "locked/cam?password=letmein", "locked/cam")
