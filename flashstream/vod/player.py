# -*- test-case-name: tests.test_vod_player -*-
"""
Playing one file on one NetStream: pacing, seek, pause, play2, the end.

:class:`VodPlayer` is the :class:`~flashstream.interfaces.IPlayback` the
``vod`` application puts on a stream.  It sends the source's ``onMetaData``
and codec sequence headers, then frames from the keyframe at or before the
start: at once up to the player's buffer length ahead of real time (so it
starts playing at once), then paced at real time on the injected reactor.
It reads one frame ahead of what it has sent, stops while the transport is
congested, and never holds more than its reader's bounded buffer.

Status sequences (as Flash Media Server sends them):

* seek: StreamEOF, Seek.Notify, StreamBegin, Play.Start, metadata, headers,
  frames from the keyframe at or before the target; while paused only the
  target keyframe is sent, so the player shows it;
* pause / unpause: Pause.Notify / Unpause.Notify and StreamBegin;
* play2 (switch, swap): Play.Transition at once, then at the first keyframe
  of the new file at or after what was sent, onPlayStatus
  Play.TransitionComplete, its headers and its frames;
* end: StreamEOF, onPlayStatus Play.Complete, Play.Stop.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ..interfaces import ISwitchablePlayback
from ..rtmp import media
from ..rtmp import messages as msg
from ..rtmp.messages import Message
from ..streams import NetStream
from .source import VIDEO, Frame, FrameReader, MediaSource, SeekPoint

#: Media sent ahead of real time when the player has not said its buffer length (ms).
MIN_LEAD_MS = 1000
#: Most frames and bytes sent in one reactor turn (then the player yields).
MAX_FRAMES_PER_TURN = 64
MAX_BYTES_PER_TURN = 512 * 1024
#: Seconds between looks at a congested transport.
CONGESTION_RETRY = 0.05
#: Most frames read after a paused seek while looking for the keyframe to show.
MAX_FRAMES_TO_KEYFRAME = 2000


@implementer(ISwitchablePlayback)
class VodPlayer:
    """Plays a :class:`~flashstream.vod.source.MediaSource` on a NetStream."""

    _log = Logger()

    def __init__(
        self,
        stream: NetStream,
        source: MediaSource,
        reactor: IReactorTime,
        *,
        name: str,
        open_source: Callable[[str], MediaSource | None],
    ) -> None:
        self.stream = stream
        self.source = source
        self.reactor = reactor
        self.name = name
        self._open_source = open_source
        self._reader: FrameReader | None = None
        self._pending: Frame | None = None
        self._call: IDelayedCall | None = None
        self.paused = False
        self.done = False
        self.closed = False
        self._clock = 0.0
        self._base_ts = 0
        self._segment_start = 0
        self.last_timestamp = 0
        self._end_ts: int | None = None
        self._switch: tuple[MediaSource, str, SeekPoint] | None = None
        self.bytes_sent = 0
        self.frames_sent = 0

    # -- starting --------------------------------------------------------------

    def start(self, start_ms: float, length_ms: float) -> None:
        """Play from ``start_ms`` (negative: from the beginning) for ``length_ms`` (< 0: all)."""
        start = max(0, int(start_ms))
        if length_ms >= 0:
            self._end_ts = start + int(length_ms)
        self.stream.ensure_started()
        self._begin_at(self.source.seek_point(start))
        self._pump()

    def _begin_at(self, point: SeekPoint) -> None:
        """Open a reader at ``point`` and send metadata and sequence headers."""
        if self._reader is not None:
            self._reader.close()
        self._reader = self.source.open(point)
        self._pending = None
        stream_id = self.stream.stream_id
        if self.source.metadata is not None:
            self.stream.media(Message(18, stream_id, point.time, self.source.metadata))
        for header in self.source.headers:
            self.stream.media(Message(header.type_id, stream_id, point.time, header.payload))
        self._restart_clock(point.time)
        self._segment_start = point.time
        self.last_timestamp = point.time

    def _restart_clock(self, timestamp: int) -> None:
        self._clock = self.reactor.seconds()
        self._base_ts = timestamp

    # -- the pump --------------------------------------------------------------

    def _later(self, delay: float) -> None:
        if self._call is None and not self.closed:
            self._call = self.reactor.callLater(max(0.0, delay), self._pump)

    def _cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _peek(self) -> Frame | None:
        if self._pending is None and self._reader is not None:
            self._pending = self._reader.read()
        return self._pending

    def _pump(self) -> None:
        """Send what is due (up to a turn's budget) and schedule the next turn."""
        self._call = None
        if self.paused or self.done or self.closed:
            return
        now = self.reactor.seconds()
        lead = max(self.stream.buffer_ms, MIN_LEAD_MS) / 1000
        budget = MAX_BYTES_PER_TURN
        for _ in range(MAX_FRAMES_PER_TURN):
            if self.stream.congested():
                self._later(CONGESTION_RETRY)
                return
            frame = self._peek()
            if frame is None or (self._end_ts is not None and frame.timestamp > self._end_ts):
                self._complete()
                return
            if self._switch is not None and frame.timestamp >= self._switch[2].time:
                self._do_switch()
                continue
            due = self._clock + (frame.timestamp - self._base_ts) / 1000 - lead
            if due > now:
                self._later(due - now)
                return
            self._pending = None
            self._send(frame)
            budget -= len(frame.payload)
            if budget <= 0:
                break
        self._later(0)

    def _send(self, frame: Frame) -> None:
        if frame.type_id != 18 and media.is_sequence_header(frame.type_id, frame.payload):
            if any(h.payload == frame.payload for h in self.source.headers):
                return  # already sent with the metadata
        self.stream.media(
            Message(frame.type_id, self.stream.stream_id, frame.timestamp, frame.payload)
        )
        self.last_timestamp = frame.timestamp
        self.bytes_sent += len(frame.payload)
        self.frames_sent += 1

    def _complete(self) -> None:
        """End of file (or of the requested length)."""
        self.done = True
        self._switch = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._pending = None
        connection = self.stream.connection
        connection.complete_play(
            self.stream.stream_id, self.name, duration=self.source.duration, size=self.bytes_sent
        )
        self.stream.flush()
        self._log.info(
            "Played {name} to the end ({frames} frames, {size} bytes)",
            name=self.name,
            frames=self.frames_sent,
            size=self.bytes_sent,
        )

    # -- IPlayback ---------------------------------------------------------------

    def pause(self, paused: bool, position: float) -> None:
        """Stop sending (Pause.Notify), or go on from ``position`` (Unpause.Notify)."""
        connection = self.stream.connection
        stream_id = self.stream.stream_id
        if paused:
            self.paused = True
            self._cancel()
            connection.send_status(
                stream_id,
                "status",
                "NetStream.Pause.Notify",
                f"Pausing {self.name}.",
                details=self.name,
            )
            self.stream.flush()
            return
        was_paused, self.paused = self.paused, False
        connection.send_status(
            stream_id,
            "status",
            "NetStream.Unpause.Notify",
            f"Unpausing {self.name}.",
            details=self.name,
        )
        connection.send_control(msg.StreamBegin(stream_id))
        self.stream.flush()
        if was_paused and not self.done:
            # The player holds what was sent up to its playhead: pace from there.
            resume = int(position)
            if not self._segment_start <= resume <= self.last_timestamp:
                resume = self.last_timestamp
            self._restart_clock(resume)
            self._cancel()
            self._pump()

    def seek(self, position: float) -> None:
        """Go on from the keyframe at or before ``position`` ms."""
        if self.closed:
            return
        target = max(0, int(position))
        point = self.source.seek_point(target)
        connection = self.stream.connection
        stream_id = self.stream.stream_id
        self._cancel()
        self._switch = None
        if self.done:
            self.done = False
            connection.resume_play(stream_id)
        connection.send_control(msg.StreamEOF(stream_id))
        connection.send_status(
            stream_id,
            "status",
            "NetStream.Seek.Notify",
            f"Seeking {target} (stream ID: {stream_id}).",
            details=self.name,
        )
        connection.send_control(msg.StreamBegin(stream_id))
        connection.send_status(
            stream_id,
            "status",
            "NetStream.Play.Start",
            f"Started playing {self.name}.",
            details=self.name,
        )
        self.stream.flush()
        self._log.debug(
            "Seek in {name} to {target} ms: keyframe at {keyframe} ms",
            name=self.name,
            target=target,
            keyframe=point.time,
        )
        self._begin_at(point)
        if self.paused:
            self._show_keyframe()
        else:
            self._pump()

    def _show_keyframe(self) -> None:
        """While paused after a seek: send frames up to the target keyframe only."""
        for _ in range(MAX_FRAMES_TO_KEYFRAME):
            frame = self._peek()
            if frame is None:
                return
            self._pending = None
            self._send(frame)
            if frame.type_id == VIDEO and media.is_keyframe(frame.payload):
                if not media.is_video_sequence_header(frame.payload):
                    return

    # -- play2 ---------------------------------------------------------------------

    def play2(self, options: dict[str, object]) -> None:
        """Switch to another file (rendition) at its next keyframe."""
        connection = self.stream.connection
        stream_id = self.stream.stream_id
        name = options.get("streamName")
        transition = options.get("transition", "switch")
        if transition == "stop":
            if not self.done:
                self._cancel()
                self._complete()
            return
        problem = None
        source: MediaSource | None = None
        point: SeekPoint | None = None
        if transition not in ("switch", "swap"):
            problem = f"play2 transition {transition!r} is not supported."
        elif not isinstance(name, str) or not name:
            problem = "play2 without a streamName."
        elif self.done:
            problem = f"{self.name} has ended."
        else:
            source = self._open_source(name)
            if source is None:
                problem = f"{name} was not found."
            else:
                point = source.seek_point_after(self.last_timestamp + 1)
                if point is None:
                    problem = f"{name} has no keyframe after {self.last_timestamp} ms."
        if problem is not None or source is None or point is None or not isinstance(name, str):
            connection.send_status(
                stream_id, "error", "NetStream.Play.Failed", problem or "", details=str(name)
            )
            self.stream.flush()
            return
        self._switch = (source, name, point)
        connection.send_status(
            stream_id,
            "status",
            "NetStream.Play.Transition",
            f"Transitioning to {name}.",
            details=name,
            reason="NetStream.Transition.Switch",
        )
        self.stream.flush()
        self._log.info(
            "play2 from {old} to {new} at {at} ms", old=self.name, new=name, at=point.time
        )

    def _do_switch(self) -> None:
        assert self._switch is not None
        source, name, point = self._switch
        self._switch = None
        if self._reader is not None:
            self._reader.close()
        self.source = source
        self.name = name
        self.stream.name = name
        self._reader = source.open(point)
        self._pending = None
        stream_id = self.stream.stream_id
        self.stream.connection.send_play_status(
            stream_id, "NetStream.Play.TransitionComplete", details=name
        )
        for header in source.headers:
            self.stream.media(Message(header.type_id, stream_id, point.time, header.payload))

    # -- the end -----------------------------------------------------------------------

    def close(self) -> None:
        """The stream closed: stop the timer and release the file."""
        self.closed = True
        self._cancel()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._pending = None
