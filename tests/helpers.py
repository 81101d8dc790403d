# -*- test-case-name: tests.rtmp.test_connection -*-
"""
The test kit for RTMP conversations: a sans-IO client and a byte pump.

:class:`FlashClient` produces the bytes real clients (ffmpeg, librtmp, Flash)
send -- the handshake of :class:`tests.handshake_client.ClientHandshake`, then
chunked commands, data and media written with our own
:class:`~flashstream.rtmp.chunks.ChunkWriter` -- and decodes what the server
answers into :class:`Received` values.  :class:`ConnectionPair` moves bytes
between a client and a :class:`~flashstream.rtmp.connection.ServerConnection`,
whole or one byte at a time, and collects the server's events.

Nothing here does I/O; randomness is seeded so conversations are repeatable.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Callable, Iterable, Sequence

import attrs

from flashstream.rtmp import amf0
from flashstream.rtmp import commands as cmd
from flashstream.rtmp import messages as msg
from flashstream.rtmp import sharedobject as so
from flashstream.rtmp.chunks import ChunkReader, ChunkWriter
from flashstream.rtmp.connection import ServerConnection
from flashstream.rtmp.events import ConnectRequested, Event
from flashstream.rtmp.limits import Limits
from flashstream.rtmp.messages import Message, MessageType
from tests.handshake_client import ClientHandshake

__all__ = [
    "AAC_FRAME",
    "AAC_SEQUENCE_HEADER",
    "AVC_INTER",
    "AVC_KEYFRAME",
    "AVC_SEQUENCE_HEADER",
    "ConnectionPair",
    "FlashClient",
    "Received",
    "aac_frame",
    "aggregate_payload",
    "avc_inter",
    "avc_keyframe",
    "seeded_random",
]

# -- media payloads (FLV tag bodies, rtmp-protocol.md 10.2/10.3) ---------------

#: AVC sequence header: keyframe + AVC (17), AVCPacketType 0, CTS 0, then an
#: AVCDecoderConfigurationRecord (baseline 3.0, one tiny SPS and PPS).
AVC_SEQUENCE_HEADER = bytes.fromhex("17000000000142c01e ffe1 0004 6742c01e 01 0002 68ce")
#: AAC sequence header: AAC 44.1 kHz stereo (AF), AACPacketType 0, AudioSpecificConfig.
AAC_SEQUENCE_HEADER = bytes.fromhex("AF001210")


def avc_keyframe(n: int = 0) -> bytes:
    """An AVC keyframe NALU payload (``17 01``), distinguishable by ``n``."""
    return bytes.fromhex("1701000000") + struct.pack(">I", 5) + bytes([0x65, n & 0xFF, 1, 2, 3])


def avc_inter(n: int = 0) -> bytes:
    """An AVC inter frame payload (``27 01``), distinguishable by ``n``."""
    return bytes.fromhex("2701000000") + struct.pack(">I", 4) + bytes([0x41, n & 0xFF, 7, 8])


def aac_frame(n: int = 0) -> bytes:
    """A raw AAC frame payload (``AF 01``), distinguishable by ``n``."""
    return bytes([0xAF, 0x01, 0x21, n & 0xFF, 0x40])


AVC_KEYFRAME = avc_keyframe()
AVC_INTER = avc_inter()
AAC_FRAME = aac_frame()


def aggregate_payload(parts: Sequence[tuple[int, int, bytes]]) -> bytes:
    """The body of an aggregate message (type 22) of ``(type, timestamp, body)`` parts."""
    out = bytearray()
    for type_id, timestamp, body in parts:
        header = (
            bytes([type_id])
            + len(body).to_bytes(3, "big")
            + (timestamp & 0xFFFFFF).to_bytes(3, "big")
            + bytes([(timestamp >> 24) & 0xFF])
            + (0).to_bytes(3, "big")
        )
        out += header + body + struct.pack(">I", len(header) + len(body))
    return bytes(out)


def seeded_random(seed: int = 0) -> Callable[[int], bytes]:
    """A deterministic ``random_bytes(n)`` for handshakes."""
    generator = random.Random(seed)
    return generator.randbytes


# -- what a client receives --------------------------------------------------

Decoded = cmd.Command | cmd.DataMessage | msg.ControlMessage | so.SharedObjectMessage | None


@attrs.frozen
class Received:
    """One message from the server, with its payload decoded when we can."""

    message: Message
    #: Command (20/17), DataMessage (18/15) or control value (1-6); None for media.
    value: Decoded

    @property
    def status_code(self) -> str | None:
        """The ``code`` of an ``onStatus`` command or data message, else None."""
        value = self.value
        if isinstance(value, (cmd.Command, cmd.DataMessage)) and value.name == "onStatus":
            for argument in value.arguments:
                if isinstance(argument, dict) and isinstance(argument.get("code"), str):
                    return str(argument["code"])
        return None


def decode_received(message: Message) -> Received:
    """Decode ``message`` as the client sees it."""
    type_id = message.type_id
    value: Decoded = None
    if type_id in (MessageType.COMMAND_AMF0, MessageType.COMMAND_AMF3):
        value = cmd.decode_command(type_id, message.payload)
    elif type_id in (MessageType.DATA_AMF0, MessageType.DATA_AMF3):
        value = cmd.decode_data(type_id, message.payload)
    elif type_id in msg.CONTROL_TYPES:
        value = msg.decode_control(message)
    elif type_id in (MessageType.SHARED_OBJECT_AMF0, MessageType.SHARED_OBJECT_AMF3):
        value = so.decode_shared_object(type_id, message.payload)
    return Received(message, value)


# -- the client ----------------------------------------------------------------

#: Chunk stream ids ffmpeg writes on (libavformat/rtmppkt.h).
CSID_CONTROL = 2
CSID_INVOKE = 3
CSID_AUDIO = 4
CSID_VIDEO = 6
CSID_SOURCE = 8

#: rtmpdump's connect command object (plain or RTMPE).
_LIBRTMP_PROPERTIES: dict[str, object] = {
    "flashVer": "LNX 10,0,32,18",
    "fpad": False,
    "capabilities": 15.0,
    "audioCodecs": 3191.0,
    "videoCodecs": 252.0,
    "videoFunction": 1.0,
}

#: What each kind of client puts in its connect command object (rtmp-protocol.md 7.1).
_CONNECT_PROPERTIES: dict[str, dict[str, object]] = {
    "ffmpeg": {
        "flashVer": "LNX 9,0,124,2",
        "fpad": False,
        "capabilities": 15.0,
        "audioCodecs": 4071.0,
        "videoCodecs": 252.0,
        "videoFunction": 1.0,
    },
    "ffmpeg_publish": {"type": "nonprivate", "flashVer": "FMLE/3.0 (compatible; Lavf61.1.100)"},
    "librtmp_plain": _LIBRTMP_PROPERTIES,
    "librtmp_swf": {
        "flashVer": "LNX 10,0,32,18",
        "swfUrl": "http://example.com/player.swf",
        "fpad": False,
        "capabilities": 15.0,
        "audioCodecs": 3191.0,
        "videoCodecs": 252.0,
        "videoFunction": 1.0,
    },
    "librtmp_rtmpe": _LIBRTMP_PROPERTIES,
    "rtmpe_xtea": _LIBRTMP_PROPERTIES,
    "rtmpe_blowfish": _LIBRTMP_PROPERTIES,
    "flash": {
        "flashVer": "WIN 11,0,1,152",
        "swfUrl": "http://example.com/player.swf",
        "fpad": False,
        "capabilities": 239.0,
        "audioCodecs": 3575.0,
        "videoCodecs": 252.0,
        "videoFunction": 1.0,
        "pageUrl": "http://example.com/",
    },
}


class FlashClient:
    """
    A sans-IO RTMP client: builders queue bytes, :meth:`receive` decodes replies.

    Builders called before the handshake completes are held and sent right
    after C2, as a pipelining client would.  Transaction ids count up from 1
    (``connect``) like ffmpeg's, unless a builder is given ``txn``.
    """

    def __init__(
        self,
        kind: str = "ffmpeg",
        random_bytes: Callable[[int], bytes] | None = None,
        *,
        host: str = "localhost",
    ) -> None:
        self.kind = kind
        self.host = host
        self.handshake = ClientHandshake(kind, random_bytes or seeded_random(1))
        self.writer = ChunkWriter()
        self.reader = ChunkReader(Limits())
        self._out: list[bytes] = []
        self._held: list[bytes] = []
        self._handshake_started = False
        self._txn = 0
        #: Every message received so far, decoded.
        self.received: list[Received] = []

    # -- bytes in and out ----------------------------------------------------------

    @property
    def handshake_done(self) -> bool:
        """Whether S0S1S2 arrived and C2 is queued."""
        return self.handshake.c2 is not None

    def handshake_bytes(self) -> bytes:
        """C0+C1 (also queued for :meth:`data_to_send` if not taken here)."""
        self._handshake_started = True
        return self.handshake.initial_bytes()

    def data_to_send(self) -> bytes:
        """Drain the queued bytes (C0+C1 first, if nobody asked for them)."""
        if not self._handshake_started:
            self._out.insert(0, self.handshake_bytes())
        out = b"".join(self._out)
        self._out = []
        return out

    def receive(self, data: bytes) -> list[Received]:
        """Feed server bytes; return the messages they complete, decoded."""
        if not self.handshake_done:
            c2 = self.handshake.receive_data(data)
            if c2 is None:
                return []
            self._out.append(c2)
            self._out.extend(self.handshake.encrypt(held) for held in self._held)
            self._held = []
            data = self.handshake.leftover
        data = self.handshake.decrypt(data)
        received = [decode_received(m) for m in self.reader.receive_data(data)]
        self.received.extend(received)
        return received

    # -- generic builders ------------------------------------------------------------

    def next_txn(self) -> float:
        """The next transaction id (1 for connect, then 2, 3...)."""
        self._txn += 1
        return float(self._txn)

    def send_message(self, message: Message, csid: int) -> None:
        """Chunk ``message`` on ``csid`` and queue it."""
        data = self.writer.write(message, csid)
        if self.handshake_done:
            self._out.append(self.handshake.encrypt(data))
        else:
            self._held.append(data)

    def send_raw(self, data: bytes) -> None:
        """Queue bytes as they are (garbage, hand-made chunks; RC4'd for RTMPE)."""
        if self.handshake_done:
            self._out.append(self.handshake.encrypt(data))
        else:
            self._held.append(data)

    def command(
        self,
        name: str,
        txn: float,
        command_object: object = None,
        *args: object,
        stream_id: int = 0,
        csid: int | None = None,
        amf3: bool = False,
    ) -> None:
        """Queue a command: type 20, or type 17 (leading ``00``) with ``amf3``."""
        payload = cmd.encode_command(cmd.Command(name, txn, command_object, args))
        type_id = MessageType.COMMAND_AMF0
        if amf3:
            payload = b"\x00" + payload
            type_id = MessageType.COMMAND_AMF3
        if csid is None:
            csid = CSID_INVOKE if stream_id == 0 else CSID_SOURCE
        self.send_message(Message(type_id, stream_id, 0, payload), csid)

    def call(self, name: str, txn: float, *args: object, stream_id: int = 0) -> None:
        """``NetConnection.call(name, responder, args...)``: ``name(txn, null, args...)``."""
        self.command(name, txn, None, *args, stream_id=stream_id)

    def control(self, control: msg.ControlMessage) -> None:
        """Queue a protocol or user control message on csid 2."""
        self.send_message(msg.encode_control(control), CSID_CONTROL)

    # -- NetConnection -------------------------------------------------------------------

    def connect_properties(
        self,
        app: str,
        *,
        tc_url: str | None = None,
        object_encoding: int | None = None,
        flash_ver: str | None = None,
    ) -> dict[str, object]:
        """The connect command object this kind of client sends."""
        properties: dict[str, object] = {"app": app}
        properties.update(_CONNECT_PROPERTIES[self.kind])
        if flash_ver is not None:
            properties["flashVer"] = flash_ver
        properties["tcUrl"] = tc_url if tc_url is not None else f"rtmp://{self.host}/{app}"
        if object_encoding is not None:
            properties["objectEncoding"] = float(object_encoding)
        return properties

    def connect(
        self,
        app: str,
        *,
        tc_url: str | None = None,
        object_encoding: int | None = None,
        flash_ver: str | None = None,
        extra: tuple[object, ...] = (),
        amf3: bool = False,
    ) -> dict[str, object]:
        """Queue ``connect(1, {...}, extra...)``; return the command object sent."""
        properties = self.connect_properties(
            app, tc_url=tc_url, object_encoding=object_encoding, flash_ver=flash_ver
        )
        self.command("connect", self.next_txn(), properties, *extra, amf3=amf3)
        return properties

    def create_stream(self, *, amf3: bool = False) -> float:
        """Queue ``createStream(n, null)``; return n."""
        txn = self.next_txn()
        self.command("createStream", txn, None, amf3=amf3)
        return txn

    def release_stream(self, name: str) -> float:
        """Queue ``releaseStream(n, null, name)``; return n."""
        txn = self.next_txn()
        self.call("releaseStream", txn, name)
        return txn

    def fc_publish(self, name: str) -> float:
        """Queue ``FCPublish(n, null, name)``; return n."""
        txn = self.next_txn()
        self.call("FCPublish", txn, name)
        return txn

    def fc_unpublish(self, name: str) -> float:
        """Queue ``FCUnpublish(n, null, name)``; return n."""
        txn = self.next_txn()
        self.call("FCUnpublish", txn, name)
        return txn

    def fc_subscribe(self, name: str) -> float:
        """Queue ``FCSubscribe(n, null, name)``; return n."""
        txn = self.next_txn()
        self.call("FCSubscribe", txn, name)
        return txn

    def delete_stream(self, stream_id: int) -> float:
        """Queue ``deleteStream(n, null, stream_id)`` on the NetConnection; return n."""
        txn = self.next_txn()
        self.call("deleteStream", txn, float(stream_id))
        return txn

    # -- NetStream -----------------------------------------------------------------------

    def publish(
        self, stream_id: int, name: str, kind: str = "live", *, txn: float | None = None
    ) -> float:
        """Queue ``publish(n, null, name, kind)`` on ``stream_id``; return n."""
        txn = self.next_txn() if txn is None else txn
        self.command("publish", txn, None, name, kind, stream_id=stream_id)
        return txn

    def play(
        self,
        stream_id: int,
        name: str,
        start: float = -2000,
        duration: float | None = None,
        reset: bool | None = None,
        *,
        txn: float | None = None,
    ) -> float:
        """Queue ``play(n, null, name, start[, duration[, reset]])``; return n."""
        txn = self.next_txn() if txn is None else txn
        args: list[object] = [name, float(start)]
        if duration is not None or reset is not None:
            args.append(float(-1 if duration is None else duration))
        if reset is not None:
            args.append(reset)
        self.command("play", txn, None, *args, stream_id=stream_id)
        return txn

    def close_stream(self, stream_id: int) -> None:
        """Queue ``closeStream(0, null)`` on ``stream_id`` (Flash ``NetStream.close()``)."""
        self.command("closeStream", 0, None, stream_id=stream_id)

    def receive_video(self, stream_id: int, enabled: bool) -> None:
        """Queue ``receiveVideo(0, null, enabled)``."""
        self.command("receiveVideo", 0, None, enabled, stream_id=stream_id)

    def receive_audio(self, stream_id: int, enabled: bool) -> None:
        """Queue ``receiveAudio(0, null, enabled)``."""
        self.command("receiveAudio", 0, None, enabled, stream_id=stream_id)

    def pause(self, stream_id: int, paused: bool, position: float = 0.0) -> None:
        """Queue ``pause(0, null, paused, position)``."""
        self.command("pause", 0, None, paused, float(position), stream_id=stream_id)

    def seek(self, stream_id: int, position: float) -> None:
        """Queue ``seek(0, null, position)``."""
        self.command("seek", 0, None, float(position), stream_id=stream_id)

    def set_data_frame(
        self,
        stream_id: int,
        metadata: dict[str, object],
        timestamp: int = 0,
        *,
        amf3: bool = False,
    ) -> None:
        """Queue ``@setDataFrame("onMetaData", ECMA{...})`` (type 18, or 15 with ``amf3``)."""
        self.data(
            stream_id,
            "@setDataFrame",
            "onMetaData",
            amf0.ECMAArray(metadata),
            timestamp=timestamp,
            amf3=amf3,
        )

    def data(
        self, stream_id: int, name: str, *args: object, timestamp: int = 0, amf3: bool = False
    ) -> None:
        """Queue a data message ``name(args...)`` on ``stream_id``."""
        payload = cmd.encode_data(cmd.DataMessage(name, args))
        type_id = MessageType.DATA_AMF0
        if amf3:
            payload = b"\x00" + payload
            type_id = MessageType.DATA_AMF3
        self.send_message(Message(type_id, stream_id, timestamp, payload), CSID_AUDIO)

    def audio(self, stream_id: int, timestamp: int, payload: bytes) -> None:
        """Queue an audio message (type 8) on csid 4."""
        self.send_message(Message(MessageType.AUDIO, stream_id, timestamp, payload), CSID_AUDIO)

    def video(self, stream_id: int, timestamp: int, payload: bytes) -> None:
        """Queue a video message (type 9) on csid 6."""
        self.send_message(Message(MessageType.VIDEO, stream_id, timestamp, payload), CSID_VIDEO)

    def aggregate(
        self, stream_id: int, timestamp: int, parts: Sequence[tuple[int, int, bytes]]
    ) -> None:
        """Queue an aggregate message (type 22) of ``(type, timestamp, body)`` parts."""
        payload = aggregate_payload(parts)
        self.send_message(Message(MessageType.AGGREGATE, stream_id, timestamp, payload), CSID_VIDEO)

    # -- shared objects ----------------------------------------------------------------

    def shared_object(
        self,
        name: str,
        *events: so.SOEvent,
        version: int = 0,
        persistent: bool = False,
        amf3: bool = False,
    ) -> None:
        """Queue a shared object message (type 19, or 16 with ``amf3``) on csid 3."""
        type_id = MessageType.SHARED_OBJECT_AMF3 if amf3 else MessageType.SHARED_OBJECT_AMF0
        message = so.SharedObjectMessage(name, version, persistent, events, type_id)
        payload = so.encode_shared_object(message)
        self.send_message(Message(type_id, 0, 0, payload), CSID_INVOKE)

    def so_use(self, name: str, *, persistent: bool = False, amf3: bool = False) -> None:
        """``SharedObject.getRemote(name, uri, persistent).connect(nc)``."""
        self.shared_object(name, so.SOEvent(so.SOEventType.USE), persistent=persistent, amf3=amf3)

    def so_release(self, name: str, *, persistent: bool = False) -> None:
        """``SharedObject.close()``."""
        self.shared_object(name, so.SOEvent(so.SOEventType.RELEASE), persistent=persistent)

    def so_set(
        self,
        name: str,
        values: dict[str, object],
        *,
        version: int = 0,
        persistent: bool = False,
        amf3: bool = False,
    ) -> None:
        """``so.setProperty(key, value)`` for each pair: one message, one event per key."""
        events = [
            so.SOEvent(so.SOEventType.REQUEST_CHANGE, pairs=((key, value),))
            for key, value in values.items()
        ]
        self.shared_object(name, *events, version=version, persistent=persistent, amf3=amf3)

    def so_remove(self, name: str, key: str, *, persistent: bool = False) -> None:
        """``so.setProperty(key, null)`` / delete: Request Remove."""
        self.shared_object(
            name, so.SOEvent(so.SOEventType.REQUEST_REMOVE, key=key), persistent=persistent
        )

    def so_send(self, name: str, handler: str, *args: object, persistent: bool = False) -> None:
        """``so.send(handler, args...)``."""
        self.shared_object(
            name,
            so.SOEvent(so.SOEventType.SEND_MESSAGE, arguments=(handler, *args)),
            persistent=persistent,
        )

    def shared_objects(self, name: str | None = None) -> list[so.SharedObjectMessage]:
        """The shared object messages received (only for ``name``, if given)."""
        return [
            r.value
            for r in self.received
            if isinstance(r.value, so.SharedObjectMessage)
            and (name is None or r.value.name == name)
        ]

    # -- control -------------------------------------------------------------------------

    def set_chunk_size(self, size: int) -> None:
        """Queue Set Chunk Size and write the following chunks with it."""
        self.control(msg.SetChunkSize(size))
        self.writer.set_chunk_size(size)

    def window_ack_size(self, size: int) -> None:
        """Queue Window Acknowledgement Size (the server should ack every ``size`` bytes)."""
        self.control(msg.WindowAckSize(size))

    def set_buffer_length(self, stream_id: int, ms: int) -> None:
        """Queue the SetBufferLength user control event."""
        self.control(msg.SetBufferLength(stream_id, ms))

    def ping_request(self, timestamp: int) -> None:
        """Queue a PingRequest user control event."""
        self.control(msg.PingRequest(timestamp))

    def ping_response(self, timestamp: int) -> None:
        """Queue a PingResponse user control event."""
        self.control(msg.PingResponse(timestamp))

    # -- looking at what arrived --------------------------------------------------------------

    def values(self) -> list[Decoded]:
        """The decoded value of every message received, in order."""
        return [r.value for r in self.received]

    def commands(self, name: str | None = None) -> list[cmd.Command]:
        """The commands received (only those called ``name``, if given)."""
        return [
            r.value
            for r in self.received
            if isinstance(r.value, cmd.Command) and (name is None or r.value.name == name)
        ]

    def status_codes(self, stream_id: int | None = None) -> list[str]:
        """The ``onStatus`` codes received, in order (only on ``stream_id``, if given)."""
        return [
            code
            for r in self.received
            if (code := r.status_code) is not None
            and (stream_id is None or r.message.stream_id == stream_id)
        ]

    def results(self, txn: float) -> list[cmd.Command]:
        """The ``_result`` and ``_error`` commands answering transaction ``txn``."""
        return [
            c
            for c in self.commands()
            if c.name in ("_result", "_error") and c.transaction_id == txn
        ]

    def result(self, txn: float) -> cmd.Command:
        """The one ``_result``/``_error`` answering ``txn`` (AssertionError otherwise)."""
        found = self.results(txn)
        assert len(found) == 1, f"expected one answer to {txn}, got {found}"
        return found[0]

    def controls(self) -> list[msg.ControlMessage]:
        """The control values received, in order."""
        return [
            r.value
            for r in self.received
            if r.value is not None
            and not isinstance(r.value, (cmd.Command, cmd.DataMessage, so.SharedObjectMessage))
        ]

    def media(self, stream_id: int | None = None) -> list[Message]:
        """
        The audio, video and data messages received (on ``stream_id``, if given).

        Data messages the server sends on its own (``onStatus``,
        ``|RtmpSampleAccess``) are left out; ``onMetaData`` and cue points stay.
        """
        kinds = (MessageType.AUDIO, MessageType.VIDEO, MessageType.DATA_AMF0)
        return [
            r.message
            for r in self.received
            if r.message.type_id in kinds
            and (stream_id is None or r.message.stream_id == stream_id)
            and not (
                isinstance(r.value, cmd.DataMessage)
                and r.value.name in ("onStatus", "|RtmpSampleAccess")
            )
        ]

    def clear(self) -> None:
        """Forget what was received so far."""
        self.received = []


# -- the pump --------------------------------------------------------------------------------


def _pieces(data: bytes, byte_at_a_time: bool) -> Iterable[bytes]:
    if byte_at_a_time:
        return (data[i : i + 1] for i in range(len(data)))
    return (data,) if data else ()


class ConnectionPair:
    """
    A :class:`FlashClient` wired to a :class:`ServerConnection`.

    :meth:`to_server` feeds the client's queued bytes to the server (whole,
    or one byte at a time) and returns the server's events;
    :meth:`to_client` feeds the server's queued bytes to the client.
    """

    def __init__(
        self,
        kind: str = "ffmpeg",
        *,
        byte_at_a_time: bool = False,
        limits: Limits | None = None,
        client: FlashClient | None = None,
        server: ServerConnection | None = None,
        seed: int = 0,
    ) -> None:
        self.client = client or FlashClient(kind, seeded_random(seed + 1))
        self.server = server or ServerConnection(
            random_bytes=seeded_random(seed), limits=limits or Limits()
        )
        self.byte_at_a_time = byte_at_a_time
        #: Every event the server reported, in order.
        self.events: list[Event] = []

    def to_server(self) -> list[Event]:
        """Deliver the client's queued bytes; return the server's new events."""
        events: list[Event] = []
        for piece in _pieces(self.client.data_to_send(), self.byte_at_a_time):
            events.extend(self.server.receive_data(piece))
        self.events.extend(events)
        return events

    def to_client(self) -> list[Received]:
        """Deliver the server's queued bytes; return what the client decoded."""
        received: list[Received] = []
        for piece in _pieces(self.server.data_to_send(), self.byte_at_a_time):
            received.extend(self.client.receive(piece))
        return received

    def handshake(self) -> list[Event]:
        """Run the handshake to completion; return the server's events."""
        events = self.to_server()
        self.to_client()
        assert self.client.handshake_done, "the server did not answer C0+C1"
        events += self.to_server()
        return events

    def connect(
        self, app: str = "live", *, object_encoding: int | None = None, amf3: bool = False
    ) -> list[Event]:
        """Handshake, ``connect``, accept it; return every server event, replayed ones included."""
        self.handshake()
        self.client.connect(app, object_encoding=object_encoding, amf3=amf3)
        events = self.to_server()
        requests = [e for e in events if isinstance(e, ConnectRequested)]
        assert len(requests) == 1, events
        events += self.server.accept_connect(requests[0].transaction_id)
        self.to_client()
        return events

    def create_stream(self) -> int:
        """``createStream`` and return the id the client got."""
        txn = self.client.create_stream()
        self.to_server()
        self.to_client()
        result = self.client.result(txn)
        stream_id = result.arguments[0]
        assert isinstance(stream_id, float), result
        return int(stream_id)


def read_available(peer: socket.socket) -> bytes:
    """Everything a socket can read now without blocking (to its EOF at most)."""
    peer.setblocking(False)
    out = b""
    while True:
        try:
            data = peer.recv(1 << 20)
        except BlockingIOError:
            return out
        if not data:
            return out
        out += data
