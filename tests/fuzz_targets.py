# -*- test-case-name: tests.rtmp.test_fuzz -*-
"""
Fuzz targets over every parser a peer feeds (and the RTMPT tunnel rules and
the first-bytes dispatch), shared by the property tests in
``tests/rtmp/test_fuzz.py`` and the long run in ``bench/fuzz.py``.

Each target takes arbitrary bytes and must either succeed or raise a
:class:`~flashstream.rtmp.errors.RemoteProtocolError` (the adapter turns
that into "drop this peer"); any other exception is a bug.  :data:`SEEDS`
holds valid inputs per target, for mutation-based fuzzers to start from.
"""

from __future__ import annotations

from collections.abc import Callable

from flashstream.rtmp import amf0, amf3, commands, messages
from flashstream.rtmp import events as ev
from flashstream.rtmp.chunks import ChunkReader
from flashstream.rtmp.connection import ServerConnection, State
from flashstream.rtmp.handshake import ServerHandshake
from flashstream.rtmp.limits import Limits
from flashstream.rtmp.messages import Message, MessageType
from flashstream.rtmp.sharedobject import (
    SharedObjectMessage,
    SOEvent,
    SOEventType,
    decode_shared_object,
    encode_shared_object,
)
from flashstream.rtmp.tunnel import Command as TunnelCommand
from flashstream.rtmp.tunnel import TunnelLimits, TunnelSession
from flashstream.sniff import Kind, classify
from tests.helpers import (
    AAC_SEQUENCE_HEADER,
    AVC_SEQUENCE_HEADER,
    FlashClient,
    aac_frame,
    avc_keyframe,
    seeded_random,
)

#: Small limits so the fuzzers reach the limit checks with short inputs.
LIMITS = Limits(
    max_message_size=4096,
    max_pending_bytes=16384,
    max_chunk_streams=8,
    max_amf_depth=8,
    max_amf_items=64,
    max_streams=4,
    max_so_events=16,
)

Target = Callable[[bytes], None]


def _split(data: bytes) -> list[bytes]:
    """The first byte says where to cut the rest in two (so split reads are fuzzed too)."""
    if not data:
        return []
    rest = data[1:]
    cut = data[0] * len(rest) // 255
    return [piece for piece in (rest[:cut], rest[cut:]) if piece]


def handshake(data: bytes) -> None:
    """C0, C1 and C2 (plain, digest and RTMPE types) into a ServerHandshake."""
    server = ServerHandshake(random_bytes=seeded_random(0))
    for piece in _split(data):
        if server.receive_data(piece) is not None:
            return


def chunks(data: bytes) -> None:
    """Chunk stream bytes into a ChunkReader."""
    reader = ChunkReader(LIMITS)
    for piece in _split(data):
        reader.receive_data(piece)


def amf0_values(data: bytes) -> None:
    """An AMF0 value sequence."""
    amf0.decode(data, LIMITS)


def amf3_values(data: bytes) -> None:
    """An AMF3 value sequence."""
    amf3.decode(data, LIMITS)


def command(data: bytes) -> None:
    """A command or data message payload; the first byte picks AMF0 or AMF3, command or data."""
    if not data:
        return
    kind, payload = data[0] % 4, data[1:]
    if kind == 0:
        commands.decode_command(MessageType.COMMAND_AMF0, payload, LIMITS)
    elif kind == 1:
        commands.decode_command(MessageType.COMMAND_AMF3, payload, LIMITS)
    elif kind == 2:
        commands.decode_data(MessageType.DATA_AMF0, payload, LIMITS)
    else:
        commands.decode_data(MessageType.DATA_AMF3, payload, LIMITS)


def shared_object(data: bytes) -> None:
    """A shared object message payload (type 19 or 16, picked by the first byte)."""
    if not data:
        return
    type_id = MessageType.SHARED_OBJECT_AMF0 if data[0] % 2 else MessageType.SHARED_OBJECT_AMF3
    decode_shared_object(type_id, data[1:], LIMITS)


_CONTROL_TYPES = (1, 2, 3, 4, 5, 6)


def control(data: bytes) -> None:
    """A protocol control or user control payload, or an aggregate (first byte picks)."""
    if not data:
        return
    kind = data[0] % (len(_CONTROL_TYPES) + 1)
    if kind == len(_CONTROL_TYPES):
        messages.unpack_aggregate(Message(MessageType.AGGREGATE, 1, 0, data[1:]), LIMITS)
    else:
        messages.decode_control(Message(_CONTROL_TYPES[kind], 0, 0, data[1:]))


def _conversation() -> tuple[bytes, bytes, bytes]:
    """A client's handshake (answering the seeded server) and a publish-then-play session."""
    client = FlashClient("ffmpeg_publish", seeded_random(1))
    server = ServerConnection(random_bytes=seeded_random(0), limits=LIMITS)
    c0c1 = client.data_to_send()
    server.receive_data(c0c1)
    client.receive(server.data_to_send())
    handshake_bytes = c0c1 + client.data_to_send()
    client.connect("live")
    connect = client.data_to_send()
    client.create_stream()
    client.publish(1, "cam")
    client.set_data_frame(1, {"width": 320.0})
    client.video(1, 0, AVC_SEQUENCE_HEADER)
    client.audio(1, 0, AAC_SEQUENCE_HEADER)
    client.video(1, 40, avc_keyframe(1))
    client.audio(1, 50, aac_frame(1))
    client.so_use("room")
    client.so_set("room", {"k": 1.0})
    client.call("anything", 9.0, "x")
    client.play(1, "other")
    return handshake_bytes, connect, client.data_to_send()


