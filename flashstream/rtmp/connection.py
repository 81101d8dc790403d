# -*- test-case-name: tests.rtmp.test_connection -*-
"""
The server side of one RTMP connection, without I/O.

``ServerConnection.receive_data(bytes)`` runs the handshake, the chunk
reader and the NetConnection/NetStream command rules and returns a list of
:mod:`~flashstream.rtmp.events`; the ``accept_*``/``reject_*``/``send_*``
methods queue replies, and ``data_to_send()`` drains the bytes to write.

What the core answers on its own (the protocol, not policy): handshake,
acknowledgements, ping responses, ``createStream``, ``releaseStream``,
``FCPublish``/``FCUnpublish``/``FCSubscribe`` courtesy replies.  What it
hands to the caller as events (policy): ``connect``, ``publish``, ``play``,
stream close, media, data and any other call.

The connection state machine is the table ``_TRANSITIONS`` below: a
(state, input) pair that is not in it is a protocol error.

Bytes after the handshake pass through the handshake's
:class:`~flashstream.rtmp.rtmpe.Ciphers`: RC4 for RTMPE, the identity for
plain RTMP, so both take the same path.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable

from . import commands as cmd
from . import messages as msg
from . import sharedobject as so
from .amf0 import ECMAArray
from .chunks import ChunkReader, ChunkWriter
from .errors import CommandError, LimitExceeded, LocalProtocolError, MessageError
from .events import (
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
    Play2Requested,
    PlayRequested,
    PublishRequested,
    ReceiveMediaToggled,
    SeekRequested,
    SharedObjectReceived,
    StreamClosed,
    StreamCreated,
)
from .handshake import ServerHandshake
from .limits import Limits
from .messages import Message, MessageType
from .prechunk import AUDIO_CSID, MEDIA_CSIDS, VIDEO_CSID, LockstepWriter, SharedMessage
from .rtmpe import PLAIN

#: What we announce in the connect ``_result`` (clients only check the code,
#: but some log fmsVer; this is what FMS 3 said).
FMS_VERSION = "FMS/3,5,7,7009"
CAPABILITIES = 31
#: Window acknowledgement size and peer bandwidth we announce (as ffmpeg).
DEFAULT_WINDOW = 2_500_000
#: Our outgoing chunk size (nginx and OBS use 4096).
DEFAULT_CHUNK_SIZE = 4096

#: Chunk stream ids we write on (nginx's convention).
CSID_CONTROL = msg.CONTROL_CSID
CSID_COMMAND = 3
CSID_STREAM = 5
CSID_AUDIO = AUDIO_CSID
CSID_VIDEO = VIDEO_CSID

#: The chunk stream each fanned-out message type goes on (others: CSID_STREAM).
_MEDIA_CSIDS = MEDIA_CSIDS

#: Commands that are answers to our own calls, never answered with ``_error``.
RESPONSE_COMMANDS = frozenset({"_result", "_error"})

#: What an aggregate message may contain (never another aggregate: no recursion).
_AGGREGATE_PARTS = frozenset(
    {MessageType.AUDIO, MessageType.VIDEO, MessageType.DATA_AMF0, MessageType.DATA_AMF3}
)

#: Most commands held while the application decides on ``connect``.
MAX_PENDING_COMMANDS = 64


class State(enum.Enum):
    """Where the connection is in its life."""

    HANDSHAKE = "handshake"
    AWAIT_CONNECT = "await-connect"
    CONNECT_PENDING = "connect-pending"
    CONNECTED = "connected"
    CLOSED = "closed"


class Input(enum.Enum):
    """What moves the connection between states."""

    HANDSHAKE_DONE = "handshake-done"
    CONNECT = "connect"
    ACCEPT = "accept"
    REJECT = "reject"
    COMMAND = "command"
    MEDIA = "media"
    CLOSE = "close"


#: (state, input) -> next state.  Anything missing is a protocol error.
_TRANSITIONS: dict[tuple[State, Input], State] = {
    (State.HANDSHAKE, Input.HANDSHAKE_DONE): State.AWAIT_CONNECT,
    (State.AWAIT_CONNECT, Input.CONNECT): State.CONNECT_PENDING,
    (State.CONNECT_PENDING, Input.ACCEPT): State.CONNECTED,
    (State.CONNECT_PENDING, Input.REJECT): State.CLOSED,
    (State.CONNECT_PENDING, Input.COMMAND): State.CONNECT_PENDING,
    (State.CONNECTED, Input.COMMAND): State.CONNECTED,
    (State.CONNECTED, Input.MEDIA): State.CONNECTED,
    (State.HANDSHAKE, Input.CLOSE): State.CLOSED,
    (State.AWAIT_CONNECT, Input.CLOSE): State.CLOSED,
    (State.CONNECT_PENDING, Input.CLOSE): State.CLOSED,
    (State.CONNECTED, Input.CLOSE): State.CLOSED,
    (State.CLOSED, Input.CLOSE): State.CLOSED,
}


class StreamMode(enum.Enum):
    """What a NetStream is doing."""

    IDLE = "idle"
    PUBLISHING = "publishing"
    PLAYING = "playing"


def split_query(name: str) -> tuple[str, str]:
    """Split ``name?query`` into ``(name, query)``."""
    head, _, query = name.partition("?")
    return head, query


def status_info(level: str, code: str, description: str, **extra: object) -> dict[str, object]:
    """Build an ``onStatus`` info object."""
    info: dict[str, object] = {"level": level, "code": code, "description": description}
    info.update(extra)
    return info


class ServerConnection:
    """Sans-IO RTMP server connection: bytes in, events and bytes out."""

    def __init__(
        self,
        *,
        random_bytes: Callable[[int], bytes],
        limits: Limits = Limits(),
        time_ms: int = 0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        window_ack_size: int = DEFAULT_WINDOW,
    ) -> None:
        self.limits = limits
        self._handshake = ServerHandshake(random_bytes=random_bytes, time_ms=time_ms)
        self._reader = ChunkReader(limits)
        self._writer = ChunkWriter()
        self._out: list[bytes] = []
        #: Input after C2 is decrypted, output after S2 encrypted (RTMPE).
        self._ciphers = PLAIN
        self._state = State.HANDSHAKE
        self._chunk_size = chunk_size
        self._window_ack_size = window_ack_size
        #: The peer's acknowledgement window (type 5), 0 = none announced.
        self._peer_window = 0
        self._last_ack = 0
        self._streams: dict[int, StreamMode] = {}
        self._pending: list[Message] = []
        self.object_encoding = 0
        self.bytes_sent = 0
        #: Set while the audio/video chunk streams are lent to a lockstep
        #: group (:meth:`lend_media`): called before anything else is written.
        self._lease: Callable[[], None] | None = None

    # -- state ------------------------------------------------------------

    @property
    def state(self) -> State:
        """The connection's current state."""
        return self._state

    @property
    def bytes_received(self) -> int:
        """Bytes of RTMP chunks received after the handshake."""
        return self._reader.bytes_received

    def stream_mode(self, stream_id: int) -> StreamMode | None:
        """What the stream is doing, or None if it does not exist."""
        return self._streams.get(stream_id)

    def _move(self, event: Input) -> None:
        try:
            self._state = _TRANSITIONS[(self._state, event)]
        except KeyError:
            raise CommandError(
                f"{event.value} is not allowed in state {self._state.value}"
            ) from None

    # -- input ------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; return the events they complete."""
        events: list[Event] = []
        if self._state is State.CLOSED:
            return events
        if self._state is State.HANDSHAKE:
            leftover = self._handshake.receive_data(data)
            self._out.append(self._handshake.data_to_send())
            if leftover is None:
                return events
            self._move(Input.HANDSHAKE_DONE)
            assert self._handshake.client_version is not None
            self._ciphers = self._handshake.ciphers
            events.append(
                HandshakeCompleted(
                    self._handshake.client_version,
                    self._handshake.scheme,
                    encrypted=self._ciphers.encrypted,
                )
            )
            data = leftover
        if data:
            for message in self._reader.receive_data(self._ciphers.decrypt.update(data)):
                self._receive_message(message, events)
            self._maybe_acknowledge()
        return events

    def _maybe_acknowledge(self) -> None:
        if self._peer_window <= 0:
            return
        received = self._reader.bytes_received
        if received - self._last_ack >= self._peer_window:
            self._last_ack = received
            self.send_control(msg.Acknowledgement(received % 2**32))

    def _receive_message(self, message: Message, events: list[Event]) -> None:
        type_id = message.type_id
        if type_id in (MessageType.AUDIO, MessageType.VIDEO):
            self._move(Input.MEDIA)
            if self._streams.get(message.stream_id) is StreamMode.PUBLISHING:
                events.append(MediaReceived(message.stream_id, message))
        elif type_id in (MessageType.COMMAND_AMF0, MessageType.COMMAND_AMF3):
            command = cmd.decode_command(type_id, message.payload, self.limits)
            if self._state is State.CONNECT_PENDING:
                self._hold(message)
                return
            self._receive_command(message.stream_id, command, events)
        elif type_id in (MessageType.SHARED_OBJECT_AMF0, MessageType.SHARED_OBJECT_AMF3):
            shared = so.decode_shared_object(type_id, message.payload, self.limits)
            if self._state is State.CONNECT_PENDING:
                self._hold(message)
                return
            self._move(Input.COMMAND)
            events.append(SharedObjectReceived(shared))
        elif type_id in (MessageType.DATA_AMF0, MessageType.DATA_AMF3):
            self._move(Input.MEDIA)
            self._receive_data_message(message, events)
        elif type_id == MessageType.AGGREGATE:
            self._move(Input.MEDIA)
            for sub in msg.unpack_aggregate(message, self.limits):
                if sub.type_id not in _AGGREGATE_PARTS:
                    raise MessageError(f"message type {sub.type_id} inside an aggregate")
                self._receive_message(sub, events)
        elif type_id in (
            MessageType.SET_CHUNK_SIZE,
            MessageType.ABORT,
            MessageType.ACKNOWLEDGEMENT,
            MessageType.USER_CONTROL,
            MessageType.WINDOW_ACK_SIZE,
            MessageType.SET_PEER_BANDWIDTH,
        ):
            self._receive_control(msg.decode_control(message), events)
        # Unknown types are ignored here.

    def _hold(self, message: Message) -> None:
        """Keep a command or shared object message until connect is answered."""
        self._move(Input.COMMAND)
        if len(self._pending) >= MAX_PENDING_COMMANDS:
            raise LimitExceeded(
                "commands before connect is answered",
                len(self._pending) + 1,
                MAX_PENDING_COMMANDS,
            )
        self._pending.append(message)

    def _receive_control(self, control: msg.ControlMessage, events: list[Event]) -> None:
        # SetChunkSize and Abort were already applied by the chunk reader.
        if isinstance(control, msg.WindowAckSize):
            self._peer_window = control.size
        elif isinstance(control, msg.PingRequest):
            self.send_control(msg.PingResponse(control.timestamp))
        elif isinstance(control, msg.PingResponse):
            events.append(PingAnswered(control.timestamp))
        elif isinstance(control, msg.Acknowledgement):
            events.append(AcknowledgementReceived(control.sequence_number))
        elif isinstance(control, msg.SetBufferLength):
            events.append(BufferLengthSet(control.stream_id, control.buffer_ms))

    def _receive_data_message(self, message: Message, events: list[Event]) -> None:
        data = cmd.decode_data(message.type_id, message.payload, self.limits)
        if self._streams.get(message.stream_id) is not StreamMode.PUBLISHING:
            return
        set_data_frame = False
        if data.name == "@setDataFrame" and data.arguments and isinstance(data.arguments[0], str):
            set_data_frame = True
            data = cmd.DataMessage(data.arguments[0], data.arguments[1:])
        elif data.name == "@clearDataFrame":
            return
        forward = Message(
            MessageType.DATA_AMF0, message.stream_id, message.timestamp, cmd.encode_data(data)
        )
        events.append(DataReceived(message.stream_id, data, forward, set_data_frame))

    # -- commands ---------------------------------------------------------

    def _receive_command(self, stream_id: int, command: cmd.Command, events: list[Event]) -> None:
        name = command.name
        if name == "connect":
            self._on_connect(command, events)
            return
        self._move(Input.COMMAND)
        handler = _NETCONNECTION_COMMANDS.get(name) if stream_id == 0 else None
        if handler is None and stream_id != 0:
            handler = _NETSTREAM_COMMANDS.get(name)
            if handler is not None and stream_id not in self._streams:
                raise CommandError(f"{name} on stream {stream_id}, which was never created")
        if handler is None:
            events.append(CallReceived(stream_id, command))
            return
        handler(self, stream_id, command, events)

    def _on_connect(self, command: cmd.Command, events: list[Event]) -> None:
        self._move(Input.CONNECT)
        properties = command.command_object
        if not isinstance(properties, dict):
            raise CommandError("connect without a command object")
        app_field = properties.get("app", "")
        if not isinstance(app_field, str):
            raise CommandError("connect with a non-string app")
        app_path, query = split_query(app_field)
        app, _, instance = app_path.strip("/").partition("/")
        encoding = properties.get("objectEncoding", 0)
        self.object_encoding = 3 if encoding == 3 else 0
        events.append(
            ConnectRequested(
                transaction_id=command.transaction_id,
                properties=dict(properties),
                app=app,
                instance=instance,
                query=query,
                object_encoding=self.object_encoding,
                arguments=command.arguments,
            )
        )

    def _on_create_stream(self, stream_id: int, command: cmd.Command, events: list[Event]) -> None:
        new_id = next(i for i in range(1, len(self._streams) + 2) if i not in self._streams)
        if new_id > self.limits.max_streams:
            raise LimitExceeded("max_streams", new_id, self.limits.max_streams)
        self._streams[new_id] = StreamMode.IDLE
        self.send_result(command.transaction_id, None, float(new_id))
        events.append(StreamCreated(new_id))

    def _on_delete_stream(self, stream_id: int, command: cmd.Command, events: list[Event]) -> None:
        target = command.arguments[0] if command.arguments else stream_id
        if (
            isinstance(target, bool)
            or not isinstance(target, (int, float))
            or not math.isfinite(target)
            or int(target) not in self._streams
        ):
            return  # deleting an unknown stream is harmless
        events.append(StreamClosed(int(target), deleted=True))
        del self._streams[int(target)]

    def _on_close_stream(self, stream_id: int, command: cmd.Command, events: list[Event]) -> None:
        if stream_id in self._streams:
            events.append(StreamClosed(stream_id, deleted=False))
            self._streams[stream_id] = StreamMode.IDLE

    def _on_courtesy(self, stream_id: int, command: cmd.Command, events: list[Event]) -> None:
        name = _first_string(command.arguments)
        if command.name == "FCPublish":
            self.send_command(
                0,
                cmd.Command(
                    "onFCPublish",
                    0,
                    None,
                    (status_info("status", "NetStream.Publish.Start", f"FCPublish to {name}."),),
                ),
            )
        elif command.name == "FCUnpublish":
            self.send_command(
                0,
                cmd.Command(
                    "onFCUnpublish",
                    0,
                    None,
                    (
                        status_info(
                            "status", "NetStream.Unpublish.Success", f"{name} is now unpublished."
                        ),
                    ),
                ),
            )
        elif command.name == "FCSubscribe":
            self.send_command(
                0,
                cmd.Command(
                    "onFCSubscribe",
                    0,
                    None,
                    (status_info("status", "NetStream.Play.Start", f"FCSubscribe to {name}."),),
                ),
            )
        if command.transaction_id > 0:
            self.send_result(command.transaction_id, None)

    def _on_publish(self, stream_id: int, command: cmd.Command, events: list[Event]) -> None:
        raw = _first_string(command.arguments)
        if raw is None:
            raise CommandError("publish without a stream name")
        name, query = split_query(raw)
        kind = command.arguments[1] if len(command.arguments) > 1 else "live"
        publish_type = kind if isinstance(kind, str) and kind else "live"
        events.append(
            PublishRequested(stream_id, name, query, publish_type, command.transaction_id)
        )

    def _on_play(self, stream_id: int, command: cmd.Command, events: list[Event]) -> None:
        raw = _first_string(command.arguments)
        if raw is None:
            raise CommandError("play without a stream name")
        name, query = split_query(raw)
        args = command.arguments
        start = _number(args, 1, -2000.0)
        duration = _number(args, 2, -1000.0)
        reset = args[3] if len(args) > 3 else True
        events.append(
            PlayRequested(
                stream_id, name, query, start, duration, reset is not False, command.transaction_id
            )
        )

    def _on_receive_media(self, stream_id: int, command: cmd.Command, events: list[Event]) -> None:
        kind = "audio" if command.name == "receiveAudio" else "video"
        flag = command.arguments[0] if command.arguments else True
        events.append(ReceiveMediaToggled(stream_id, kind, flag is not False))

    def _on_pause(self, stream_id: int, command: cmd.Command, events: list[Event]) -> None:
        flag = command.arguments[0] if command.arguments else True
        events.append(
            PauseRequested(stream_id, flag is not False, _number(command.arguments, 1, 0.0))
        )

    def _on_seek(self, stream_id: int, command: cmd.Command, events: list[Event]) -> None:
        events.append(SeekRequested(stream_id, _number(command.arguments, 0, 0.0)))

    def _on_play2(self, stream_id: int, command: cmd.Command, events: list[Event]) -> None:
        options = command.arguments[0] if command.arguments else None
        if not isinstance(options, dict):
            raise CommandError("play2 without a NetStreamPlayOptions object")
        events.append(Play2Requested(stream_id, dict(options)))

    # -- replies for the caller ---------------------------------------------

    def accept_connect(self, transaction_id: float, **extra_info: object) -> list[Event]:
        """Answer ``connect`` with success and the usual control messages.

        Returns the events of commands that arrived while the caller was
        deciding (pipelining clients send ``createStream`` early).
        """
        self._move(Input.ACCEPT)
        self.send_control(msg.WindowAckSize(self._window_ack_size))
        self.send_control(msg.SetPeerBandwidth(self._window_ack_size, 2))
        self.send_control(msg.SetChunkSize(self._chunk_size))
        if self._lease is not None:
            self._end_lease()  # the group chunks at the old size
        self._writer.set_chunk_size(self._chunk_size)
        properties = {"fmsVer": FMS_VERSION, "capabilities": float(CAPABILITIES), "mode": 1.0}
        info = status_info(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
            objectEncoding=float(self.object_encoding),
            data=ECMAArray({"version": "3,5,7,7009"}),
            **extra_info,
        )
        self.send_command(0, cmd.Command("_result", transaction_id, properties, (info,)))
        pending, self._pending = self._pending, []
        events: list[Event] = []
        for message in pending:
            self._receive_message(message, events)
        return events

    def reject_connect(
        self,
        transaction_id: float,
        description: str,
        code: str = "NetConnection.Connect.Rejected",
    ) -> None:
        """Answer ``connect`` with ``_error``; the caller then closes."""
        self._move(Input.REJECT)
        info = status_info("error", code, description)
        self.send_command(0, cmd.Command("_error", transaction_id, None, (info,)))

    def accept_publish(self, stream_id: int, name: str) -> None:
        """Start publishing on ``stream_id``: StreamBegin and Publish.Start."""
        self._require_stream(stream_id)
        self._streams[stream_id] = StreamMode.PUBLISHING
        self.send_control(msg.StreamBegin(stream_id))
        self.send_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            f"{name} is now published.",
            details=name,
        )

    def end_publish(self, stream_id: int, name: str) -> None:
        """The publisher stopped: Unpublish.Success."""
        if self._streams.get(stream_id) is StreamMode.PUBLISHING:
            self._streams[stream_id] = StreamMode.IDLE
        self.send_status(
            stream_id,
            "status",
            "NetStream.Unpublish.Success",
            f"{name} is now unpublished.",
            details=name,
        )

    def start_play(self, stream_id: int, name: str, *, reset: bool, recorded: bool) -> None:
        """The ordered replies to ``play`` (StreamIsRecorded .. Data.Start)."""
        self._require_stream(stream_id)
        self._streams[stream_id] = StreamMode.PLAYING
        if recorded:
            self.send_control(msg.StreamIsRecorded(stream_id))
        self.send_control(msg.StreamBegin(stream_id))
        if reset:
            self.send_status(
                stream_id,
                "status",
                "NetStream.Play.Reset",
                f"Playing and resetting {name}.",
                details=name,
            )
        self.send_status(
            stream_id, "status", "NetStream.Play.Start", f"Started playing {name}.", details=name
        )
        self.send_data(stream_id, cmd.DataMessage("|RtmpSampleAccess", (True, True)))
        self.send_data(stream_id, cmd.DataMessage("onStatus", ({"code": "NetStream.Data.Start"},)))

    def stop_play(self, stream_id: int, name: str) -> None:
        """Playback ended: StreamEOF and Play.Stop."""
        if self._streams.get(stream_id) is StreamMode.PLAYING:
            self._streams[stream_id] = StreamMode.IDLE
        self.send_control(msg.StreamEOF(stream_id))
        self.send_status(
            stream_id, "status", "NetStream.Play.Stop", f"Stopped playing {name}.", details=name
        )

    def complete_play(self, stream_id: int, name: str, *, duration: float, size: int) -> None:
        """Recorded playback reached its end: StreamEOF, Play.Complete, Play.Stop."""
        if self._streams.get(stream_id) is StreamMode.PLAYING:
            self._streams[stream_id] = StreamMode.IDLE
        self.send_control(msg.StreamEOF(stream_id))
        self.send_play_status(
            stream_id, "NetStream.Play.Complete", duration=float(duration), bytes=float(size)
        )
        self.send_status(
            stream_id, "status", "NetStream.Play.Stop", f"Stopped playing {name}.", details=name
        )

    def resume_play(self, stream_id: int) -> None:
        """The stream plays again (a seek after the end of a file)."""
        self._require_stream(stream_id)
        self._streams[stream_id] = StreamMode.PLAYING

    def send_play_status(self, stream_id: int, code: str, **extra: object) -> None:
        """Queue an ``onPlayStatus`` data message (Play.Complete, Play.TransitionComplete)."""
        info = status_info("status", code, "", **extra)
        del info["description"]
        self.send_data(stream_id, cmd.DataMessage("onPlayStatus", (info,)))

    def _require_stream(self, stream_id: int) -> None:
        if stream_id not in self._streams:
            raise LocalProtocolError(f"stream {stream_id} does not exist")

    def send_status(
        self, stream_id: int, level: str, code: str, description: str, **extra: object
    ) -> None:
        """Queue an ``onStatus`` command on ``stream_id``."""
        info = status_info(level, code, description, **extra)
        self.send_command(stream_id, cmd.Command("onStatus", 0, None, (info,)))

    def send_result(self, transaction_id: float, *values: object) -> None:
        """Queue ``_result(transaction_id, values...)`` on the NetConnection."""
        command_object = values[0] if values else None
        self.send_command(0, cmd.Command("_result", transaction_id, command_object, values[1:]))

    def send_error(
        self,
        transaction_id: float,
        description: str,
        code: str = "NetConnection.Call.Failed",
    ) -> None:
        """Queue ``_error(transaction_id, null, {level: error, ...})``."""
        info = status_info("error", code, description)
        self.send_command(0, cmd.Command("_error", transaction_id, None, (info,)))

    def send_command(self, stream_id: int, command: cmd.Command) -> None:
        """Queue a command (always AMF0, type 20, as nginx answers AS3 clients)."""
        csid = CSID_COMMAND if stream_id == 0 else CSID_STREAM
        payload = cmd.encode_command(command)
        self._write(Message(MessageType.COMMAND_AMF0, stream_id, 0, payload), csid)

    def send_data(self, stream_id: int, data: cmd.DataMessage, timestamp: int = 0) -> None:
        """Queue an AMF0 data message (type 18) on ``stream_id``."""
        payload = cmd.encode_data(data)
        self._write(Message(MessageType.DATA_AMF0, stream_id, timestamp, payload), CSID_STREAM)

    def send_media(self, stream_id: int, type_id: int, timestamp: int, payload: bytes) -> None:
        """Queue an audio, video or data message for a player."""
        if type_id == MessageType.AUDIO:
            csid = CSID_AUDIO
        elif type_id == MessageType.VIDEO:
            csid = CSID_VIDEO
        else:
            csid = CSID_STREAM
        self._write(Message(type_id, stream_id, timestamp % 2**32, payload), csid)

    def send_shared_object(self, message: so.SharedObjectMessage) -> None:
        """Queue a shared object message (type 19, or 16 if ``message`` says so)."""
        payload = so.encode_shared_object(message)
        self._write(Message(message.type_id, 0, 0, payload), CSID_COMMAND)
    def send_shared(self, stream_id: int, message: SharedMessage) -> None:
        """Queue a fanned-out media message, sharing its chunk body.

        Only the first chunk header is built for this connection; the rest
        is the body :class:`~flashstream.rtmp.prechunk.SharedMessage` built
        once for every player with the same chunk size and csid.
        """
        if self._state is State.HANDSHAKE:
            raise LocalProtocolError("cannot send messages before the handshake completes")
        if self._lease is not None:
            self._end_lease()
        type_id = message.type_id
        csid = _MEDIA_CSIDS.get(type_id, CSID_STREAM)
        writer = self._writer
        payload = message.payload
        header = writer.first_header(csid, message.timestamp, len(payload), type_id, stream_id)
        if header is None:
            self.send_media(stream_id, type_id, message.timestamp, payload)
            return
        # The hot path of the fan-out: the cached body without two more calls.
        chunk_size = writer._chunk_size
        body = message._bodies.get((chunk_size, csid)) or message.body(chunk_size, csid)
        if self._ciphers.encrypted:  # RC4 state is per connection: nothing to share
            header = self._ciphers.encrypt.update(header)
            body = self._ciphers.encrypt.update(body)
        self._out.append(header)
        self._out.append(body)

    def send_ping(self, timestamp: int) -> None:
        """Queue a PingRequest (the adapter calls this when the peer is quiet)."""
        self.send_control(msg.PingRequest(timestamp % 2**32))

    def send_control(self, control: msg.ControlMessage) -> None:
        """Queue a protocol or user control message."""
        self._write(msg.encode_control(control), CSID_CONTROL)

    def _write(self, message: Message, csid: int) -> None:
        if self._state is State.HANDSHAKE:
            raise LocalProtocolError("cannot send messages before the handshake completes")
        # Anything written here ends a lease first, protocol control too: a
        # lockstep group sends straight to the socket while it holds the
        # lease, so no other bytes may be queued for it meanwhile.
        if self._lease is not None:
            self._end_lease()
        self._out.append(self._ciphers.encrypt.update(self._writer.write(message, csid)))

    # -- lockstep fan-out (flashstream.lockstep) --------------------------------

    def lockstep_key(self, stream_id: int) -> tuple[object, ...] | None:
        """What a lockstep group playing on ``stream_id`` must share with us.

        The chunk size and what the writer remembers of the audio and video
        chunk streams, with ``stream_id``; None when this connection cannot
        join one now (RTMPE encrypts per connection, bytes are queued, or
        its chunk streams are lent already).
        """
        if self._ciphers.encrypted or self._out or self._lease is not None:
            return None
        if self._state is State.HANDSHAKE:
            return None
        return (self._writer.snapshot(LockstepWriter.CSIDS), stream_id)

    def lend_media(self, give_back: Callable[[], None]) -> None:
        """Lend the audio and video chunk streams to a lockstep group.

        Until :meth:`take_back`, the group writes this connection's media
        (through the adapter, or :meth:`queue_raw`) and our writer's memory
        of those chunk streams is stale; anything else written here first
        calls ``give_back``, which must call :meth:`take_back`.
        """
        self._lease = give_back

    def _end_lease(self) -> None:
        give_back, self._lease = self._lease, None
        if give_back is not None:
            give_back()

    def take_back(self, pieces: list[bytes], snapshot: tuple[object, ...]) -> None:
        """End a lease: queue the group's unsent ``pieces``, adopt its state."""
        self._lease = None
        self._out.extend(pieces)
        self._writer.restore(LockstepWriter.CSIDS, snapshot)

    def queue_raw(self, data: bytes) -> None:
        """Queue a lockstep group's ``data`` as it is (the lease stays)."""
        self._out.append(data)

    def count_sent(self, size: int) -> None:
        """Count ``size`` bytes a lockstep group sent for this connection."""
        self.bytes_sent += size

    def close(self) -> None:
        """Mark the connection closed; further input is ignored."""
        self._move(Input.CLOSE)

    def data_to_send(self) -> bytes:
        """Drain and return the bytes queued for the peer."""
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out = []
        self.bytes_sent += len(out)
        return out

    def data_to_send_sequence(self) -> list[bytes]:
        """Drain the queued bytes as pieces (for ``writeSequence``: no joining).

        Shared chunk bodies come out as the very objects other connections
        send, so queueing a message costs no copy of its payload.
        """
        out = self._out
        if out:
            self._out = []
            self.bytes_sent += sum(map(len, out))
        return out


