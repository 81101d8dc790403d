"""
Interop: the same live semantics over every transport, with the in-repo
client (:mod:`tests.socket_peer`) on real sockets to the real server.

One scenario -- rejections and their status codes, a takeover, and every
kind of drop (receiveVideo, pause, congestion, takeover) -- runs over each
transport in :data:`tests.socket_peer.TRANSPORTS` (RTMP, RTMPE, RTMPS, RTMPT, RTMPTS, RTMPTE);
the assertions are on the bytes the player receives: after any gap in the
publisher's frames, the next video frame is a keyframe, and each track's
timestamps never go backwards.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from flashstream.rtmp import media
from flashstream.rtmp.messages import MessageType
from tests.helpers import AAC_SEQUENCE_HEADER, AVC_SEQUENCE_HEADER, aac_frame
from tests.interop_kit import FlashstreamServer, running_server
from tests.socket_peer import TRANSPORTS, SocketPeer

pytestmark = pytest.mark.interop

CONFIG = """
[applications.strict]
kind = "live"
takeover = "never"
wait_for_publisher = false

[applications.swap]
kind = "live"
takeover = "always"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashstreamServer]:
    """A server with a never-takeover app (``strict``) and an always-takeover app (``swap``)."""
    directory = tmp_path_factory.mktemp("semantics")
    config = directory / "flashstream.toml"
    config.write_text(CONFIG)
    listeners = [
        "--rtmps",
        "ssl:0:interface=127.0.0.1",
        "--http",
        "tcp:0:interface=127.0.0.1",
        "--state-dir",
        str(directory / "state"),
    ]
    with running_server(["--config", str(config), *listeners], media_root=directory) as running:
        yield running


def numbered(n: int, key: bool, size: int = 16) -> bytes:
    """An AVC frame carrying its sequence number ``n`` (u32) and ``size`` bytes of body."""
    head = bytes.fromhex("1701000000" if key else "2701000000")
    return head + struct.pack(">I", n) + bytes(size)


def number_of(payload: bytes) -> int:
    """The sequence number of a :func:`numbered` frame."""
    return int(struct.unpack(">I", payload[5:9])[0])


class Publisher:
    """A SocketPeer publishing numbered frames at 25 fps with audio between them."""

    def __init__(self, peer: SocketPeer, start_ts: int = 0) -> None:
        self.peer = peer
        self.n = 0
        self.ts = start_ts

    def headers(self) -> None:
        """Metadata and the two sequence headers."""
        self.peer.client.set_data_frame(self.peer.stream_id, {"width": 320.0}, self.ts)
        self.peer.video(self.ts, AVC_SEQUENCE_HEADER)
        self.peer.audio(self.ts, AAC_SEQUENCE_HEADER)

    def frames(self, count: int, gop: int = 5, size: int = 16) -> None:
        """``count`` video frames (a keyframe every ``gop``) with an audio frame after each."""
        for _ in range(count):
            self.peer.video(self.ts, numbered(self.n, self.n % gop == 0, size))
            self.peer.audio(self.ts + 5, aac_frame(self.n))
            self.n += 1
            self.ts += 40


def highest(player: SocketPeer) -> int:
    """The highest frame number the player received (-1 for none)."""
    return max(
        (
            number_of(m.payload)
            for m in player.media(MessageType.VIDEO)
            if not media.is_video_sequence_header(m.payload)
        ),
        default=-1,
    )


