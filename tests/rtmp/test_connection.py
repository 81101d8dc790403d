# -*- test-case-name: tests.rtmp.test_connection -*-
"""
Conversation tests for :class:`flashstream.rtmp.connection.ServerConnection`.

A :class:`tests.helpers.FlashClient` plays the part of ffmpeg, librtmp or
Flash; every conversation is fed to the server whole and one byte at a time,
and the exact events and the replies the server queues are checked.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flashstream.rtmp import commands as cmd
from flashstream.rtmp import messages as msg
from flashstream.rtmp.amf0 import ECMAArray
from flashstream.rtmp.connection import (
    FMS_VERSION,
    MAX_PENDING_COMMANDS,
    ServerConnection,
    State,
    StreamMode,
)
from flashstream.rtmp.errors import (
    ChunkError,
    CommandError,
    LimitExceeded,
    LocalProtocolError,
    RemoteProtocolError,
)
from flashstream.rtmp.events import (
    AcknowledgementReceived,
    BufferLengthSet,
    CallReceived,
    ConnectRequested,
    DataReceived,
    Event,
    HandshakeCompleted,
    MediaReceived,
    PauseRequested,
    PingAnswered,
    PlayRequested,
    PublishRequested,
    ReceiveMediaToggled,
    SeekRequested,
    StreamClosed,
    StreamCreated,
)
from flashstream.rtmp.limits import Limits
from flashstream.rtmp.messages import Message, MessageType
from tests.helpers import (
    AAC_FRAME,
    AAC_SEQUENCE_HEADER,
    AVC_INTER,
    AVC_KEYFRAME,
    AVC_SEQUENCE_HEADER,
    ConnectionPair,
    FlashClient,
    aggregate_payload,
    seeded_random,
)

PairFactory = Callable[..., ConnectionPair]

METADATA: dict[str, object] = {
    "duration": 0.0,
    "width": 640.0,
    "height": 360.0,
    "videocodecid": 7.0,
    "audiocodecid": 10.0,
    "encoder": "Lavf61.1.100",
}


@pytest.fixture(params=["whole", "bytewise"])
def make_pair(request: pytest.FixtureRequest) -> PairFactory:
    """Build ConnectionPairs that feed whole buffers or one byte at a time."""
    byte_at_a_time = request.param == "bytewise"

    def make(kind: str = "ffmpeg", *, limits: Limits | None = None) -> ConnectionPair:
        return ConnectionPair(kind, byte_at_a_time=byte_at_a_time, limits=limits)

    return make


def publishing_pair(make_pair: PairFactory, name: str = "key") -> ConnectionPair:
    """An ffmpeg publisher connected to ``live`` and publishing ``name`` on stream 1."""
    pair = make_pair("ffmpeg_publish")
    pair.connect("live")
    stream_id = pair.create_stream()
    pair.client.publish(stream_id, name)
    (request,) = pair.to_server()
    assert isinstance(request, PublishRequested)
    pair.server.accept_publish(stream_id, name)
    pair.to_client()
    pair.client.clear()
    return pair


def status_info(code: str, description: str, level: str = "status", **extra: object) -> object:
    """The info object of an ``onStatus``."""
    info: dict[str, object] = {"level": level, "code": code, "description": description}
    info.update(extra)
    return info


def on_status(code: str, description: str, level: str = "status", **extra: object) -> cmd.Command:
    """The ``onStatus(0, null, info)`` command a client decodes."""
    return cmd.Command("onStatus", 0.0, None, (status_info(code, description, level, **extra),))


# -- handshake and connect ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "scheme"),
    [
        ("ffmpeg", 1),
        ("ffmpeg_publish", 1),
        ("librtmp_plain", None),
        ("librtmp_swf", 1),
        ("flash", 2),
    ],
)
def test_handshake_event(make_pair: PairFactory, kind: str, scheme: int | None) -> None:
    """Each client kind completes the handshake; the event reports C0 and the digest scheme."""
    pair = make_pair(kind)
    assert pair.handshake() == [HandshakeCompleted(3, scheme)]
    assert pair.server.state is State.AWAIT_CONNECT
    assert pair.server.data_to_send() == b""


def test_connect_request_splits_app(make_pair: PairFactory) -> None:
    """``app/instance?query`` is split into app, instance and query; extra values are arguments."""
    pair = make_pair("ffmpeg")
    pair.handshake()
    properties = pair.client.connect(
        "live/room1?token=abc", object_encoding=0, extra=("conn-arg", 5.0)
    )
    events = pair.to_server()
    assert events == [
        ConnectRequested(
            transaction_id=1.0,
            properties=properties,
            app="live",
            instance="room1",
            query="token=abc",
            object_encoding=0,
            arguments=("conn-arg", 5.0),
        )
    ]
    assert properties["flashVer"] == "LNX 9,0,124,2"
    assert properties["tcUrl"] == "rtmp://localhost/live/room1?token=abc"
    assert pair.server.state is State.CONNECT_PENDING
    assert pair.server.data_to_send() == b""


def test_accept_connect_replies(make_pair: PairFactory) -> None:
    """accept_connect sends WindowAckSize, SetPeerBandwidth, SetChunkSize 4096, then _result."""
    pair = make_pair("ffmpeg")
    pair.connect("live")
    assert pair.client.values() == [
        msg.WindowAckSize(2_500_000),
        msg.SetPeerBandwidth(2_500_000, 2),
        msg.SetChunkSize(4096),
        cmd.Command(
            "_result",
            1.0,
            {"fmsVer": FMS_VERSION, "capabilities": 31.0, "mode": 1.0},
            (
                status_info(
                    "NetConnection.Connect.Success",
                    "Connection succeeded.",
                    objectEncoding=0.0,
                    data={"version": "3,5,7,7009"},
                ),
            ),
        ),
    ]
    assert pair.client.received[-1].message.stream_id == 0
    assert pair.server.state is State.CONNECTED
    assert pair.client.reader.chunk_size == 4096


def test_accept_connect_extra_info(make_pair: PairFactory) -> None:
    """Keyword arguments of accept_connect are added to the Connect.Success info object."""
    pair = make_pair("flash")
    pair.handshake()
    pair.client.connect("live")
    pair.to_server()
    pair.server.accept_connect(1.0, clientid="abc")
    pair.to_client()
    info = pair.client.result(1.0).arguments[0]
    assert isinstance(info, dict)
    assert info["clientid"] == "abc"
    assert info["code"] == "NetConnection.Connect.Success"


def test_reject_connect(make_pair: PairFactory) -> None:
    """reject_connect sends _error with the code; afterwards the server ignores input."""
    pair = make_pair("librtmp_plain")
    pair.handshake()
    pair.client.connect("nope")
    pair.to_server()
    pair.server.reject_connect(1.0, "No such app.", code="NetConnection.Connect.InvalidApp")
    pair.to_client()
    assert pair.client.values() == [
        cmd.Command(
            "_error",
            1.0,
            None,
            (status_info("NetConnection.Connect.InvalidApp", "No such app.", level="error"),),
        )
    ]
    assert pair.server.state is State.CLOSED
    pair.client.create_stream()
    assert pair.to_server() == []
    assert pair.server.data_to_send() == b""


def test_reject_connect_default_code(make_pair: PairFactory) -> None:
    """Without a code, reject_connect answers NetConnection.Connect.Rejected."""
    pair = make_pair()
    pair.handshake()
    pair.client.connect("live")
    pair.to_server()
    pair.server.reject_connect(1.0, "go away")
    pair.to_client()
    assert pair.client.status_codes() == []
    (error,) = pair.client.commands("_error")
    assert error.arguments[0] == status_info(
        "NetConnection.Connect.Rejected", "go away", level="error"
    )


def test_pipelined_commands_replayed(make_pair: PairFactory) -> None:
    """Commands sent before connect is answered are held and replayed by accept_connect."""
    pair = make_pair("ffmpeg_publish")
    pair.handshake()
    pair.client.connect("live")
    pair.client.release_stream("key")
    pair.client.fc_publish("key")
    pair.client.create_stream()
    events = pair.to_server()
    assert [type(e) for e in events] == [ConnectRequested]
    assert pair.server.data_to_send() == b""
    assert pair.server.accept_connect(1.0) == [StreamCreated(1)]
    pair.to_client()
    assert [c.name for c in pair.client.commands()] == [
        "_result",
        "_result",
        "onFCPublish",
        "_result",
        "_result",
    ]
    assert pair.client.result(4.0).arguments == (1.0,)


def test_too_many_pipelined_commands(make_pair: PairFactory) -> None:
    """More than MAX_PENDING_COMMANDS before connect is answered raises LimitExceeded."""
    pair = make_pair()
    pair.handshake()
    pair.client.connect("live")
    for _ in range(MAX_PENDING_COMMANDS + 1):
        pair.client.call("ping", 0)
    with pytest.raises(LimitExceeded) as info:
        pair.to_server()
    assert info.value.maximum == MAX_PENDING_COMMANDS


def test_amf3_connect_and_commands(make_pair: PairFactory) -> None:
    """Type 17 connect with objectEncoding 3 is echoed; AMF3 commands work; replies are type 20."""
    pair = make_pair("flash")
    events = pair.connect("live", object_encoding=3, amf3=True)
    (request,) = events
    assert isinstance(request, ConnectRequested)
    assert request.object_encoding == 3
    assert pair.server.object_encoding == 3
    result = pair.client.received[-1]
    assert result.message.type_id == MessageType.COMMAND_AMF0
    info = pair.client.result(1.0).arguments[0]
    assert isinstance(info, dict)
    assert info["objectEncoding"] == 3.0
    txn = pair.client.create_stream(amf3=True)
    assert pair.to_server() == [StreamCreated(1)]
    pair.to_client()
    assert pair.client.result(txn).arguments == (1.0,)


def test_amf3_command_without_leading_zero(make_pair: PairFactory) -> None:
    """A type 17 payload that omits the leading 00 byte is still decoded."""
    pair = make_pair("flash")
    pair.connect("live", object_encoding=3)
    payload = cmd.encode_command(cmd.Command("createStream", 2.0, None))
    pair.client.send_message(Message(MessageType.COMMAND_AMF3, 0, 0, payload), 3)
    assert pair.to_server() == [StreamCreated(1)]


def test_connect_object_encoding_other_values(make_pair: PairFactory) -> None:
    """Any objectEncoding other than 3 is treated as AMF0."""
    pair = make_pair("flash")
    events = pair.connect("live", object_encoding=7)
    assert isinstance(events[0], ConnectRequested)
    assert events[0].object_encoding == 0


# -- publishing -----------------------------------------------------------------------------


def test_ffmpeg_publish_flow(make_pair: PairFactory) -> None:
    """The whole ffmpeg publish conversation: events and every reply, in order."""
    pair = make_pair("ffmpeg_publish")
    pair.connect("live")
    pair.client.clear()

    pair.client.release_stream("key?pass=1")
    pair.client.fc_publish("key?pass=1")
    pair.client.create_stream()
    assert pair.to_server() == [StreamCreated(1)]
    pair.to_client()
    assert pair.client.values() == [
        cmd.Command("_result", 2.0, None),
        cmd.Command(
            "onFCPublish",
            0.0,
            None,
            (status_info("NetStream.Publish.Start", "FCPublish to key?pass=1."),),
        ),
        cmd.Command("_result", 3.0, None),
        cmd.Command("_result", 4.0, None, (1.0,)),
    ]
    assert pair.server.stream_mode(1) is StreamMode.IDLE
    pair.client.clear()

    pair.client.publish(1, "key?pass=1", "live")
    assert pair.to_server() == [PublishRequested(1, "key", "pass=1", "live", 5.0)]
    pair.server.accept_publish(1, "key")
    pair.to_client()
    assert pair.client.values() == [
        msg.StreamBegin(1),
        on_status("NetStream.Publish.Start", "key is now published.", details="key"),
    ]
    assert pair.client.received[-1].message.stream_id == 1
    assert pair.server.stream_mode(1) is StreamMode.PUBLISHING

    pair.client.set_data_frame(1, METADATA)
    pair.client.video(1, 0, AVC_SEQUENCE_HEADER)
    pair.client.audio(1, 0, AAC_SEQUENCE_HEADER)
    pair.client.video(1, 0, AVC_KEYFRAME)
    pair.client.audio(1, 23, AAC_FRAME)
    pair.client.video(1, 40, AVC_INTER)
    on_meta = cmd.DataMessage("onMetaData", (ECMAArray(METADATA),))
    assert pair.to_server() == [
        DataReceived(
            1,
            on_meta,
            Message(MessageType.DATA_AMF0, 1, 0, cmd.encode_data(on_meta)),
            set_data_frame=True,
        ),
        MediaReceived(1, Message(MessageType.VIDEO, 1, 0, AVC_SEQUENCE_HEADER)),
        MediaReceived(1, Message(MessageType.AUDIO, 1, 0, AAC_SEQUENCE_HEADER)),
        MediaReceived(1, Message(MessageType.VIDEO, 1, 0, AVC_KEYFRAME)),
        MediaReceived(1, Message(MessageType.AUDIO, 1, 23, AAC_FRAME)),
        MediaReceived(1, Message(MessageType.VIDEO, 1, 40, AVC_INTER)),
    ]

    pair.client.clear()
    pair.client.fc_unpublish("key")
    pair.client.delete_stream(1)
    assert pair.to_server() == [StreamClosed(1, deleted=True)]
    pair.to_client()
    # The core only answers FCUnpublish; Unpublish.Success is the adapter's (end_publish).
    assert pair.client.values() == [
        cmd.Command(
            "onFCUnpublish",
            0.0,
            None,
            (status_info("NetStream.Unpublish.Success", "key is now unpublished."),),
        ),
        cmd.Command("_result", 6.0, None),
    ]
    assert pair.server.stream_mode(1) is None


def test_publish_type_defaults_to_live(make_pair: PairFactory) -> None:
    """publish without a type (or an empty one) is live; record and append are kept."""
    pair = make_pair("ffmpeg_publish")
    pair.connect("live")
    stream_id = pair.create_stream()
    pair.client.command("publish", 0, None, "a", stream_id=stream_id)
    pair.client.command("publish", 0, None, "b", "", stream_id=stream_id)
    pair.client.publish(stream_id, "c", "record", txn=0)
    pair.client.publish(stream_id, "d", "append", txn=0)
    assert [
        (e.name, e.publish_type) for e in pair.to_server() if isinstance(e, PublishRequested)
    ] == [
        ("a", "live"),
        ("b", "live"),
        ("c", "record"),
        ("d", "append"),
    ]


def test_publish_without_name(make_pair: PairFactory) -> None:
    """publish with no string name is a CommandError."""
    pair = make_pair("ffmpeg_publish")
    pair.connect("live")
    stream_id = pair.create_stream()
    pair.client.command("publish", 5, None, stream_id=stream_id)
    with pytest.raises(CommandError):
        pair.to_server()


def test_media_ignored_unless_publishing(make_pair: PairFactory) -> None:
    """Media and data on a stream that is not publishing produce no events."""
    pair = make_pair("ffmpeg_publish")
    pair.connect("live")
    stream_id = pair.create_stream()
    pair.client.video(stream_id, 0, AVC_KEYFRAME)
    pair.client.set_data_frame(stream_id, METADATA)
    pair.client.audio(7, 0, AAC_FRAME)
    assert pair.to_server() == []
    pair.client.publish(stream_id, "key")
    pair.to_server()
    pair.client.video(stream_id, 40, AVC_INTER)
    assert pair.to_server() == [], "no MediaReceived before accept_publish"


def test_media_stops_after_end_publish(make_pair: PairFactory) -> None:
    """end_publish sends Unpublish.Success and later media is ignored."""
    pair = publishing_pair(make_pair)
    pair.server.end_publish(1, "key")
    pair.to_client()
    assert pair.client.values() == [
        on_status("NetStream.Unpublish.Success", "key is now unpublished.", details="key")
    ]
    assert pair.server.stream_mode(1) is StreamMode.IDLE
    pair.client.video(1, 0, AVC_KEYFRAME)
    assert pair.to_server() == []


def test_data_messages(make_pair: PairFactory) -> None:
    """Plain data messages are forwarded as-is; @clearDataFrame is dropped; type 15 is AMF0'd."""
    pair = publishing_pair(make_pair)
    pair.client.data(1, "onCuePoint", {"name": "cue"}, timestamp=100)
    pair.client.data(1, "@clearDataFrame", "onMetaData", timestamp=100)
    pair.client.set_data_frame(1, {"width": 1.0}, timestamp=120, amf3=True)
    cue = cmd.DataMessage("onCuePoint", ({"name": "cue"},))
    meta = cmd.DataMessage("onMetaData", (ECMAArray({"width": 1.0}),))
    assert pair.to_server() == [
        DataReceived(1, cue, Message(MessageType.DATA_AMF0, 1, 100, cmd.encode_data(cue)), False),
        DataReceived(1, meta, Message(MessageType.DATA_AMF0, 1, 120, cmd.encode_data(meta)), True),
    ]


