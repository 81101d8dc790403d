# -*- test-case-name: tests.rtmp.test_timestamps -*-
"""
Timestamp hygiene for live streams: per-track unwrapping and clamping.

RTMP timestamps are 32-bit milliseconds; they wrap after 49.7 days, and
encoders send steps backwards (clock changes, restarts, bugs) or leap
forwards.  A :class:`Timeline` turns what a publisher sends into 64-bit,
monotonic timestamps, one :class:`TrackClock` per track (audio, video, data)
so that a correction on one track never moves another (SRS #1001 shared one
state and broke sync):

* **unwrap**: each 32-bit value is read as the nearest 64-bit value to the
  track's previous one, so a wrap past ``2**32`` continues upwards;
* **hold**: a small step backwards (at most ``max_backstep`` ms) repeats the
  track's previous time; the track's offset is unchanged, so once the
  encoder catches up its frames are where they were (A/V sync kept);
* **rebase**: a larger step backwards, or a forward leap larger than
  ``max_forward_jump`` on audio or video, is a discontinuity: the track
  continues from its previous time plus its usual step;
* **new source** (:meth:`Timeline.new_source`, a publisher takeover): the
  next publisher's timestamps are moved, with one offset shared by every
  track so its own A/V sync is kept, to continue after the old publisher's.

A well-behaved stream (monotonic tracks, no leaps) comes out unchanged.
What was corrected is counted in :class:`Corrections`.  Pure: no I/O.
"""

from __future__ import annotations

import enum

import attrs

_U32 = 2**32
_HALF = 2**31

AUDIO = 8
VIDEO = 9


class Track(enum.Enum):
    """The independent clocks of one stream."""

    AUDIO = "audio"
    VIDEO = "video"
    DATA = "data"


def track_of(type_id: int) -> Track:
    """The track of an RTMP message type (8 audio, 9 video, anything else data)."""
    if type_id == AUDIO:
        return Track.AUDIO
    if type_id == VIDEO:
        return Track.VIDEO
    return Track.DATA


@attrs.frozen
class TimestampPolicy:
    """When a step between two timestamps of one track is corrected."""

    #: A forward step (ms) larger than this on audio or video is a leap and
    #: is replaced by the track's usual step.  Data tracks (cue points) are
    #: sparse, so their forward steps are never corrected.
    max_forward_jump: int = 10_000
    #: A backward step (ms) up to this is held at the previous time; a larger
    #: one is a discontinuity and the track is rebased.
    max_backstep: int = 500
    #: Largest step (ms) used to continue a track after a discontinuity (the
    #: track's last normal step, capped by this) or after a new source (the
    #: smallest last step of the tracks, capped by this).
    max_filler_step: int = 200


@attrs.define
class Corrections:
    """What a :class:`Timeline` changed (all counts)."""

    #: 32-bit wraps unwrapped (not a correction: the value is kept).
    wraps: int = 0
    #: Timestamps held at the track's previous time (small backward steps).
    held: int = 0
    #: Discontinuities (big backward steps, forward leaps) rebased.
    rebased: int = 0
    #: New sources (publisher takeovers) joined onto the timeline.
    sources: int = 0


def _signed_delta(raw: int, previous: int) -> int:
    """The step from ``previous`` to ``raw`` (both u32), as the nearest signed value."""
    delta = (raw - previous) % _U32
    return delta - _U32 if delta >= _HALF else delta


class TrackClock:
    """The clock of one track: 32-bit input, 64-bit monotonic output."""

    def __init__(self, track: Track, policy: TimestampPolicy, counts: Corrections) -> None:
        self.track = track
        self.policy = policy
        self.counts = counts
        #: Last raw (u32) value seen, or None before the first message.
        self.last_raw: int | None = None
        #: Last raw value unwrapped to 64 bits.
        self.last_unwrapped = 0
        #: Added to unwrapped input to give output.
        self.offset = 0
        #: Last output, or None before the first message.
        self.last_out: int | None = None
        #: Last normal forward step (ms), used to continue after a rebase.
        self.last_step = 0

    def stamp(self, raw: int) -> int:
        """The output timestamp of the next message with ``raw`` (u32) on this track."""
        raw %= _U32
        if self.last_raw is None:
            self.last_raw = raw
            self.last_unwrapped = raw
            out = raw + self.offset
            if self.last_out is not None and out < self.last_out:
                self.counts.held += 1
                out = self.last_out
            self.last_out = out
            return out
        delta = _signed_delta(raw, self.last_raw)
        if raw < self.last_raw and delta > 0:
            self.counts.wraps += 1
        unwrapped = self.last_unwrapped + delta
        self.last_raw = raw
        self.last_unwrapped = unwrapped
        assert self.last_out is not None
        policy = self.policy
        leap = delta > policy.max_forward_jump and self.track is not Track.DATA
        if leap or delta < -policy.max_backstep:
            self.counts.rebased += 1
            step = min(self.last_step, policy.max_filler_step)
            self.offset = self.last_out + step - unwrapped
        elif delta > 0:
            self.last_step = delta
        out = unwrapped + self.offset
        if out < self.last_out:
            self.counts.held += 1
            out = self.last_out
        self.last_out = out
        return out

    def restart(self, offset: int) -> None:
        """Forget the input history; the next message is unwrapped afresh with ``offset``."""
        self.last_raw = None
        self.offset = offset


class Timeline:
    """The clocks of one live stream (audio, video and data), across publishers."""

    def __init__(self, policy: TimestampPolicy = TimestampPolicy()) -> None:
        self.policy = policy
        self.counts = Corrections()
        self.tracks = {track: TrackClock(track, policy, self.counts) for track in Track}
        #: True after :meth:`new_source` until the new source's first message.
        self._source_pending = False
        #: Raw timestamp of the current source's first message (for its other tracks).
        self._source_first: int | None = None
        self._source_offset = 0
        #: Tracks that have not had a message in the current source yet.
        self._fresh: set[Track] = set(Track)

    def stamp(self, type_id: int, raw: int) -> int:
        """Map a message's raw u32 timestamp to the stream's 64-bit monotonic time."""
        track = self.tracks[track_of(type_id)]
        raw %= _U32
        if self._source_pending:
            self._source_pending = False
            ends = [c.last_out for c in self.tracks.values() if c.last_out is not None]
            steps = [c.last_step for c in self.tracks.values() if c.last_step > 0]
            gap = max(1, min([self.policy.max_filler_step, *steps]))
            base = max(ends) + gap if ends else 0
            self._source_first = raw
            self._source_offset = base - raw
            for clock in self.tracks.values():
                clock.restart(self._source_offset)
            self._fresh = set(Track)
        elif self._source_first is None:
            self._source_first = raw  # the stream's first message: offset 0
        if track.track in self._fresh:
            self._fresh.discard(track.track)
            # The first message of a track in a source is unwrapped relative
            # to the source's first message, whatever its track, so tracks
            # starting on either side of a wrap stay together.
            assert self._source_first is not None
            unwrapped = self._source_first + _signed_delta(raw, self._source_first)
            track.offset = self._source_offset + (unwrapped - raw)
        return track.stamp(raw)

    def new_source(self) -> None:
        """A new publisher takes over: continue its tracks after the old ones."""
        self.counts.sources += 1
        self._source_pending = True

    def last(self, track: Track) -> int | None:
        """The last output timestamp of ``track``, if any."""
        return self.tracks[track].last_out
