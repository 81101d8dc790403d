# -*- test-case-name: tests.test_lockstep -*-
"""
Lockstep fan-out: players in the same state share one write per publisher read.

Live players of one stream mostly receive exactly the same bytes: the same
messages, chunked at the same size, on the same message stream id, after
the same earlier headers.  Sending each message to each player separately
costs Python work per player per message.  A :class:`LockstepGroup` instead
builds each message's chunks once for all its members (a
:class:`~flashstream.rtmp.prechunk.LockstepWriter`), and when the hub's batch
ends (one publisher read) joins them and writes that one string to every
member's transport: per player, one call and one ``send`` per read, nothing
per message.

Membership is exact, never assumed: a player joins a group only between
batches, only when its gate has nothing to decide (no cut pending, nothing
paused, toggled or congested) and only when its connection's writer
remembers exactly what the group's writer does about the audio and video
chunk streams (``ServerConnection.lockstep_key``).  The connection then lends
those chunk streams to the group; anything else written on it (a ping, a
status message, a file played on another stream) first ends the lease, and
the member leaves with the group's unsent chunks queued and the group's
writer state adopted, so its byte stream stays exactly what it would have
been alone.  The hub dissolves a group before any message the group does not
carry (codec headers, metadata, data), and a member whose send backlog
fills leaves so its gate can skip video.  The hub regroups its loose
players after each batch (:meth:`flashstream.hub.Publication.regroup`).

No I/O here: members write through their own adapters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs

from .rtmp.prechunk import LockstepWriter, SharedMessage

__all__ = ["DirectSend", "LockstepGroup", "LockstepMember"]


class SentCounter(Protocol):
    """What counts the bytes sent on a connection (``ServerConnection``)."""

    bytes_sent: int


@attrs.frozen
class DirectSend:
    """How a member's bytes may go straight to its socket while nothing is
    queued for it anywhere (plain TCP): the socket's ``send`` and the
    connection's byte counter."""

    send: Callable[[bytes], int]
    counter: SentCounter


@runtime_checkable
class LockstepMember(Protocol):
    """A subscriber that can play in a :class:`LockstepGroup` (a NetStream)."""

    lockstep: LockstepGroup | None

    def send_now(self, data: bytes) -> bool:
        """Send the group's ``data`` at once; False if the player must leave."""

    def direct_send(self) -> DirectSend | None:
        """How to send straight to the socket now, if nothing is queued anywhere."""

    def send_rest(self, data: bytes, sent: int) -> None:
        """The socket took only ``sent`` bytes of ``data``: queue the rest."""

    def lockstep_key(self) -> tuple[object, ...] | None:
        """The state a group must share with this player; None: cannot join now."""

    def join_lockstep(self, group: LockstepGroup) -> None:
        """Lend the connection's audio/video chunk streams to ``group`` (now
        playing us; also called when our group merges into ``group``)."""

    def leave_lockstep(self, pieces: list[bytes], snapshot: tuple[object, ...]) -> None:
        """Queue ``pieces`` (unsent chunks of the group) and adopt ``snapshot``."""



class LockstepGroup:
    """Players of one stream whose connections write the same bytes."""

    def __init__(
        self,
        key: tuple[object, ...],
        on_leave: Callable[[LockstepMember], None],
    ) -> None:
        snapshot, stream_id = key
        assert isinstance(snapshot, tuple) and isinstance(stream_id, int)
        self._writer = LockstepWriter(snapshot, stream_id)
        self._on_leave = on_leave
        #: Members, in joining order, with how to send to them directly
        #: (None: through their ``send_now``).
        self.members: dict[LockstepMember, DirectSend | None] = {}
        #: Members not yet written to during a :meth:`flush` (they still need
        #: the chunks being flushed if they leave meanwhile).
        self._order: list[LockstepMember] = []
        self._position = 0
        self._flushing: list[bytes] = []
        #: Writes done (statistics, tests).
        self.writes = 0
        #: Messages and payload bytes carried so far (members' counters add
        #: what was carried while they were members).
        self.messages = 0
        self.payload_bytes = 0

    def key(self) -> tuple[object, ...]:
        """What a player's ``lockstep_key`` must equal to join."""
        return (self._writer.snapshot(), self._writer.stream_id)

    @property
    def idle(self) -> bool:
        """True when no chunks wait to be flushed (players may join)."""
        return not self._writer.pieces

    def join(self, member: LockstepMember) -> None:
        """Add ``member`` (the caller checked its key and that we are idle)."""
        member.lockstep = self
        member.join_lockstep(self)
        self.members[member] = member.direct_send()

    def merge(self, other: LockstepGroup) -> None:
        """Take ``other``'s members (both idle, with equal keys)."""
        for member, direct in other.members.items():
            self.members[member] = direct
            member.lockstep = self
            member.join_lockstep(self)
        other.members = {}

    def add(self, message: SharedMessage) -> bool:
        """Carry ``message`` for every member; False if it cannot (dissolve)."""
        if self._writer.add(message):
            self.messages += 1
            self.payload_bytes += len(message.payload)
            return True
        return False

    def flush(self) -> None:
        """Write the chunks added since the last flush to every member."""
        pieces = self._writer.take()[0]
        if not pieces:
            return
        data = b"".join(pieces)
        size = len(data)
        self.writes += 1
        self._flushing = pieces
        entries = list(self.members.items())
        self._order = [member for member, _ in entries]
        try:
            # The hot loop of the live fan-out: per player and publisher
            # read, one send on plain TCP, one call otherwise.
            for position, (member, direct) in enumerate(entries):
                if member.lockstep is not self:
                    continue  # it left while others were written to
                if direct is not None:
                    try:
                        sent = direct.send(data)
                    except OSError:
                        sent = 0  # a full socket, or an error Twisted will report
                    if sent == size:
                        direct.counter.bytes_sent += size
                        continue
                    self._position = position
                    member.send_rest(data, sent)
                    self.leave(member)  # something is queued now: not direct any more
                    continue
                self._position = position
                if not member.send_now(data):
                    self.leave(member)
                elif member.lockstep is self:
                    # Its queue may have drained since it joined (a joining
                    # player often still sends its start-up burst): go direct.
                    self.members[member] = member.direct_send()
        finally:
            self._order = []
            self._flushing = []

    def leave(self, member: LockstepMember) -> None:
        """Let ``member`` go: it gets what it has not been sent, and our state."""
        if member not in self.members:
            return
        del self.members[member]
        member.lockstep = None
        pieces = list(self._writer.pieces)
        if self._flushing and member in self._order[self._position + 1 :]:
            pieces[:0] = self._flushing  # it was not written to yet
        member.leave_lockstep(pieces, self._writer.snapshot())
        self._on_leave(member)

    def dissolve(self) -> None:
        """Every member leaves (before a message the group cannot carry)."""
        for member in list(self.members):
            self.leave(member)
        self._writer.take()
