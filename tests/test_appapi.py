# -*- test-case-name: tests.test_appapi -*-
"""
Tests for :mod:`flashstream.appapi` through the adapter: application hooks
that answer now, later, never, or by raising; calls both ways; shared
objects with a vetoing hook; the application API.  In memory, on a Clock.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from flashstream.appapi import ApplicationHost, CallFailed, Client, ServerApplication
from flashstream.applications import LiveApplication, Rejected
from flashstream.calls import CallFailed as ClientCallFailed
from flashstream.config import ApplicationConfig, SharedObjectLimits
from flashstream.hub import StreamHub
from flashstream.interfaces import IStreamApplication
from flashstream.protocol import RTMPServerFactory
from flashstream.rtmp.sharedobject import SOEventType
from tests.helpers import AVC_SEQUENCE_HEADER, avc_keyframe, seeded_random
from tests.test_protocol import Peer


class Scripted(ServerApplication):
    """Hooks whose answers the test sets: a value, a Deferred, or an exception."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}
        self.seen: list[tuple[str, Any]] = []

    def _answer(self, hook: str, *args: Any) -> Any:
        self.seen.append((hook, args))
        answer = self.answers.get(hook)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def on_connect(self, client: Any, arguments: tuple[object, ...]) -> Any:
        """Scripted."""
        return self._answer("connect", arguments)

    def on_disconnect(self, client: Any) -> Any:
        """Scripted."""
        return self._answer("disconnect")

    def on_publish(self, client: Any, name: str, publish_type: str) -> Any:
        """Scripted."""
        return self._answer("publish", name)

    def on_unpublish(self, client: Any, name: str) -> Any:
        """Scripted."""
        return self._answer("unpublish", name)

    def on_play(self, client: Any, name: str) -> Any:
        """Scripted."""
        return self._answer("play", name)

    def on_stop(self, client: Any, name: str) -> Any:
        """Scripted."""
        return self._answer("stop", name)

    def on_shared_object_change(
        self, client: Any, name: str, changes: dict[str, object], removed: list[str]
    ) -> Any:
        """Scripted."""
        return self._answer("so", name, changes, removed)

    def remote_add(self, client: Any, a: float, b: float) -> float:
        """A client-callable method."""
        return a + b

    def remote_later(self, client: Any) -> Any:
        """Answers when the test fires it."""
        return self.answers["later"]

    def remote_fail(self, client: Any) -> None:
        """Refuses with a description."""
        raise CallFailed("no, thanks")