def test_aggregate_unpacked(make_pair: PairFactory) -> None:
    """An aggregate message (type 22) becomes one MediaReceived per sub-message, rebased."""
    pair = publishing_pair(make_pair)
    pair.client.aggregate(
        1,
        5000,
        [
            (MessageType.AUDIO, 1000, AAC_FRAME),
            (MessageType.VIDEO, 1040, AVC_KEYFRAME),
            (MessageType.AUDIO, 1063, AAC_FRAME),
        ],
    )
    assert pair.to_server() == [
        MediaReceived(1, Message(MessageType.AUDIO, 1, 5000, AAC_FRAME)),
        MediaReceived(1, Message(MessageType.VIDEO, 1, 5040, AVC_KEYFRAME)),
        MediaReceived(1, Message(MessageType.AUDIO, 1, 5063, AAC_FRAME)),
    ]


def test_truncated_aggregate(make_pair: PairFactory) -> None:
    """A truncated aggregate is a RemoteProtocolError."""
    pair = publishing_pair(make_pair)
    pair.client.send_message(Message(MessageType.AGGREGATE, 1, 0, b"\x08\x00\x00"), 6)
    with pytest.raises(RemoteProtocolError):
        pair.to_server()


def test_large_media_after_set_chunk_size(make_pair: PairFactory) -> None:
    """Media larger than the chunk size arrives whole, before and after SetChunkSize."""
    pair = publishing_pair(make_pair)
    big = b"\x27\x01" + bytes(range(256)) * 40
    pair.client.video(1, 40, big)
    pair.client.set_chunk_size(4096)
    pair.client.video(1, 80, big)
    assert pair.to_server() == [
        MediaReceived(1, Message(MessageType.VIDEO, 1, 40, big)),
        MediaReceived(1, Message(MessageType.VIDEO, 1, 80, big)),
    ]