def _first_string(values: tuple[object, ...]) -> str | None:
    return values[0] if values and isinstance(values[0], str) else None


def _number(values: tuple[object, ...], index: int, default: float) -> float:
    if len(values) > index:
        value = values[index]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return default


_Handler = Callable[[ServerConnection, int, cmd.Command, list[Event]], None]

_NETCONNECTION_COMMANDS: dict[str, _Handler] = {
    "createStream": ServerConnection._on_create_stream,
    "deleteStream": ServerConnection._on_delete_stream,
    "releaseStream": ServerConnection._on_courtesy,
    "FCPublish": ServerConnection._on_courtesy,
    "FCUnpublish": ServerConnection._on_courtesy,
    "FCSubscribe": ServerConnection._on_courtesy,
    "FCUnsubscribe": ServerConnection._on_courtesy,
}

_NETSTREAM_COMMANDS: dict[str, _Handler] = {
    "publish": ServerConnection._on_publish,
    "play": ServerConnection._on_play,
    "closeStream": ServerConnection._on_close_stream,
    "deleteStream": ServerConnection._on_delete_stream,
    "receiveAudio": ServerConnection._on_receive_media,
    "receiveVideo": ServerConnection._on_receive_media,
    "pause": ServerConnection._on_pause,
    "seek": ServerConnection._on_seek,
    "play2": ServerConnection._on_play2,
    "FCPublish": ServerConnection._on_courtesy,
    "FCUnpublish": ServerConnection._on_courtesy,
}
