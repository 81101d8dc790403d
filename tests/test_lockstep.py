# -*- test-case-name: tests.test_lockstep -*-
# trial's assertion methods and StringTransport are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""
Lockstep fan-out (:mod:`flashstream.lockstep`): players in the same state
share one chunking and one write per publisher read, and every player's
bytes stay exactly what they would be without it.

The main property runs the same random conversation twice, through a hub
with lockstep groups and through one without, and compares every player's
bytes on the wire.  Other tests check that groups really form, and what
happens on each way out of a group.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from flashstream.applications import LiveApplication
from flashstream.config import ApplicationConfig
from flashstream.hub import StreamHub
from flashstream.interfaces import IStreamApplication
from flashstream.lockstep import DirectSend, LockstepGroup, LockstepMember
from flashstream.protocol import RTMPServerFactory
from flashstream.rtmp.limits import Limits
from flashstream.rtmp.messages import Message, MessageType
from flashstream.rtmp.prechunk import LockstepWriter, share
from flashstream.streams import NetStream
from tests.helpers import (
    AAC_SEQUENCE_HEADER,
    AVC_SEQUENCE_HEADER,
    aac_frame,
    avc_inter,
    avc_keyframe,
    seeded_random,
)
from tests.test_protocol import METADATA, Peer


class RawPeer(Peer):
    """A :class:`Peer` that also keeps every byte the server sent it."""

    raw: bytearray

    def deliver(self) -> None:
        """Keep the bytes, then let the client decode them."""
        if not hasattr(self, "raw"):
            self.raw = bytearray()
        self.raw += self.transport.value()
        super().deliver()


class World:
    """A live application on a hub, with or without lockstep groups, and peers."""

    def __init__(self, lockstep: bool, limits: Limits = Limits()) -> None:
        self.clock = Clock()
        self.hub = StreamHub(lockstep=lockstep)
        self.media_root = Path(tempfile.mkdtemp(prefix="flashstream-lockstep-"))
        live = LiveApplication(ApplicationConfig("live", "live"), self.hub, reactor=self.clock)
        applications: dict[str, IStreamApplication] = {"live": live}
        self.factory = RTMPServerFactory(
            self.hub, applications, self.clock, limits=limits, random_bytes=seeded_random(0)
        )
        self.everyone: list[Peer] = []
        self.port = 50000
        self.publisher = self.peer("ffmpeg_publish")
        self.publisher.publish("cam")
        self.players: list[RawPeer] = []
        self.time = 0

    def close(self) -> None:
        """Remove the temporary media folder."""
        shutil.rmtree(self.media_root, True)

    def peer(self, kind: str = "ffmpeg") -> RawPeer:
        """A new connected peer."""
        self.port += 1
        return RawPeer(self.factory, kind, port=self.port, everyone=self.everyone)

    def join(self, kind: str = "ffmpeg") -> RawPeer:
        """A new player of live/cam."""
        player = self.peer(kind)
        player.play("cam")
        self.players.append(player)
        return player

    def publish(self, kinds: list[str]) -> None:
        """The publisher sends ``kinds`` in one read (one hub batch)."""
        client, sid = self.publisher.client, self.publisher.stream_id
        for kind in kinds:
            self.time += 21
            if kind == "audio":
                client.audio(sid, self.time, aac_frame(self.time))
            elif kind == "inter":
                client.video(sid, self.time, avc_inter(self.time))
            elif kind == "key":
                client.video(sid, self.time, avc_keyframe(self.time))
            elif kind == "big":  # several chunks of 4096
                client.video(sid, self.time, avc_inter(self.time) + bytes(9000))
            elif kind == "avc_header":
                client.video(sid, self.time, AVC_SEQUENCE_HEADER)
            elif kind == "aac_header":
                client.audio(sid, self.time, AAC_SEQUENCE_HEADER)
            elif kind == "metadata":
                client.set_data_frame(sid, METADATA, self.time)
            elif kind == "cue":
                client.data(sid, "onCuePoint", "cue", float(self.time), timestamp=self.time)
        self.publisher.pump()

    def act(self, action: tuple[object, ...]) -> None:
        """Apply one scripted action."""
        kind = action[0]
        if kind == "publish":
            self.publish(list(action[1]))  # type: ignore[call-overload]
            return
        if kind == "join":
            self.join()
            return
        if not self.players:
            return
        player = self.players[int(action[1]) % len(self.players)]  # type: ignore[call-overload]
        client, sid = player.client, player.stream_id
        if kind == "pause":
            client.pause(sid, bool(action[2]))
        elif kind == "video":
            client.receive_video(sid, bool(action[2]))
        elif kind == "audio":
            client.receive_audio(sid, bool(action[2]))
        elif kind == "ping":
            client.ping_request(1234)
        elif kind == "call":
            client.call("noSuchMethod", 7.0)
        elif kind == "congest":
            if action[2]:
                player.protocol.pauseProducing()
            else:
                player.protocol.resumeProducing()
            return
        elif kind == "close":
            client.close_stream(sid)
        elif kind == "lose":
            player.lose()
            return
        player.pump()

    def groups(self) -> list[LockstepGroup]:
        """The lockstep groups of live/cam."""
        publication = self.hub.get("live", "cam")
        assert publication is not None
        return publication.groups