# -- playing ------------------------------------------------------------------------------


def test_play_flow(make_pair: PairFactory) -> None:
    """ffmpeg play: PlayRequested, then start_play's replies in order, then media."""
    pair = make_pair("ffmpeg")
    pair.connect("live")
    stream_id = pair.create_stream()
    pair.client.clear()
    txn = pair.client.play(stream_id, "cam?sig=x")
    pair.client.set_buffer_length(stream_id, 3000)
    assert pair.to_server() == [
        PlayRequested(stream_id, "cam", "sig=x", -2000.0, -1000.0, True, txn),
        BufferLengthSet(stream_id, 3000),
    ]
    pair.server.start_play(stream_id, "cam", reset=True, recorded=False)
    pair.server.send_media(stream_id, MessageType.VIDEO, 0, AVC_SEQUENCE_HEADER)
    pair.server.send_media(stream_id, MessageType.AUDIO, 2**32 + 5, AAC_FRAME)
    pair.to_client()
    assert pair.client.values() == [
        msg.StreamBegin(stream_id),
        on_status("NetStream.Play.Reset", "Playing and resetting cam.", details="cam"),
        on_status("NetStream.Play.Start", "Started playing cam.", details="cam"),
        cmd.DataMessage("|RtmpSampleAccess", (True, True)),
        cmd.DataMessage("onStatus", ({"code": "NetStream.Data.Start"},)),
        None,
        None,
    ]
    assert pair.client.media() == [
        Message(MessageType.VIDEO, stream_id, 0, AVC_SEQUENCE_HEADER),
        Message(MessageType.AUDIO, stream_id, 5, AAC_FRAME),
    ]
    assert pair.server.stream_mode(stream_id) is StreamMode.PLAYING


