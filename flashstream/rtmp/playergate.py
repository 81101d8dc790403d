# -*- test-case-name: tests.rtmp.test_playergate -*-
"""
What one player of a live stream receives, message by message: clean cuts.

A player's stream is *cut* whenever it cannot take everything: its
connection is congested or its send backlog is full, it turned
``receiveVideo`` off, it paused, or the publisher was replaced (takeover).
:class:`PlayerGate` makes every cut clean, the way SRS #827 (mosaic after a
queue drop) shows it must be:

* video resumes only on a keyframe, never mid-GOP;
* just before that keyframe, the video sequence header (and ``onMetaData``)
  is re-sent if the player has not received the current one (it may have
  changed while the player was cut off), stamped with the keyframe's time;
* audio keeps flowing through video cuts (congestion, receiveVideo off,
  takeover); an audio frame is preceded by the current audio sequence header
  if the player lacks it;
* while paused, or while the send backlog is full, nothing goes out.

The gate remembers the latest headers and metadata it was offered (the hub
replays them to a joining player) and what it last emitted.  Pure: no I/O.
"""

from __future__ import annotations

import attrs

from . import media
from .messages import Message, MessageType
from .prechunk import SharedMessage

#: How an AMF0 ``onMetaData`` data message begins (string marker, length 10).
_ON_METADATA = b"\x02\x00\x0aonMetaData"
_AUDIO = int(MessageType.AUDIO)
_VIDEO = int(MessageType.VIDEO)
_DATA_AMF0 = int(MessageType.DATA_AMF0)


def is_metadata(message: Message) -> bool:
    """True for an AMF0 ``onMetaData`` data message."""
    return message.type_id == MessageType.DATA_AMF0 and message.payload.startswith(_ON_METADATA)


@attrs.frozen
class PlayerState:
    """What the player asked for and what its connection can take, right now."""

    receive_audio: bool = True
    receive_video: bool = True
    paused: bool = False
    #: The transport asks us to stop writing: video waits for a keyframe.
    congested: bool = False
    #: The send backlog limit is reached: nothing goes out.
    backlog_full: bool = False
    #: Wants everything and can take it (the gate's fast path); derived.
    plain: bool = attrs.field(init=False, eq=False, repr=False)

    @plain.default
    def _plain(self) -> bool:
        return (
            self.receive_audio
            and self.receive_video
            and not (self.paused or self.congested or self.backlog_full)
        )


class PlayerGate:
    """Decides which messages of a live stream one player receives."""

    def __init__(self) -> None:
        #: True until video has restarted on a keyframe after a cut.
        self.need_keyframe = True
        #: Video frames (and other messages) dropped for this player.
        self.dropped = 0
        #: Cuts so far (takeovers, toggles, resumes), for statistics.
        self.cuts = 0
        self._latest: dict[str, Message] = {}
        self._sent: dict[str, bytes] = {}
        #: Kinds whose latest header or metadata the player has not received.
        self._behind: set[str] = set()

    @property
    def settled(self) -> bool:
        """True when plain audio and video pass unchanged (nothing to catch up)."""
        return not self.need_keyframe and not self._behind

    def cut(self) -> None:
        """The player's stream was cut: video restarts on the next keyframe."""
        self.need_keyframe = True
        self.cuts += 1

    def offer(self, message: Message, state: PlayerState) -> list[Message]:
        """Return what to send the player for ``message`` (possibly several, or none)."""
        type_id = message.type_id
        if (
            message.__class__ is SharedMessage
            and not self.need_keyframe
            and not self._behind
            and (type_id == _AUDIO or type_id == _VIDEO)
            and not message.sequence_header
            and not message.keyframe
            and state.plain
        ):
            return [message]  # the common case: nothing to decide
        payload = message.payload
        if isinstance(message, SharedMessage):  # the hub worked these out once
            header, key = message.sequence_header, message.keyframe
        else:
            header = media.is_sequence_header(type_id, payload)
            key = type_id == MessageType.VIDEO and not header and media.is_keyframe(payload)
        if header:
            if type_id == MessageType.VIDEO:
                return self._header("video", message, state, state.receive_video)
            return self._header("audio", message, state, state.receive_audio)
        if type_id == MessageType.DATA_AMF0 and is_metadata(message):
            return self._header("metadata", message, state, True)
        if state.paused:
            return []
        if state.backlog_full:
            self._drop()
            return []
        if type_id == MessageType.VIDEO:
            if not state.receive_video:
                self.need_keyframe = True
                return []
            if not key:
                if self.need_keyframe or state.congested:
                    self._drop()
                    return []
                return [message]
            if state.congested:
                self._drop()
                return []
            self.need_keyframe = False
            return self._catch_up(("metadata", "video"), message)
        if type_id == MessageType.AUDIO:
            if not state.receive_audio:
                return []
            return self._catch_up(("metadata", "audio"), message)
        return [message]  # other data messages (cue points, text)

    def _header(
        self, kind: str, message: Message, state: PlayerState, wanted: bool
    ) -> list[Message]:
        self._latest[kind] = message
        if not wanted or state.paused or state.backlog_full:
            if self._sent.get(kind) != message.payload:
                self._behind.add(kind)
            else:
                self._behind.discard(kind)
            return []
        self._sent[kind] = message.payload
        self._behind.discard(kind)
        return [message]

    def _catch_up(self, kinds: tuple[str, ...], message: Message) -> list[Message]:
        if not self._behind:
            return [message]
        out: list[Message] = []
        for kind in kinds:
            latest = self._latest.get(kind)
            if latest is not None and self._sent.get(kind) != latest.payload:
                self._sent[kind] = latest.payload
                self._behind.discard(kind)
                out.append(attrs.evolve(latest, timestamp=message.timestamp))
        out.append(message)
        return out

    def _drop(self) -> None:
        self.need_keyframe = True
        self.dropped += 1