START = [["metadata", "avc_header", "aac_header", "key", "audio"]]

publish_kinds = st.sampled_from(
    ["audio", "audio", "inter", "inter", "inter", "key", "big", "avc_header", "metadata", "cue"]
)
actions = st.one_of(
    st.tuples(st.just("publish"), st.lists(publish_kinds, min_size=1, max_size=5)),
    st.tuples(st.just("join")),
    st.tuples(st.sampled_from(["pause", "video", "audio"]), st.integers(0, 7), st.booleans()),
    st.tuples(st.sampled_from(["ping", "call", "close", "lose"]), st.integers(0, 7)),
    st.tuples(st.just("congest"), st.integers(0, 7), st.booleans()),
)


@settings(max_examples=300)
@given(
    script=st.lists(actions, min_size=3, max_size=40),
    backlog=st.sampled_from([4 * 2**20, 40_000]),
)
def test_every_player_gets_the_same_bytes_with_and_without_groups(
    script: list[tuple[object, ...]], backlog: int
) -> None:
    """Whatever the publisher sends and the players do (join, pause, toggle
    audio/video, ping, congest, close, leave), each player receives exactly
    the bytes it would receive without lockstep groups."""
    limits = Limits(max_send_backlog=backlog)
    worlds = [World(True, limits), World(False, limits)]
    try:
        for world in worlds:
            world.join()
            world.join()
            for kinds in START:
                world.publish(kinds)
            for action in script:
                world.act(action)
            world.publish(["key", "audio", "inter", "audio"])
        grouped, alone = worlds
        assert len(grouped.players) == len(alone.players)
        for a, b in zip(grouped.players, alone.players, strict=True):
            assert bytes(a.raw) == bytes(b.raw)
            assert a.connected == b.connected
        assert not alone.groups()
    finally:
        for world in worlds:
            world.close()