def test_play_recorded_without_reset(make_pair: PairFactory) -> None:
    """A recorded play starts with StreamIsRecorded; reset=False skips Play.Reset."""
    pair = make_pair("librtmp_plain")
    pair.connect("vod")
    stream_id = pair.create_stream()
    pair.client.clear()
    pair.client.play(stream_id, "mp4:film.mp4", 0, 10_000, False, txn=0)
    assert pair.to_server() == [
        PlayRequested(stream_id, "mp4:film.mp4", "", 0.0, 10_000.0, False, 0.0)
    ]
    pair.server.start_play(stream_id, "mp4:film.mp4", reset=False, recorded=True)
    pair.server.stop_play(stream_id, "mp4:film.mp4")
    pair.to_client()
    assert [type(v).__name__ for v in pair.client.values()] == [
        "StreamIsRecorded",
        "StreamBegin",
        "Command",
        "DataMessage",
        "DataMessage",
        "StreamEOF",
        "Command",
    ]
    assert pair.client.status_codes() == [
        "NetStream.Play.Start",
        "NetStream.Data.Start",
        "NetStream.Play.Stop",
    ]
    assert pair.server.stream_mode(stream_id) is StreamMode.IDLE


def test_play_without_name(make_pair: PairFactory) -> None:
    """play with no string name is a CommandError."""
    pair = make_pair()
    pair.connect("live")
    stream_id = pair.create_stream()
    pair.client.command("play", 0, None, 5.0, stream_id=stream_id)
    with pytest.raises(CommandError):
        pair.to_server()