def assert_clean(player: SocketPeer, start: int = 0) -> tuple[int, int]:
    """
    From the ``start``-th received message on: after a gap in the frame
    numbers, the next video frame is a keyframe, never an inter frame; every
    keyframe comes after the video sequence header; each track's timestamps
    never go backwards.  Returns (gaps seen, video frames seen).
    """
    previous: int | None = None
    gaps = frames = 0
    last: dict[int, int] = {}
    header_seen = False
    for received in player.received()[start:]:
        message = received.message
        if message.type_id not in (MessageType.AUDIO, MessageType.VIDEO):
            continue
        assert message.timestamp >= last.get(message.type_id, 0), "time went backwards"
        last[message.type_id] = message.timestamp
        if message.type_id != MessageType.VIDEO:
            continue
        if media.is_video_sequence_header(message.payload):
            header_seen = True
            continue
        frames += 1
        n = number_of(message.payload)
        key = media.is_keyframe(message.payload)
        if previous is None or n != previous + 1:
            gaps += previous is not None
            assert key, f"frame {n} after {previous}: an inter frame after a cut"
        if key:
            assert header_seen, "keyframe before any sequence header"
        previous = n
    return gaps, frames


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_same_semantics_on_every_transport(server: FlashstreamServer, transport: str) -> None:
    """
    Over ``transport``: unknown application -> InvalidApp and a close; a
    second publisher with takeover "never" -> BadName; a missing stream with
    wait_for_publisher off -> StreamNotFound; then on a takeover "always"
    application, a player goes through receiveVideo off/on, pause/unpause, a
    congested read and a publisher takeover, and after each the next video
    frame it receives is a keyframe, with timestamps monotonic throughout.
    """

    chosen = TRANSPORTS[transport]
    port = server.port_of(chosen.listener)

    def peer(seed: int) -> SocketPeer:
        return chosen.peer(port, seed)

    stray = peer(1)
    stray.client.connect("nope")
    stray.read_until(lambda: bool(stray.client.results(1.0)))
    info = stray.client.result(1.0).arguments[0]
    assert isinstance(info, dict) and info["code"] == "NetConnection.Connect.InvalidApp"
    stray.wait_closed()

    name = f"s-{transport}"
    first = peer(2)
    first.publish("strict", name)
    second = peer(3)
    second.publish("strict", name, expect="NetStream.Publish.BadName")
    missing = peer(4)
    missing.connect("strict")
    missing.create_stream()
    missing.client.play(missing.stream_id, "absent")
    missing.status("NetStream.Play.StreamNotFound")
    for p in (first, second, missing):
        p.close()

    old = peer(5)
    old.publish("swap", name)
    source = Publisher(old, start_ts=5000)
    source.headers()
    source.frames(7)
    player = peer(6)
    player.play("swap", name)
    player.read_until(lambda: player.video_count() >= 3, what="first frames")

    # receiveVideo off and on.
    player.client.receive_video(player.stream_id, False)
    player.sync()
    source.frames(6)
    old.sync()  # the frames went through the hub
    player.client.receive_video(player.stream_id, True)
    player.sync()
    last = source.n + 10
    source.frames(11)
    player.read_until(lambda: highest(player) >= last, what="video after receiveVideo")

    # pause and unpause.
    player.client.pause(player.stream_id, True)
    player.sync()
    source.frames(6)
    old.sync()
    player.client.pause(player.stream_id, False)
    player.sync()
    last = source.n + 10
    source.frames(11)
    player.read_until(lambda: highest(player) >= last, what="video after unpause")

    if chosen.can_stall:
        # A congested player: it stops reading while 24 MB of video go out.
        player.flush()
        # Few large frames: an RTMPT player that does not poll for 30 s is gone.
        source.frames(60, gop=25, size=400_000)
        old.sync(60)  # all 24 MB reached the hub while the player read nothing
        last = source.n + 29
        source.frames(30, gop=25)
        player.read_until(lambda: highest(player) >= last, 60, "video after congestion")
    gaps_before_takeover, _ = assert_clean(player)

    # A takeover: the new publisher's clock starts again at 0.
    mark = len(player.received())
    new = peer(7)
    new.publish("swap", name)
    old.status("NetStream.Publish.BadName")
    old.wait_closed()
    replacement = Publisher(new, start_ts=0)
    replacement.n = source.n + 1000  # a gap in numbers: must restart on a keyframe
    replacement.headers()
    replacement.frames(3, gop=2)  # keyframe, inter, keyframe
    last = replacement.n + 9
    replacement.frames(10)
    player.read_until(lambda: highest(player) >= last, what="video after takeover")
    gaps, frames = assert_clean(player)
    expected = 3 if chosen.can_stall else 2
    assert gaps_before_takeover >= expected, "receiveVideo, pause (and congestion) left gaps"
    assert gaps > gaps_before_takeover
    assert "NetStream.Play.UnpublishNotify" not in player.client.status_codes()
    after = [m.timestamp for m in player.client.media()[mark - 10 :]]
    assert after and min(after) >= 0
    for p in (old, new, player):
        p.close()


def test_backward_timestamps_reach_players_monotonic(server: FlashstreamServer) -> None:
    """
    A publisher (the in-repo client) whose timestamps jump back from 20 s to
    0 on both tracks, then back a little on audio: the player receives
    monotonic timestamps on each track, continuing from 20 s, and no frame
    of video or audio is lost.
    """
    publisher = TRANSPORTS["rtmp"].peer(server.port, 8)
    publisher.publish("swap", "jumpy")
    player = TRANSPORTS["rtmp"].peer(server.port, 9)
    player.play("swap", "jumpy")
    source = Publisher(publisher, start_ts=20_000)
    source.headers()
    source.frames(10)
    source.ts = 0  # the encoder's clock restarts
    source.frames(10)
    publisher.audio(300, aac_frame(99))  # audio a little behind its last (405)
    player.read_until(lambda: player.video_count() >= 21, what="all frames")
    player.read_for(0.3)
    video = [m.timestamp for m in player.media(MessageType.VIDEO)]
    audio = [m.timestamp for m in player.media(MessageType.AUDIO)]
    assert video == sorted(video) and audio == sorted(audio)
    assert video[-1] >= 20_000 + 19 * 40
    assert len([m for m in player.media(MessageType.VIDEO)]) == 21  # header + 20 frames
    assert len(audio) == 22  # header + 20 frames + the late one
    mark = server.mark()
    publisher.close()
    player.close()
    # The corrections are counted and logged when the stream ends.
    server.wait_for(r"Unpublished swap/jumpy .*rebased 2, held 1", start=mark)