class GroupTests(SynchronousTestCase):
    """Groups form, carry media once, and let players go cleanly."""

    def setUp(self) -> None:
        """A publisher and three ffmpeg players that saw the stream start."""
        self.world = World(True)
        self.addCleanup(self.world.close)
        self.players = [self.world.join() for _ in range(3)]
        self.world.publish(START[0])
        self.world.publish(["inter", "audio"])

    def test_players_in_the_same_state_form_one_group(self) -> None:
        """After the stream starts, all three players play in one group, and
        one publisher read of three messages is one write for all of them."""
        groups = self.world.groups()
        self.assertEqual(len(groups), 1)
        self.assertEqual(len(groups[0].members), 3)
        writes = groups[0].writes
        for player in self.players:
            player.client.clear()
        self.world.publish(["inter", "audio", "big"])
        self.assertEqual(groups[0].writes, writes + 1)
        for player in self.players:
            kinds = [m.type_id for m in player.client.media()]
            self.assertEqual(kinds, [MessageType.VIDEO, MessageType.AUDIO, MessageType.VIDEO])
        publication = self.world.hub.get("live", "cam")
        assert publication is not None
        self.assertEqual(publication.loose, {})

    def test_counters_count_group_writes(self) -> None:
        """A member's messages_out and bytes_out include what its group sent."""
        stream = self.stream(self.players[0])
        before = (stream.messages_out, stream.bytes_out)
        self.world.publish(["inter", "audio"])
        self.assertEqual(stream.messages_out, before[0] + 2)
        self.assertEqual(
            stream.bytes_out, before[1] + len(avc_inter(self.world.time - 21)) + len(aac_frame(0))
        )

    def stream(self, player: Peer) -> NetStream:
        """The server side NetStream of ``player``."""
        return player.protocol.streams[player.stream_id]

    def test_a_write_on_the_connection_ends_the_lease_in_order(self) -> None:
        """Any other write on a member's connection -- a ping answer, an
        ``_error`` to an unknown call -- makes it leave first (the group
        sends straight to its socket, so nothing else may queue behind it);
        it rejoins after the next publisher read."""
        player = self.players[0]
        stream = self.stream(player)
        for provoke in (
            lambda: player.client.ping_request(99),
            lambda: player.client.call("noSuchMethod", 5.0),
        ):
            self.assertIsNotNone(stream.lockstep)
            provoke()
            player.pump()
            self.assertIsNone(stream.lockstep)
            self.world.publish(["inter"])
            self.assertIsNotNone(stream.lockstep)
            self.assertEqual(len(self.world.groups()), 1)

    def test_pause_leaves_and_resume_rejoins_on_a_keyframe(self) -> None:
        """A paused player leaves; after unpausing it rejoins only once video
        restarted on a keyframe."""
        player = self.players[1]
        stream = self.stream(player)
        player.client.pause(player.stream_id, True)
        player.pump()
        self.assertIsNone(stream.lockstep)
        player.client.pause(player.stream_id, False)
        player.pump()
        self.world.publish(["inter", "audio"])
        self.assertIsNone(stream.lockstep)  # waiting for a keyframe
        self.world.publish(["key"])
        self.world.publish(["audio"])
        self.assertIsNotNone(stream.lockstep)

    def test_header_dissolves_the_group(self) -> None:
        """A new sequence header goes to each player alone (its gate records
        it), then the players regroup."""
        self.world.publish(["avc_header"])
        stream = self.stream(self.players[2])
        self.assertEqual(stream.gate._sent["video"], AVC_SEQUENCE_HEADER)
        self.assertEqual(len(self.world.groups()), 1)
        self.assertEqual(len(self.world.groups()[0].members), 3)

    def test_filling_backlog_leaves_then_skips_video(self) -> None:
        """A congested member whose backlog passes half the cap leaves the
        group, and its video then waits for a keyframe."""
        world = World(True, Limits(max_send_backlog=30_000))
        self.addCleanup(world.close)
        player = world.join()
        world.join()
        world.publish(START[0])
        world.publish(["inter"])
        stream = self.stream(player)
        self.assertIsNotNone(stream.lockstep)
        player.protocol.pauseProducing()
        world.publish(["big", "audio"])  # about 9 kB
        world.publish(["big"])  # past 15 kB: leaves after this write
        self.assertIsNone(stream.lockstep)
        dropped = stream.frames_dropped
        world.publish(["inter", "audio"])
        self.assertEqual(stream.frames_dropped, dropped + 1)
        self.assertTrue(player.connected)

    def test_rtmpe_players_stay_loose(self) -> None:
        """Encrypted connections cannot share bytes: they never join."""
        world = World(True)
        self.addCleanup(world.close)
        player = world.join("librtmp_rtmpe")
        world.join()
        world.publish(START[0])
        world.publish(["inter", "audio"])
        self.assertIsNone(self.stream(player).lockstep)
        self.assertEqual(len(world.groups()), 1)

    def test_disabled_hub_makes_no_groups(self) -> None:
        """With lockstep off every player is served alone."""
        world = World(False)
        self.addCleanup(world.close)
        world.join()
        world.publish(START[0])
        world.publish(["inter", "audio"])
        self.assertEqual(world.groups(), [])