def test_player_commands(make_pair: PairFactory) -> None:
    """pause, seek, receiveAudio/receiveVideo and closeStream become events."""
    pair = make_pair("flash")
    pair.connect("live")
    stream_id = pair.create_stream()
    pair.client.pause(stream_id, True, 1500)
    pair.client.pause(stream_id, False, 1500)
    pair.client.seek(stream_id, 3000)
    pair.client.receive_video(stream_id, False)
    pair.client.receive_audio(stream_id, True)
    pair.client.command("receiveVideo", 0, None, stream_id=stream_id)
    pair.client.close_stream(stream_id)
    pair.client.clear()
    assert pair.to_server() == [
        PauseRequested(stream_id, True, 1500.0),
        PauseRequested(stream_id, False, 1500.0),
        SeekRequested(stream_id, 3000.0),
        ReceiveMediaToggled(stream_id, "video", False),
        ReceiveMediaToggled(stream_id, "audio", True),
        ReceiveMediaToggled(stream_id, "video", True),
        StreamClosed(stream_id, deleted=False),
    ]
    assert pair.server.stream_mode(stream_id) is StreamMode.IDLE
    pair.to_client()
    assert pair.client.values() == []


def test_delete_stream_forms(make_pair: PairFactory) -> None:
    """deleteStream works on the NetConnection and on the stream; unknown ids are ignored."""
    pair = make_pair()
    pair.connect("live")
    first = pair.create_stream()
    second = pair.create_stream()
    pair.client.delete_stream(first)
    pair.client.command("deleteStream", 0, None, float(second), stream_id=second)
    pair.client.delete_stream(9)
    assert pair.to_server() == [
        StreamClosed(first, deleted=True),
        StreamClosed(second, deleted=True),
    ]
    assert pair.create_stream() == 1, "freed ids are reused"


def test_create_stream_ids_and_limit(make_pair: PairFactory) -> None:
    """createStream hands out 1, 2, ...; past max_streams it raises LimitExceeded."""
    pair = make_pair(limits=Limits(max_streams=2))
    pair.connect("live")
    assert [pair.create_stream(), pair.create_stream()] == [1, 2]
    pair.client.create_stream()
    with pytest.raises(LimitExceeded) as info:
        pair.to_server()
    assert (info.value.limit, info.value.value, info.value.maximum) == ("max_streams", 3, 2)


# -- other calls and control ----------------------------------------------------------------


