"""
Clean cuts for one player (:mod:`flashstream.rtmp.playergate`): video resumes
on a keyframe after its current sequence header, audio keeps flowing.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flashstream.rtmp import commands as cmd
from flashstream.rtmp import media
from flashstream.rtmp.amf0 import ECMAArray
from flashstream.rtmp.messages import Message, MessageType
from flashstream.rtmp.playergate import PlayerGate, PlayerState, is_metadata
from flashstream.rtmp.prechunk import share
from tests.helpers import (
    AAC_SEQUENCE_HEADER,
    AVC_SEQUENCE_HEADER,
    aac_frame,
    avc_inter,
    avc_keyframe,
)

OTHER_AVC_HEADER = AVC_SEQUENCE_HEADER[:-1] + b"\xcf"
OTHER_AAC_HEADER = bytes.fromhex("AF001190")


def metadata(width: float) -> Message:
    """An onMetaData data message."""
    payload = cmd.encode_data(cmd.DataMessage("onMetaData", (ECMAArray({"width": width}),)))
    return Message(MessageType.DATA_AMF0, 1, 0, payload)


def video(payload: bytes, ts: int = 0) -> Message:
    """A video message."""
    return Message(MessageType.VIDEO, 1, ts, payload)


def audio(payload: bytes, ts: int = 0) -> Message:
    """An audio message."""
    return Message(MessageType.AUDIO, 1, ts, payload)


OK = PlayerState()


def test_is_metadata() -> None:
    """onMetaData is recognised by its AMF0 name; other data messages are not."""
    assert is_metadata(metadata(1.0))
    cue = cmd.encode_data(cmd.DataMessage("onCuePoint", ({"name": "x"},)))
    assert not is_metadata(Message(MessageType.DATA_AMF0, 1, 0, cue))


def test_starts_on_a_keyframe() -> None:
    """Inter frames before the first keyframe are dropped; audio is not held back."""
    gate = PlayerGate()
    assert gate.offer(video(AVC_SEQUENCE_HEADER), OK) == [video(AVC_SEQUENCE_HEADER)]
    assert gate.offer(video(avc_inter(1)), OK) == []
    assert gate.offer(audio(aac_frame(1)), OK) == [audio(aac_frame(1))]
    assert gate.offer(video(avc_keyframe(2)), OK) == [video(avc_keyframe(2))]
    assert gate.offer(video(avc_inter(3)), OK) == [video(avc_inter(3))]


def test_header_changed_while_video_was_off_is_resent_before_the_keyframe() -> None:
    """
    receiveVideo off, the publisher sends a new sequence header and metadata,
    receiveVideo on: the player gets metadata, the new header (stamped with
    the keyframe's time) and then the keyframe, never the inter frames before.
    """
    gate = PlayerGate()
    gate.offer(metadata(320.0), OK)
    gate.offer(video(AVC_SEQUENCE_HEADER), OK)
    gate.offer(video(avc_keyframe(0)), OK)
    off = PlayerState(receive_video=False)
    assert gate.offer(metadata(640.0), off) == [metadata(640.0)]  # metadata is not video
    assert gate.offer(video(OTHER_AVC_HEADER, 500), off) == []
    assert gate.offer(video(avc_keyframe(1), 500), off) == []
    gate.cut()  # receiveVideo(true)
    assert gate.offer(video(avc_inter(2), 540), OK) == []
    assert gate.offer(video(avc_keyframe(3), 1000), OK) == [
        video(OTHER_AVC_HEADER, 1000),
        video(avc_keyframe(3), 1000),
    ]


def test_takeover_cut_with_new_metadata_and_headers() -> None:
    """
    After a takeover cut the new publisher's metadata and headers pass at once;
    video waits for its keyframe; audio continues, with its new header.
    """
    gate = PlayerGate()
    for m in (metadata(320.0), audio(AAC_SEQUENCE_HEADER), video(AVC_SEQUENCE_HEADER)):
        gate.offer(m, OK)
    gate.offer(video(avc_keyframe(0)), OK)
    gate.cut()
    assert gate.offer(video(avc_inter(9), 100), OK) == []  # the old publisher's leftovers
    assert gate.offer(metadata(640.0), OK) == [metadata(640.0)]
    assert gate.offer(audio(OTHER_AAC_HEADER, 120), OK) == [audio(OTHER_AAC_HEADER, 120)]
    assert gate.offer(audio(aac_frame(1), 120), OK) == [audio(aac_frame(1), 120)]
    assert gate.offer(video(OTHER_AVC_HEADER, 130), OK) == [video(OTHER_AVC_HEADER, 130)]
    assert gate.offer(video(avc_keyframe(1), 130), OK) == [video(avc_keyframe(1), 130)]


def test_congestion_drops_video_to_the_next_keyframe_but_not_audio() -> None:
    """While congested, video is dropped (counted) and audio flows; video resumes on a keyframe."""
    gate = PlayerGate()
    gate.offer(video(AVC_SEQUENCE_HEADER), OK)
    gate.offer(video(avc_keyframe(0)), OK)
    busy = PlayerState(congested=True)
    assert gate.offer(video(avc_inter(1)), busy) == []
    assert gate.offer(video(avc_keyframe(2)), busy) == []
    assert gate.offer(audio(aac_frame(1)), busy) == [audio(aac_frame(1))]
    assert gate.offer(video(avc_inter(3)), OK) == []
    assert gate.offer(video(avc_keyframe(4)), OK) == [video(avc_keyframe(4))]
    assert gate.dropped == 3


def test_full_backlog_drops_everything_and_headers_come_back() -> None:
    """
    With the send backlog full even headers and audio wait; afterwards the
    player gets the header it missed before the next audio frame and keyframe.
    """
    gate = PlayerGate()
    for m in (audio(AAC_SEQUENCE_HEADER), video(AVC_SEQUENCE_HEADER), video(avc_keyframe(0))):
        gate.offer(m, OK)
    full = PlayerState(congested=True, backlog_full=True)
    assert gate.offer(audio(OTHER_AAC_HEADER, 10), full) == []
    assert gate.offer(audio(aac_frame(1), 10), full) == []
    assert gate.offer(audio(aac_frame(2), 30), OK) == [
        audio(OTHER_AAC_HEADER, 30),
        audio(aac_frame(2), 30),
    ]


def test_paused_player_gets_nothing() -> None:
    """
    While paused nothing is sent; after resume (a cut) video restarts on a
    keyframe and the metadata that changed meanwhile comes before the first frame.
    """
    gate = PlayerGate()
    gate.offer(video(AVC_SEQUENCE_HEADER), OK)
    gate.offer(video(avc_keyframe(0)), OK)
    paused = PlayerState(paused=True)
    for m in (video(avc_inter(1)), audio(aac_frame(1)), metadata(1.0), video(avc_keyframe(2))):
        assert gate.offer(m, paused) == []
    gate.cut()
    assert gate.offer(video(avc_inter(3), 80), OK) == []
    assert gate.offer(audio(aac_frame(2), 80), OK) == [
        Message(MessageType.DATA_AMF0, 1, 80, metadata(1.0).payload),
        audio(aac_frame(2), 80),
    ]


# -- property: every kind of cut is clean --------------------------------------------------

KINDS = ["vheader", "vheader2", "key", "inter", "aheader", "aheader2", "audio", "meta", "meta2"]


def build(kind: str, ts: int) -> Message:
    """A message of one kind."""
    return {
        "vheader": lambda: video(AVC_SEQUENCE_HEADER, ts),
        "vheader2": lambda: video(OTHER_AVC_HEADER, ts),
        "key": lambda: video(avc_keyframe(ts), ts),
        "inter": lambda: video(avc_inter(ts), ts),
        "aheader": lambda: audio(AAC_SEQUENCE_HEADER, ts),
        "aheader2": lambda: audio(OTHER_AAC_HEADER, ts),
        "audio": lambda: audio(aac_frame(ts), ts),
        "meta": lambda: metadata(320.0),
        "meta2": lambda: metadata(640.0),
    }[kind]()


states = st.builds(
    PlayerState, st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans()
)
steps = st.lists(
    st.one_of(st.just(("cut", None)), st.tuples(st.sampled_from(KINDS), states)), max_size=120
)


@given(steps)
@settings(max_examples=400)
def test_every_cut_is_clean(script: list[tuple[str, PlayerState | None]]) -> None:
    """
    Whatever the sequence of messages, player states and cuts: after the start
    or any cut or dropped video frame, the next video frame the player gets
    is a keyframe; every keyframe it gets comes after the current video
    header and metadata; every audio frame after the current audio header;
    audio frames flow whenever the player wants audio and is neither paused
    nor backlogged; timestamps of what is sent never go backwards.
    """
    gate = PlayerGate()
    latest: dict[str, bytes] = {}
    sent: dict[str, bytes] = {}
    clean = False  # may an inter frame be sent now?
    last_ts = 0
    for ts, (kind, state) in enumerate(script):
        if state is None:
            gate.cut()
            clean = False
            continue
        message = build(kind, ts)
        if kind.startswith("vheader"):
            latest["video"] = message.payload
        elif kind.startswith("aheader"):
            latest["audio"] = message.payload
        elif kind.startswith("meta"):
            latest["meta"] = message.payload
        out = gate.offer(message, state)
        for m in out:
            if m.type_id != MessageType.DATA_AMF0:
                assert m.timestamp >= last_ts
                last_ts = m.timestamp
            if m.type_id == MessageType.VIDEO and media.is_video_sequence_header(m.payload):
                sent["video"] = m.payload
            elif m.type_id == MessageType.AUDIO and media.is_audio_sequence_header(m.payload):
                sent["audio"] = m.payload
            elif is_metadata(m):
                sent["meta"] = m.payload
            elif m.type_id == MessageType.VIDEO:
                if media.is_keyframe(m.payload):
                    assert sent.get("video") == latest.get("video")
                    assert sent.get("meta") == latest.get("meta")
                    clean = True
                else:
                    assert clean, "inter frame after a cut"
            elif m.type_id == MessageType.AUDIO:
                assert sent.get("audio") == latest.get("audio")
                assert sent.get("meta") == latest.get("meta")
        if kind in ("key", "inter") and message not in out:
            clean = False
        if kind == "audio":
            wanted = state.receive_audio and not state.paused and not state.backlog_full
            assert (message in out) == wanted


@given(steps)
@settings(max_examples=300)
def test_shared_messages_take_the_same_decisions(
    script: list[tuple[str, PlayerState | None]],
) -> None:
    """
    The hub offers :class:`SharedMessage` objects, which may take the gate's
    fast path (inter frames and audio with nothing to decide); whatever the
    sequence of messages, states and cuts, a gate offered shared messages
    sends exactly what a gate offered the same plain messages sends, and its
    record of headers the player lacks stays true.
    """
    plain, shared = PlayerGate(), PlayerGate()
    for ts, (kind, state) in enumerate(script):
        if state is None:
            plain.cut()
            shared.cut()
            continue
        message = build(kind, ts)
        assert shared.offer(share(message), state) == plain.offer(message, state)
        assert shared.need_keyframe == plain.need_keyframe
        assert shared.dropped == plain.dropped
        for gate in (plain, shared):
            lacking = {k for k, m in gate._latest.items() if gate._sent.get(k) != m.payload}
            assert gate._behind == lacking