class HostTestCase(SynchronousTestCase):
    """A factory whose ``app`` application is a host around ``live`` and Scripted."""

    def setUp(self) -> None:
        """Build it on a Clock."""
        self.clock = Clock()
        self.hub = StreamHub()
        self.dir = Path(tempfile.mkdtemp(prefix="flashstream-so-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.app = Scripted()
        config = ApplicationConfig(
            "app", hook_timeout=5.0, shared_objects=SharedObjectLimits(max_slots=3)
        )
        self.host = ApplicationHost(
            config,
            LiveApplication(config, self.hub),
            self.hub,
            self.clock,
            application=self.app,
            shared_objects_dir=self.dir,
        )
        self.host.start()
        applications: dict[str, IStreamApplication] = {"app": self.host}
        self.factory = RTMPServerFactory(
            self.hub, applications, self.clock, random_bytes=seeded_random(0)
        )
        self.log = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        self.peers: list[Peer] = []
        self.port = 40000

    def peer(self, kind: str = "flash") -> Peer:
        """A new peer."""
        self.port += 1
        return Peer(self.factory, kind, port=self.port, everyone=self.peers)

    def connected(self) -> Peer:
        """A peer connected to ``app``."""
        peer = self.peer()
        peer.connect("app")
        self.assertEqual(peer.client.result(1.0).name, "_result")
        return peer

    def error_info(self, peer: Peer, txn: float) -> dict[str, object]:
        """The info object of an ``_error``."""
        answer = peer.client.result(txn)
        self.assertEqual(answer.name, "_error")
        info = answer.arguments[0]
        assert isinstance(info, dict)
        return info


class ConnectTests(HostTestCase):
    """connect hooks that answer now, later, never, or raise."""

    def test_deferred_connect_holds_pipelined_commands(self) -> None:
        """A connect decided later answers connect, then the commands pipelined meanwhile."""
        decision: Deferred[None] = Deferred()
        self.app.answers["connect"] = decision
        peer = self.peer()
        peer.pump()
        peer.client.connect("app", extra=("alice",))
        txn = peer.client.create_stream()
        peer.pump()
        self.assertEqual(peer.client.results(1.0), [])
        decision.callback(None)
        peer.deliver()
        self.assertEqual(peer.client.result(1.0).name, "_result")
        self.assertEqual(peer.client.result(txn).arguments, (1.0,))
        self.assertEqual(self.app.seen[0], ("connect", (("alice",),)))
        self.assertEqual(len(self.host.api.clients), 1)

    def test_rejection_reaches_the_client(self) -> None:
        """Rejected from a hook: Connect.Rejected with its description, then the close."""
        self.app.answers["connect"] = Rejected("NetConnection.Connect.Rejected", "Room full.")
        peer = self.peer()
        peer.connect("app")
        info = self.error_info(peer, 1.0)
        self.assertEqual(
            (info["code"], info["description"]), ("NetConnection.Connect.Rejected", "Room full.")
        )
        self.assertFalse(peer.connected)

    def test_raising_hook_refuses_and_logs(self) -> None:
        """A hook that raises something else is logged with its traceback and refuses."""
        self.app.answers["connect"] = RuntimeError("bug")
        peer = self.peer()
        peer.connect("app")
        info = self.error_info(peer, 1.0)
        self.assertEqual(info["description"], "Connection refused: the application failed.")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(peer.connected)

    def test_silent_hook_times_out(self) -> None:
        """A hook that never answers is refused after hook_timeout; others are served meanwhile."""
        self.app.answers["connect"] = Deferred()
        silent = self.peer()
        silent.connect("app")
        self.assertEqual(silent.client.results(1.0), [])
        self.app.answers["connect"] = None
        other = self.connected()
        other.create_stream()
        self.clock.advance(5.0)
        silent.deliver()
        info = self.error_info(silent, 1.0)
        self.assertIn("did not answer within 5.0s", str(info["description"]))
        self.assertTrue(any("did not answer" in str(e.get("log_format")) for e in self.log))

    def test_answer_after_the_client_left_is_harmless(self) -> None:
        """The client leaves while connect is decided; the late answer changes nothing."""
        decision: Deferred[None] = Deferred()
        self.app.answers["connect"] = decision
        peer = self.peer()
        peer.connect("app")
        peer.lose()
        decision.callback(None)  # the application is not broken by answering late
        self.assertEqual(self.host.api.clients, [])
        self.assertEqual(self.app.seen[-1][0], "disconnect")
        self.assertEqual(peer.client.results(1.0), [])


class StreamTests(HostTestCase):
    """publish and play hooks."""

    def test_deferred_publish(self) -> None:
        """Publish.Start comes when the hook's Deferred fires; unpublish runs on_unpublish."""
        decision: Deferred[None] = Deferred()
        self.app.answers["publish"] = decision
        peer = self.connected()
        peer.create_stream()
        peer.client.publish(peer.stream_id, "cam")
        peer.pump()
        self.assertEqual(peer.client.status_codes(), [])
        self.assertIsNone(self.hub.get("app", "cam"))
        decision.callback(None)
        peer.deliver()
        self.assertEqual(peer.client.status_codes(), ["NetStream.Publish.Start"])
        self.assertIsNotNone(self.hub.get("app", "cam"))
        peer.client.close_stream(peer.stream_id)
        peer.pump()
        self.assertIsNone(self.hub.get("app", "cam"))
        self.assertEqual(self.app.seen[-1], ("unpublish", ("cam",)))

    def test_stream_closed_while_deciding(self) -> None:
        """closeStream during the decision: the late yes publishes nothing and says nothing."""
        decision: Deferred[None] = Deferred()
        self.app.answers["publish"] = decision
        peer = self.connected()
        peer.create_stream()
        peer.client.publish(peer.stream_id, "cam")
        peer.client.close_stream(peer.stream_id)
        peer.pump()
        decision.callback(None)
        peer.deliver()
        self.assertEqual(peer.client.status_codes(), [])
        self.assertIsNone(self.hub.get("app", "cam"))

    def test_refused_publish_and_play(self) -> None:
        """Rejected in on_publish / on_play reaches the client as an error status."""
        self.app.answers["publish"] = Rejected("NetStream.Publish.Denied", "Not you.")
        self.app.answers["play"] = Rejected("NetStream.Play.Failed", "Members only.")
        peer = self.connected()
        peer.create_stream()
        peer.client.publish(peer.stream_id, "cam")
        peer.client.play(peer.stream_id, "cam")
        peer.pump()
        self.assertEqual(
            peer.client.status_codes(), ["NetStream.Publish.Denied", "NetStream.Play.Failed"]
        )
        descriptions = [
            c.arguments[0]["description"]  # type: ignore[index]
            for c in peer.client.commands("onStatus")
        ]
        self.assertEqual(descriptions, ["Not you.", "Members only."])

    def test_stop_stream_and_server_stream(self) -> None:
        """The API stops a publisher, and publishes its own stream to players."""
        publisher = self.connected()
        publisher.create_stream()
        publisher.client.publish(publisher.stream_id, "cam")
        publisher.pump()
        self.assertTrue(self.host.api.stop_stream("cam"))
        publisher.deliver()
        self.assertEqual(publisher.client.status_codes()[-1], "NetStream.Unpublish.Success")
        self.assertFalse(self.host.api.stop_stream("cam"))

        player = self.connected()
        player.create_stream()
        player.client.play(player.stream_id, "news")
        player.pump()
        stream = self.host.api.publish("news")
        stream.send(9, 0, AVC_SEQUENCE_HEADER)
        stream.send(9, 0, avc_keyframe(1))
        stream.send_data("onTextData", {"text": "breaking"}, timestamp=5)
        player.deliver()
        self.assertEqual([m.type_id for m in player.client.media()], [9, 9, 18])
        stream.close()
        player.deliver()
        self.assertEqual(player.client.status_codes()[-1], "NetStream.Play.UnpublishNotify")


class CallTests(HostTestCase):
    """Client-to-server and server-to-client calls."""

    def test_client_calls(self) -> None:
        """remote_* methods answer _result; CallFailed and unknown methods answer _error."""
        peer = self.connected()
        peer.client.call("add", 5.0, 2.0, 3.0)
        peer.client.call("fail", 6.0)
        peer.client.call("nothing", 7.0)
        later: Deferred[object] = Deferred()
        self.app.answers["later"] = later
        peer.client.call("later", 8.0)
        peer.pump()
        self.assertEqual(peer.client.result(5.0).arguments, (5.0,))
        self.assertEqual(self.error_info(peer, 6.0)["description"], "no, thanks")
        self.assertIn("'nothing' is not available", str(self.error_info(peer, 7.0)))
        self.assertEqual(peer.client.results(8.0), [])
        later.callback("done")
        peer.deliver()
        self.assertEqual(peer.client.result(8.0).arguments, ("done",))

    def test_server_calls_are_correlated(self) -> None:
        """client.call: the answer to each transaction fires its own Deferred."""
        peer = self.connected()
        (client,) = self.host.api.clients
        first = client.call("getName")
        second = client.call("getAge")
        third = client.call("never")
        peer.deliver()
        calls = [c for c in peer.client.commands() if c.name in ("getName", "getAge", "never")]
        txns = {c.name: c.transaction_id for c in calls}
        peer.client.command("_result", txns["getAge"], None, 42.0)
        peer.client.command("_error", txns["getName"], None, {"description": "shy"})
        peer.pump()
        results: list[object] = []
        second.addCallback(results.append)
        first.addErrback(lambda f: results.append(f.value))
        self.assertEqual(results[0], 42.0)
        assert isinstance(results[1], ClientCallFailed)
        self.assertEqual(results[1].description, "shy")
        self.clock.advance(30.0)
        self.failureResultOf(third)

    def test_broadcast(self) -> None:
        """broadcast calls a method on every client, without answers."""
        peers = [self.connected(), self.connected()]
        self.host.api.broadcast("onNews", "hello")
        for peer in peers:
            peer.deliver()
            (news,) = peer.client.commands("onNews")
            self.assertEqual((news.transaction_id, news.arguments), (0.0, ("hello",)))


class SharedObjectTests(HostTestCase):
    """Shared objects through the host: a vetoing hook, limits, the API."""

    def test_hook_vetoes_a_change(self) -> None:
        """A Rejected on_shared_object_change gives the requester a NoWriteAccess status."""
        peer = self.connected()
        peer.client.so_use("room")
        self.app.answers["so"] = Rejected("x", "read only")
        peer.client.so_set("room", {"a": 1.0})
        peer.pump()
        (status,) = [
            m for m in peer.client.shared_objects("room") if m.events[0].kind is SOEventType.STATUS
        ]
        self.assertEqual(status.events[0].key, "SharedObject.NoWriteAccess")
        self.assertEqual(self.host.api.shared_object("room").data, {})

    def test_deferred_hook_keeps_order(self) -> None:
        """Changes wait for a slow hook and are applied in the order they came."""
        peer = self.connected()
        peer.client.so_use("room")
        slow: Deferred[None] = Deferred()
        self.app.answers["so"] = slow
        peer.client.so_set("room", {"a": 1.0})
        peer.pump()
        self.app.answers["so"] = None
        peer.client.so_set("room", {"a": 2.0})
        peer.pump()
        self.assertEqual(self.host.api.shared_object("room").data, {})
        slow.callback(None)
        handle = self.host.api.shared_object("room")
        self.assertEqual((handle.data, handle.version), ({"a": 2.0}, 2))

    def test_slot_limit_and_api_writes(self) -> None:
        """Past max_slots a change is refused; the API's writes reach subscribers."""
        peer = self.connected()
        peer.client.so_use("room")
        peer.client.so_set("room", {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})
        peer.pump()
        kinds = [m.events[0].kind for m in peer.client.shared_objects("room")]
        self.assertEqual(kinds[-1], SOEventType.STATUS)
        handle = self.host.api.shared_object("room")
        handle.update({"x": 1.0, "y": 2.0})
        handle.send("onPing", 1.0)
        peer.deliver()
        change, sent = peer.client.shared_objects("room")[-2:]
        self.assertEqual((change.version, dict(change.events[0].pairs)), (1, {"x": 1.0, "y": 2.0}))
        self.assertEqual(sent.events[0].arguments, ("onPing", 1.0))

    def test_disconnect_releases(self) -> None:
        """A client that leaves no longer receives anything; a transient object is dropped."""
        peer = self.connected()
        peer.client.so_use("temp")
        peer.pump()
        self.assertIn("temp", self.host.shared_objects.names())
        peer.lose()
        self.assertNotIn("temp", self.host.shared_objects.names())


class ClientTests(SynchronousTestCase):
    """The Client facade."""

    def test_ids_are_unique(self) -> None:
        """Every client gets its own id."""

        class Fake:
            peer = "1.2.3.4:5"

        first, second = Client(Fake()), Client(Fake())  # type: ignore[arg-type]
        self.assertNotEqual(first.id, second.id)
        self.assertIn("1.2.3.4:5", repr(first))