def test_unknown_calls(make_pair: PairFactory) -> None:
    """Unknown commands become CallReceived, on the NetConnection and on streams."""
    pair = make_pair("librtmp_plain")
    pair.connect("live")
    stream_id = pair.create_stream()
    pair.client.call("getStreamLength", 3, "cam")
    pair.client.call("_checkbw", 4)
    pair.client.command("setQuality", 0, None, {"streamName": "x"}, stream_id=stream_id)
    pair.client.call("publish", 5, "oops")  # a NetStream command on stream 0
    assert pair.to_server() == [
        CallReceived(0, cmd.Command("getStreamLength", 3.0, None, ("cam",))),
        CallReceived(0, cmd.Command("_checkbw", 4.0, None)),
        CallReceived(stream_id, cmd.Command("setQuality", 0.0, None, ({"streamName": "x"},))),
        CallReceived(0, cmd.Command("publish", 5.0, None, ("oops",))),
    ]
    assert pair.server.data_to_send() == b""


def test_fc_subscribe_reply(make_pair: PairFactory) -> None:
    """FCSubscribe gets onFCSubscribe (Play.Start) and a _result."""
    pair = make_pair()
    pair.connect("live")
    pair.client.clear()
    txn = pair.client.fc_subscribe("cam")
    assert pair.to_server() == []
    pair.to_client()
    assert pair.client.values() == [
        cmd.Command(
            "onFCSubscribe",
            0.0,
            None,
            (status_info("NetStream.Play.Start", "FCSubscribe to cam."),),
        ),
        cmd.Command("_result", txn, None),
    ]


def test_send_helpers(make_pair: PairFactory) -> None:
    """send_result, send_error, send_status and send_ping queue what the client expects."""
    pair = make_pair()
    pair.connect("live")
    pair.client.clear()
    pair.server.send_result(7.0, None, 12.5)
    pair.server.send_error(8.0, "nope")
    pair.server.send_status(0, "warning", "NetConnection.Call.BadVersion", "bad")
    pair.server.send_ping(2**32 + 9)
    pair.server.send_data(0, cmd.DataMessage("onBWDone", (8192.0,)))
    pair.to_client()
    assert pair.client.values() == [
        cmd.Command("_result", 7.0, None, (12.5,)),
        cmd.Command(
            "_error",
            8.0,
            None,
            (status_info("NetConnection.Call.Failed", "nope", level="error"),),
        ),
        on_status("NetConnection.Call.BadVersion", "bad", level="warning"),
        msg.PingRequest(9),
        cmd.DataMessage("onBWDone", (8192.0,)),
    ]


def test_ping_request_answered(make_pair: PairFactory) -> None:
    """A PingRequest is answered with a PingResponse; a PingResponse is an event."""
    pair = make_pair("librtmp_plain")
    pair.connect("live")
    pair.client.clear()
    pair.client.ping_request(123456)
    pair.client.ping_response(654321)
    assert pair.to_server() == [PingAnswered(654321)]
    pair.to_client()
    assert pair.client.values() == [msg.PingResponse(123456)]


def test_other_control_messages_ignored(make_pair: PairFactory) -> None:
    """SetPeerBandwidth, Abort, unknown user control and types produce nothing; an
    Acknowledgement becomes an event carrying the peer's byte count."""
    pair = make_pair()
    pair.connect("live")
    pair.client.clear()
    pair.client.control(msg.SetPeerBandwidth(1000, 2))
    pair.client.control(msg.Acknowledgement(100))
    pair.client.control(msg.Abort(5))
    pair.client.control(msg.UnknownUserControl(0x1A, b"\x00\x00"))
    pair.client.send_message(Message(7, 0, 0, b"junk"), 3)
    assert pair.to_server() == [AcknowledgementReceived(100)]
    pair.to_client()
    assert pair.client.values() == []


