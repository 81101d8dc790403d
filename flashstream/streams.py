# -*- test-case-name: tests.test_protocol -*-
"""
NetStreams of one connection, as the hub and the applications see them.

A :class:`NetStream` is one ``createStream`` id.  While publishing it hands
the publisher's messages to a sink an application installed; while playing it
is an :class:`~flashstream.interfaces.ISubscriber` that turns hub messages into
outgoing RTMP messages, applying the player's receiveAudio/receiveVideo
choices and starting video on a keyframe.  Applications register cleanups
that run when the stream is closed or the connection is lost.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.logger import Logger
from zope.interface import implementer

from .interfaces import IPlayback, ISubscriber
from .lockstep import DirectSend, LockstepGroup
from .rtmp import messages as msg
from .rtmp.connection import ServerConnection
from .rtmp.messages import Message
from .rtmp.playergate import PlayerGate, PlayerState
from .rtmp.prechunk import SharedMessage, share


@implementer(ISubscriber)
class NetStream:
    """One message stream of an RTMP connection."""

    _log = Logger()

    def __init__(
        self,
        connection: ServerConnection,
        stream_id: int,
        flush: Callable[[], None],
        flush_media: Callable[[], None] | None = None,
    ) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self._flush = flush
        #: How live media is flushed: by default at once; the adapter passes
        #: :meth:`StreamHub.flush_soon` so one publisher read is one write.
        self._flush_media = flush if flush_media is None else flush_media
        self.name = ""
        #: The ``?query`` of the last publish/play name (auth tokens), without ``?``.
        self.query = ""
        #: Where a publisher's audio/video/data messages go (set by the application).
        self.media_sink: Callable[[Message], None] | None = None
        #: Where a publisher's ``onMetaData`` goes (set by the application).
        self.metadata_sink: Callable[[Message], None] | None = None
        self._cleanups: list[Callable[[], None]] = []
        self._receive_audio = True
        self._receive_video = True
        self._paused = False
        #: The lockstep group playing this stream for us, if any.
        self.lockstep: LockstepGroup | None = None
        #: The group we count for, with its (messages, payload bytes)
        #: counters when we joined it.
        self._joined: tuple[LockstepGroup, int, int] | None = None
        #: Decides what of the live stream reaches the player (clean cuts).
        self.gate = PlayerGate()
        self._update_state()
        #: Whether the connection's transport is asking us to stop writing
        #: (file playback paces itself on it; live playback does not drop on it).
        self.congested: Callable[[], bool] = lambda: False
        #: Whether the send backlog limit is reached (then video skips to
        #: the next keyframe; audio, data and codec headers still go out).
        self.backlog_full: Callable[[], bool] = lambda: False
        #: Sends a lockstep group's bytes at once; False if the player must
        #: leave the group (backlog filling, dropped).  The adapter installs
        #: its own; by default they are queued on the connection and flushed.
        self.send_now: Callable[[bytes], bool] = self._queue_now
        #: How a lockstep group may send straight to our socket (the adapter
        #: installs its own on plain TCP), and what queues the rest of a
        #: partial send.
        self.direct_send: Callable[[], DirectSend | None] = lambda: None
        self.send_rest: Callable[[bytes, int], None] = self._queue_rest
        self._messages_out = 0
        #: Payload bytes sent to a player / received from a publisher.
        self._bytes_out = 0
        self.bytes_in = 0
        #: Set by an application playing something seekable (a file).
        self.playback: IPlayback | None = None
        #: True for recorded content: play replies start with StreamIsRecorded.
        self.recorded = False
        #: Sends the play replies (Play.Reset, Play.Start...) before anything
        #: else reaches the player; set by the adapter while ``play`` runs.
        self.pending_start: Callable[[], None] | None = None
        #: The player's buffer length (SetBufferLength), in ms; 0 = not told.
        self.buffer_ms = 0
        #: The ``duration`` argument of the current ``play`` (ms; negative: all).
        self.play_duration = -1.0

    def ensure_started(self) -> None:
        """Send the pending play replies, once, before any media."""
        start, self.pending_start = self.pending_start, None
        if start is not None:
            start()
            self._flush()

    def flush(self) -> None:
        """Write what the connection has queued (after status messages)."""
        self._flush()

    # -- lifecycle ---------------------------------------------------------

    def add_cleanup(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` when the stream closes (LIFO order)."""
        self._cleanups.append(cleanup)

    def close(self) -> None:
        """Run the cleanups and forget the sinks."""
        self.quit_lockstep()
        cleanups, self._cleanups = self._cleanups, []
        self.media_sink = None
        self.metadata_sink = None
        self.playback = None
        self.recorded = False
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception:
                self._log.failure("Cleanup of stream {name} failed", name=self.name)

    # -- ISubscriber (playing) ----------------------------------------------

    def stream_started(self, publish_notify: bool) -> None:
        """The publisher is present; tell a waiting player."""
        self.quit_lockstep()
        self.ensure_started()
        self.gate.cut()
        if publish_notify:
            self.connection.send_control(msg.StreamBegin(self.stream_id))
            self.connection.send_status(
                self.stream_id,
                "status",
                "NetStream.Play.PublishNotify",
                f"{self.name} is now published.",
                details=self.name,
            )
            self._flush()

    def media(self, message: Message) -> None:
        """Send one hub message to the player, through its :class:`PlayerGate`.

        A full send backlog blocks video until the next keyframe; audio,
        data and codec headers still go out.
        """
        if self.pending_start is not None:
            self.ensure_started()
        state = self._blocked if self.backlog_full() else self._state
        if message.__class__ is not SharedMessage:  # the hub shares; others may not
            message = share(message)
        out = self.gate.offer(message, state)
        if not out:
            return
        send, stream_id, size = self.connection.send_shared, self.stream_id, 0
        for sent in out:
            send(stream_id, sent if sent.__class__ is SharedMessage else share(sent))
            size += len(sent.payload)
        self._messages_out += len(out)
        self._bytes_out += size
        self._flush_media()

    @property
    def receive_audio(self) -> bool:
        """The player's receiveAudio choice."""
        return self._receive_audio

    @receive_audio.setter
    def receive_audio(self, value: bool) -> None:
        self._receive_audio = value
        self._update_state()

    @property
    def receive_video(self) -> bool:
        """The player's receiveVideo choice."""
        return self._receive_video

    @receive_video.setter
    def receive_video(self, value: bool) -> None:
        self._receive_video = value
        self._update_state()

    @property
    def paused(self) -> bool:
        """Whether the player paused the live stream."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = value
        self._update_state()

    def _update_state(self) -> None:
        """Rebuild the player's state after receiveAudio/receiveVideo/pause."""
        self.quit_lockstep()
        self._state = PlayerState(
            receive_audio=self._receive_audio,
            receive_video=self._receive_video,
            paused=self._paused,
        )
        self._blocked = attrs.evolve(self._state, congested=True)

    @property
    def frames_dropped(self) -> int:
        """Messages the gate dropped for this player (congestion, full backlog)."""
        return self.gate.dropped

    def publisher_replaced(self) -> None:
        """A new publisher took the stream over: a clean cut, no status message.

        The player stays subscribed; video resumes on the new publisher's
        first keyframe, after its sequence headers and metadata.
        """
        self.quit_lockstep()
        self.ensure_started()
        self.gate.cut()

    def stream_ended(self) -> None:
        """The publisher left: StreamEOF and Play.UnpublishNotify."""
        self.quit_lockstep()
        self.ensure_started()
        self.connection.send_control(msg.StreamEOF(self.stream_id))
        self.connection.send_status(
            self.stream_id,
            "status",
            "NetStream.Play.UnpublishNotify",
            f"{self.name} is now unpublished.",
            details=self.name,
        )
        self._flush()

    def pause(self) -> None:
        """Stop sending media (live pause)."""
        self.paused = True

    def resume(self) -> None:
        """Send media again from the live edge, video from the next keyframe."""
        self.paused = False
        self.quit_lockstep()
        self.gate.cut()

    def set_receive(self, kind: str, enabled: bool) -> None:
        """Apply receiveAudio/receiveVideo; video restarts on a keyframe."""
        self.quit_lockstep()
        if kind == "audio":
            self.receive_audio = enabled
        else:
            if enabled and not self.receive_video:
                self.gate.cut()
            self.receive_video = enabled

    # -- lockstep fan-out (flashstream.lockstep) ------------------------------

    def lockstep_key(self) -> tuple[object, ...] | None:
        """What a lockstep group must share with us; None while we cannot join.

        Only a started player whose gate lets the next audio or video
        message through unchanged and whose transport is not asking us to
        wait (a joining player's start-up burst, a slow reader).
        """
        if self.pending_start is not None or self.lockstep is not None:
            return None
        if not (self._state.plain and self.gate.settled) or self.congested():
            return None
        return self.connection.lockstep_key(self.stream_id)

    def join_lockstep(self, group: LockstepGroup) -> None:
        """Lend the connection's audio/video chunk streams to ``group``."""
        self._settle()
        self._joined = (group, group.messages, group.payload_bytes)
        self.connection.lend_media(self.quit_lockstep)

    def leave_lockstep(self, pieces: list[bytes], snapshot: tuple[object, ...]) -> None:
        """Back on our own: queue the group's unsent ``pieces``, adopt its state.

        Our counters keep what the group carried for us.
        """
        self._settle()
        self._joined = None
        self.connection.take_back(pieces, snapshot)
        if pieces:
            self._flush_media()

    def quit_lockstep(self) -> None:
        """Leave our lockstep group, if any (we go on alone)."""
        group = self.lockstep
        if group is not None:
            group.leave(self)

    def _settle(self) -> None:
        """Add what our group carried for us since we joined it to our counters."""
        joined = self._joined
        if joined is not None:
            group, messages, payload = joined
            self._messages_out += group.messages - messages
            self._bytes_out += group.payload_bytes - payload
            self._joined = (group, group.messages, group.payload_bytes)

    @property
    def messages_out(self) -> int:
        """Messages sent to the player (by us or by our lockstep group)."""
        self._settle()
        return self._messages_out

    @property
    def bytes_out(self) -> int:
        """Payload bytes sent to the player (by us or by our lockstep group)."""
        self._settle()
        return self._bytes_out

    def _queue_rest(self, data: bytes, sent: int) -> None:
        self._queue_now(data[sent:])

    def _queue_now(self, data: bytes) -> bool:
        self.connection.queue_raw(data)
        self._flush()
        return True