_HANDSHAKE, _CONNECT, SESSION = _conversation()
_PREFIX = _HANDSHAKE + _CONNECT


def _act(server: ServerConnection, events: list[ev.Event]) -> None:
    """Accept every publish and play, as an application that allows everything would."""
    for event in events:
        if isinstance(event, ev.PublishRequested):
            server.accept_publish(event.stream_id, event.name)
        elif isinstance(event, ev.PlayRequested):
            server.start_play(event.stream_id, event.name, reset=True, recorded=False)


def connection(data: bytes) -> None:
    """Bytes after the handshake and an accepted connect into a ServerConnection."""
    server = ServerConnection(random_bytes=seeded_random(0), limits=LIMITS)
    (request,) = [e for e in server.receive_data(_PREFIX) if isinstance(e, ev.ConnectRequested)]
    _act(server, server.accept_connect(request.transaction_id))
    assert server.state is State.CONNECTED, server.state
    for piece in _split(data):
        _act(server, server.receive_data(piece))
        server.data_to_send()


_TUNNEL_LIMITS = TunnelLimits(
    max_reorder=4, reorder_timeout=1.0, max_response_body=64, write_buffer_high=256
)


def tunnel(data: bytes) -> None:
    """RTMPT requests (command, sequence number, seconds since the last) on one session.

    Each 4 bytes are one request.  The tunnel rules must hold whatever the
    client sends: at most ``max_reorder`` requests held, every body delivered
    at most once and in sequence order, answers never over
    ``max_response_body`` bytes plus the polling byte.
    """
    commands_ = (TunnelCommand.SEND, TunnelCommand.IDLE, TunnelCommand.CLOSE)
    session = TunnelSession("fuzz", 0.0, _TUNNEL_LIMITS)
    now = 0.0
    delivered: list[int] = []
    for i in range(0, len(data) - 3, 4):
        command = commands_[data[i] % 3]
        seq = int.from_bytes(data[i + 1 : i + 3], "big")
        now += data[i + 3] / 64
        delivery = session.receive(command, seq, seq.to_bytes(2, "big"), now)
        delivered += [int.from_bytes(body, "big") for body in delivery.bodies]
        assert session.sequencer.held <= _TUNNEL_LIMITS.max_reorder, session.sequencer.held
        session.queue(bytes(data[i + 3]))
        answer = session.answer()
        assert 1 <= len(answer) <= _TUNNEL_LIMITS.max_response_body + 1, len(answer)
    assert delivered == sorted(set(delivered)), delivered


def first_bytes(data: bytes) -> None:
    """The first-bytes dispatch of a shared port, on every prefix of ``data``."""
    for end in range(min(len(data), 16) + 1):
        assert isinstance(classify(data[:end]), Kind)


#: Every target by name.
TARGETS: dict[str, Target] = {
    "handshake": handshake,
    "chunks": chunks,
    "amf0": amf0_values,
    "amf3": amf3_values,
    "command": command,
    "shared_object": shared_object,
    "control": control,
    "connection": connection,
    "tunnel": tunnel,
    "first_bytes": first_bytes,
}


def _seeds() -> dict[str, list[bytes]]:
    c0c1 = FlashClient("flash", seeded_random(3)).data_to_send()
    plain = FlashClient("ffmpeg", seeded_random(4)).data_to_send()
    hello = commands.encode_command(
        commands.Command("connect", 1.0, {"app": "live", "list": [1.0, "a", None]}, ())
    )
    so_message = SharedObjectMessage(
        "room",
        3,
        True,
        (
            SOEvent(SOEventType.USE),
            SOEvent(SOEventType.CHANGE, pairs=(("a", 1.0), ("b", ["x", None]))),
        ),
    )
    return {
        "handshake": [b"\x80" + c0c1, b"\x80" + plain, b"\x40" + b"\x06" + c0c1[1:]],
        "chunks": [b"\x80" + _CONNECT + SESSION],
        "amf0": [amf0.encode({"a": [1.0, True, None, "x"]}, 2.0, "s")],
        "amf3": [amf3.encode({"a": [1, True, None, "x"]}, 2.5, b"ab")],
        "command": [b"\x00" + hello, b"\x01\x00" + hello],
        "shared_object": [b"\x01" + encode_shared_object(so_message)],
        "control": [b"\x00\x00\x00\x10\x00", b"\x03\x00\x06\x00\x00\x00\x01\x00\x00\x00\x0a"],
        "connection": [b"\x80" + SESSION, b"\x10" + SESSION],
        "tunnel": [
            b"".join(bytes([i % 2, 0, i, 8]) for i in (0, 1, 3, 2, 4, 9, 5)),
            b"".join(bytes([1, 0, i, 200]) for i in (0, 2, 1)),
        ],
        "first_bytes": [b"\x03", b"POST /open/1 HTTP/1.1\r\n", b"\x16\x03\x01", b"GE"],
    }


#: Valid inputs per target (what a mutation fuzzer starts from).
SEEDS = _seeds()