def test_acknowledgement_after_window(make_pair: PairFactory) -> None:
    """After the peer announces a window, the server acknowledges every window of bytes."""
    pair = make_pair("ffmpeg_publish")
    pair.connect("live")
    stream_id = pair.create_stream()
    pair.to_client()
    pair.client.clear()
    window = 1000
    pair.client.window_ack_size(window)
    pair.to_server()
    pair.to_client()
    assert pair.client.controls() == [], "no ack before a window of bytes"
    pair.client.publish(stream_id, "key")
    pair.to_server()
    pair.server.accept_publish(stream_id, "key")
    pair.to_client()
    pair.client.video(stream_id, 0, b"\x17\x01" + bytes(2500))
    pair.to_server()
    pair.to_client()
    acks = [c for c in pair.client.controls() if isinstance(c, msg.Acknowledgement)]
    total = pair.server.bytes_received
    if pair.byte_at_a_time:
        # One ack each time a full window has been received since the last one.
        assert [a.sequence_number for a in acks] == [
            window * k for k in range(1, total // window + 1)
        ]
        assert len(acks) >= 2
    else:
        # One receive_data call: a single ack carrying the total so far.
        assert acks == [msg.Acknowledgement(total)]


def test_no_acknowledgement_without_window(make_pair: PairFactory) -> None:
    """Without a WindowAckSize from the peer, no Acknowledgement is ever sent."""
    pair = publishing_pair(make_pair)
    pair.client.video(1, 0, b"\x17\x01" + bytes(10_000))
    pair.to_server()
    pair.to_client()
    assert pair.client.controls() == []


# -- errors -------------------------------------------------------------------------------


def test_command_before_connect(make_pair: PairFactory) -> None:
    """A command other than connect before connect raises CommandError."""
    pair = make_pair()
    pair.handshake()
    pair.client.create_stream()
    with pytest.raises(CommandError):
        pair.to_server()


def test_media_before_connect(make_pair: PairFactory) -> None:
    """Media before connect raises CommandError."""
    pair = make_pair()
    pair.handshake()
    pair.client.video(1, 0, AVC_KEYFRAME)
    with pytest.raises(CommandError):
        pair.to_server()


def test_second_connect(make_pair: PairFactory) -> None:
    """A second connect on a connected NetConnection raises CommandError."""
    pair = make_pair()
    pair.connect("live")
    pair.client.connect("live")
    with pytest.raises(CommandError):
        pair.to_server()


def test_connect_without_object(make_pair: PairFactory) -> None:
    """connect without a command object, or with a non-string app, raises CommandError."""
    pair = make_pair()
    pair.handshake()
    pair.client.command("connect", 1, None)
    with pytest.raises(CommandError):
        pair.to_server()
    pair = make_pair()
    pair.handshake()
    pair.client.command("connect", 1, {"app": 5.0})
    with pytest.raises(CommandError):
        pair.to_server()


def test_stream_command_on_never_created_stream(make_pair: PairFactory) -> None:
    """publish on a stream id that was never created raises CommandError."""
    pair = make_pair("ffmpeg_publish")
    pair.connect("live")
    pair.client.publish(5, "key")
    with pytest.raises(CommandError):
        pair.to_server()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xc5\x00\x00\x00",  # fmt 3 on a chunk stream never initialised
        b"\x43\x00\x00\x00\x00\x00\x05\x14",  # fmt 1 on a fresh csid 3
        # a complete type 20 message whose payload is not AMF0
        b"\x03\x00\x00\x00\x00\x00\x04\x14\x00\x00\x00\x00\x04\xff\xff\xff",
        # a command whose name is a number
        b"\x03\x00\x00\x00\x00\x00\x09\x14\x00\x00\x00\x00" + b"\x00" + bytes(8),
    ],
)
def test_garbage_after_handshake(make_pair: PairFactory, garbage: bytes) -> None:
    """Garbage after the handshake raises a RemoteProtocolError subclass."""
    pair = make_pair()
    pair.handshake()
    pair.client.send_raw(garbage)
    with pytest.raises(RemoteProtocolError) as info:
        pair.to_server()
    assert type(info.value) is not RemoteProtocolError


def test_reader_unusable_after_error() -> None:
    """After a protocol error, more input is a LocalProtocolError (the caller must drop)."""
    pair = ConnectionPair()
    pair.handshake()
    pair.client.send_raw(b"\xc5")
    with pytest.raises(ChunkError):
        pair.to_server()
    with pytest.raises(LocalProtocolError):
        pair.server.receive_data(b"\x02")


def test_garbage_handshake() -> None:
    """An HTTP request instead of C0 raises a RemoteProtocolError."""
    server = ServerConnection(random_bytes=seeded_random())
    with pytest.raises(RemoteProtocolError):
        server.receive_data(b"GET / HTTP/1.1\r\n\r\n")


def test_cannot_send_before_handshake() -> None:
    """Queuing a message before the handshake completes is a LocalProtocolError."""
    server = ServerConnection(random_bytes=seeded_random())
    with pytest.raises(LocalProtocolError):
        server.send_ping(0)


def test_local_misuse() -> None:
    """accept_publish/start_play on an unknown stream and accept_connect out of turn fail."""
    pair = ConnectionPair()
    pair.connect("live")
    with pytest.raises(LocalProtocolError):
        pair.server.accept_publish(1, "x")
    with pytest.raises(LocalProtocolError):
        pair.server.start_play(1, "x", reset=True, recorded=False)
    with pytest.raises(CommandError):
        pair.server.accept_connect(1.0)


def test_close() -> None:
    """close() moves to CLOSED from any state; further input is ignored."""
    server = ServerConnection(random_bytes=seeded_random())
    server.close()
    assert server.state is State.CLOSED
    assert server.receive_data(b"\x03" + bytes(1536)) == []
    server.close()
    assert server.state is State.CLOSED
    pair = ConnectionPair()
    pair.connect("live")
    pair.server.close()
    pair.client.create_stream()
    assert pair.to_server() == []


def test_bytes_counters() -> None:
    """bytes_sent counts drained bytes; bytes_received counts chunk bytes after the handshake."""
    pair = ConnectionPair()
    pair.handshake()
    assert pair.server.bytes_sent == 1 + 2 * 1536
    assert pair.server.bytes_received == 0
    pair.client.connect("live")
    data = pair.client.data_to_send()
    pair.server.receive_data(data)
    assert pair.server.bytes_received == len(data)