@given(
    history=st.lists(
        st.tuples(st.sampled_from([8, 9]), st.integers(0, 5000), st.integers(0, 9000)),
        max_size=8,
    ),
    messages=st.lists(
        st.tuples(st.sampled_from([8, 9]), st.integers(0, 5000), st.integers(0, 9000)),
        min_size=1,
        max_size=8,
    ),
    chunk_size=st.sampled_from([128, 4096]),
)
def test_lockstep_writer_matches_a_chunk_writer(
    history: list[tuple[int, int, int]],
    messages: list[tuple[int, int, int]],
    chunk_size: int,
) -> None:
    """From any writer state, the lockstep writer's pieces are byte for byte
    what that writer would write for the same messages, and it ends in the
    same state."""
    from flashstream.rtmp.chunks import ChunkWriter

    writer = ChunkWriter(chunk_size)
    time = 0
    for type_id, delta, size in history:
        time += delta
        writer.write(Message(type_id, 1, time, bytes(size)), 6 if type_id == 8 else 7)
    lockstep = LockstepWriter(writer.snapshot(LockstepWriter.CSIDS), 1)
    expected = b""
    for type_id, delta, size in messages:
        time += delta
        message = Message(type_id, 1, time, bytes(range(256)) * (size // 256) + bytes(size % 256))
        assert lockstep.add(share(message))
        expected += writer.write(message, 6 if type_id == 8 else 7)
    pieces, count, payload = lockstep.take()
    assert b"".join(pieces) == expected
    assert count == len(messages)
    assert payload == sum(size for _, _, size in messages)
    assert lockstep.snapshot() == writer.snapshot(LockstepWriter.CSIDS)


def test_lockstep_writer_refuses_what_it_cannot_share() -> None:
    """Data messages and headers needing an extended timestamp are refused."""
    lockstep = LockstepWriter((4096, None, None), 1)
    assert not lockstep.add(share(Message(18, 1, 0, b"\x02\x00\x01x")))
    assert not lockstep.add(share(Message(9, 1, 0x1000000, avc_inter(1))))
    assert lockstep.pieces == []


class FakeMember:
    """A lockstep member that records what it is sent and given back."""

    def __init__(self, on_write: object = None) -> None:
        self.lockstep: LockstepGroup | None = None
        self.sent: list[bytes] = []
        self.given_back: list[bytes] = []
        self.on_write = on_write

    def lockstep_key(self) -> tuple[object, ...] | None:
        """Never asked in these tests."""
        return None

    def join_lockstep(self, group: LockstepGroup) -> None:
        """Nothing to lend."""

    def leave_lockstep(self, pieces: list[bytes], snapshot: tuple[object, ...]) -> None:
        """Keep what was given back."""
        self.given_back.extend(pieces)

    def direct_send(self) -> None:
        """Always through :meth:`send_now`."""
        return None

    def send_rest(self, data: bytes, sent: int) -> None:
        """Never called: there is no direct send."""
        raise AssertionError("no direct send here")

    def send_now(self, data: bytes) -> bool:
        """Keep what was sent; run the scripted side effect."""
        self.sent.append(data)
        if callable(self.on_write):
            self.on_write()
        return True


def test_member_leaving_during_a_flush_gets_the_chunks_it_was_not_sent() -> None:
    """If writing to one member makes another leave before its turn, the
    leaver gets the chunks being flushed back; one already written to does not."""
    left: list[object] = []
    group = LockstepGroup(((4096, None, None), 1), left.append)
    first, second, third = FakeMember(), FakeMember(), FakeMember()

    def second_and_first_leave() -> None:
        group.leave(second)
        group.leave(first)

    first.on_write = second_and_first_leave
    for member in (first, second, third):
        group.join(member)
    assert group.add(share(Message(9, 1, 0, avc_keyframe(0))))
    group.flush()
    assert len(first.sent) == 1 and first.given_back == []
    assert second.sent == [] and b"".join(second.given_back) == first.sent[0]
    assert third.sent == first.sent
    assert left == [second, first]
    assert list(group.members) == [cast(LockstepMember, third)]


class Counter:
    """A stand-in for a connection's byte counter."""

    bytes_sent = 0


class DirectMember(FakeMember):
    """A member whose socket takes at most ``room`` bytes per send."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room
        self.counter = Counter()
        self.rest: list[bytes] = []

    def direct_send(self) -> DirectSend | None:  # type: ignore[override]
        """Sends go to :meth:`socket_send`."""
        return DirectSend(self.socket_send, self.counter)

    def socket_send(self, data: bytes) -> int:
        """Take what fits."""
        taken = data[: self.room]
        self.sent.append(taken)
        return len(taken)

    def send_rest(self, data: bytes, sent: int) -> None:
        """Keep what the socket did not take."""
        self.rest.append(data[sent:])

    def send_now(self, data: bytes) -> bool:
        """Never called while the direct send is there."""
        raise AssertionError("the group should send directly")


def test_direct_sends_count_bytes_and_a_partial_send_leaves() -> None:
    """Members with a direct send get one socket send per flush, counted on
    their connection; one whose socket takes only part gets the rest queued
    and leaves the group, the others stay."""
    left: list[object] = []
    group = LockstepGroup(((4096, None, None), 1), left.append)
    roomy, cramped = DirectMember(1 << 20), DirectMember(10)
    group.join(roomy)
    group.join(cramped)
    assert group.add(share(Message(9, 1, 0, avc_keyframe(0))))
    assert group.add(share(Message(8, 1, 5, aac_frame(0))))
    group.flush()
    whole = roomy.sent[0]
    assert roomy.counter.bytes_sent == len(whole) and roomy.lockstep is group
    assert cramped.sent == [whole[:10]] and cramped.rest == [whole[10:]]
    assert cramped.lockstep is None and left == [cramped]
    assert cramped.given_back == []  # it was written to: nothing more to queue
    assert group.add(share(Message(9, 1, 40, avc_inter(1))))
    group.flush()
    assert len(roomy.sent) == 2 and len(cramped.sent) == 1


class LateDirectMember(DirectMember):
    """A member whose socket becomes directly writable only after its first write."""

    def __init__(self) -> None:
        super().__init__(1 << 20)
        self.ready = False
        self.queued: list[bytes] = []

    def direct_send(self) -> DirectSend | None:  # type: ignore[override]
        """Nothing direct until :attr:`ready`."""
        return super().direct_send() if self.ready else None

    def send_now(self, data: bytes) -> bool:
        """The ordinary path; afterwards its queue has drained."""
        self.queued.append(data)
        self.ready = True
        return True


def test_a_member_goes_direct_once_its_queue_drains() -> None:
    """A member that joined with bytes still queued is served through its
    adapter, then switches to direct sends as soon as it can."""
    group = LockstepGroup(((4096, None, None), 1), lambda member: None)
    member = LateDirectMember()
    group.join(member)
    assert group.add(share(Message(9, 1, 0, avc_keyframe(0))))
    group.flush()
    assert len(member.queued) == 1 and member.sent == []
    assert group.add(share(Message(9, 1, 40, avc_inter(1))))
    group.flush()
    assert len(member.queued) == 1 and len(member.sent) == 1
    assert member.counter.bytes_sent == len(member.sent[0])