# -- random splits ---------------------------------------------------------------------------


def _record_publish_conversation() -> list[bytes]:
    """The client's bytes of a whole publish conversation, cut where a client waits."""
    pair = ConnectionPair("ffmpeg_publish")
    segments = [pair.client.data_to_send()]
    pair.server.receive_data(segments[0])
    pair.to_client()
    client = pair.client
    client.connect("live/inst?x=1", extra=(True,))
    segments.append(client.data_to_send())
    pair.server.receive_data(segments[-1])
    pair.server.accept_connect(1.0)
    pair.to_client()
    client.set_chunk_size(60)
    client.release_stream("key")
    client.fc_publish("key")
    client.create_stream()
    client.window_ack_size(500)
    segments.append(client.data_to_send())
    client.publish(1, "key?token=t")
    segments.append(client.data_to_send())
    client.set_data_frame(1, METADATA)
    client.video(1, 0, AVC_SEQUENCE_HEADER)
    client.audio(1, 0, AAC_SEQUENCE_HEADER)
    for i in range(6):
        client.video(1, 40 * i, AVC_KEYFRAME if i % 3 == 0 else AVC_INTER)
        client.audio(1, 23 * i, AAC_FRAME + bytes(i * 50))
    client.ping_request(77)
    client.set_buffer_length(1, 3000)
    client.fc_unpublish("key")
    client.delete_stream(1)
    segments.append(client.data_to_send())
    return segments


SEGMENTS = _record_publish_conversation()


def _run(segments: list[bytes], cuts: list[list[int]]) -> tuple[list[Event], bytes]:
    """Feed ``segments`` cut at ``cuts``, answering like the adapter; return events and output."""
    server = ServerConnection(random_bytes=seeded_random(0))
    events: list[Event] = []
    for segment, segment_cuts in zip(segments, cuts, strict=True):
        bounds = [0, *sorted(set(segment_cuts)), len(segment)]
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            new = server.receive_data(segment[lo:hi])
            for event in new:
                if isinstance(event, ConnectRequested):
                    new = new + server.accept_connect(event.transaction_id)
                elif isinstance(event, PublishRequested):
                    server.accept_publish(event.stream_id, event.name)
            events.extend(new)
    return events, server.data_to_send()


WHOLE_EVENTS, WHOLE_OUTPUT = _run(SEGMENTS, [[] for _ in SEGMENTS])


def test_recorded_conversation_events() -> None:
    """The recorded publish conversation yields the expected events when fed whole."""
    kinds = [type(e).__name__ for e in WHOLE_EVENTS]
    assert kinds[:4] == [
        "HandshakeCompleted",
        "ConnectRequested",
        "StreamCreated",
        "PublishRequested",
    ]
    assert kinds.count("MediaReceived") == 14
    assert kinds[-2:] == ["BufferLengthSet", "StreamClosed"]
    request = WHOLE_EVENTS[1]
    assert isinstance(request, ConnectRequested)
    assert (request.app, request.instance, request.query, request.arguments) == (
        "live",
        "inst",
        "x=1",
        (True,),
    )


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_splits_give_identical_events(data: st.DataObject) -> None:
    """Any split of the publish conversation gives the same events and the same replies."""
    cuts = [
        data.draw(st.lists(st.integers(1, max(1, len(s) - 1)), max_size=12), label=f"cuts{i}")
        for i, s in enumerate(SEGMENTS)
    ]
    events, output = _run(SEGMENTS, cuts)
    # Acknowledgement sequence numbers depend on how bytes were grouped; compare the rest.
    assert events == WHOLE_EVENTS
    assert _without_acks(output) == _without_acks(WHOLE_OUTPUT)


def _without_acks(output: bytes) -> list[object]:
    """The server's output decoded by a client, minus Acknowledgements."""
    client = FlashClient("ffmpeg_publish", seeded_random(1))
    client.data_to_send()
    values = client.receive(output)
    return [r.value for r in values if not isinstance(r.value, msg.Acknowledgement)]


# -- bugs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [float("nan"), float("inf"), -float("inf")])
def test_delete_stream_non_finite_id(make_pair: PairFactory, target: float) -> None:
    """deleteStream with a NaN or infinite id is ignored like any unknown id."""
    pair = make_pair()
    pair.connect("live")
    pair.create_stream()
    pair.client.call("deleteStream", 5, target)
    assert pair.to_server() == []


def test_deeply_nested_aggregate() -> None:
    """An aggregate nested 1500 deep (22 KB) raises a RemoteProtocolError, nothing else."""
    pair = publishing_pair(ConnectionPair)
    inner = aggregate_payload([(MessageType.AUDIO, 0, AAC_FRAME)])
    for _ in range(1500):
        inner = aggregate_payload([(MessageType.AGGREGATE, 0, inner)])
    pair.client.aggregate(1, 0, [(MessageType.AGGREGATE, 0, inner)])
    try:
        pair.to_server()
    except RemoteProtocolError:
        pass
