"""
Per-track timestamp hygiene (:mod:`flashstream.rtmp.timestamps`): examples
and hypothesis properties over wraps, leaps, backward steps and A/V skew.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flashstream.rtmp.timestamps import (
    AUDIO,
    VIDEO,
    Timeline,
    TimestampPolicy,
    Track,
    track_of,
)

DATA = 18
U32 = 2**32
POLICY = TimestampPolicy()

#: (type id, raw u32 timestamp) sequences of any shape.
anything = st.lists(
    st.tuples(st.sampled_from([AUDIO, VIDEO, DATA]), st.integers(0, U32 - 1)), max_size=200
)


def run(timeline: Timeline, messages: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Stamp every message; return (type id, output) pairs."""
    return [(type_id, timeline.stamp(type_id, raw)) for type_id, raw in messages]


def per_track(out: list[tuple[int, int]], type_id: int) -> list[int]:
    """The outputs of one track, in order."""
    return [ts for t, ts in out if t == type_id]


def steady(start: int, step: int, count: int) -> list[int]:
    """``count`` raw u32 timestamps from ``start`` by ``step`` (wrapping)."""
    return [(start + i * step) % U32 for i in range(count)]


def interleave(video: list[int], audio: list[int]) -> list[tuple[int, int]]:
    """Video and audio messages interleaved one by one."""
    out: list[tuple[int, int]] = []
    for i in range(max(len(video), len(audio))):
        if i < len(video):
            out.append((VIDEO, video[i]))
        if i < len(audio):
            out.append((AUDIO, audio[i]))
    return out


def test_track_of() -> None:
    """Type 8 is audio, 9 video, anything else (18, 15) data."""
    assert [track_of(t) for t in (8, 9, 18, 15)] == [
        Track.AUDIO,
        Track.VIDEO,
        Track.DATA,
        Track.DATA,
    ]


@given(anything)
@settings(max_examples=300)
def test_every_track_is_monotonic(messages: list[tuple[int, int]]) -> None:
    """Whatever a publisher sends, each track's output never goes backwards."""
    out = run(Timeline(), messages)
    for type_id in (AUDIO, VIDEO, DATA):
        stamps = per_track(out, type_id)
        assert stamps == sorted(stamps)


@given(
    st.integers(0, U32 - 1),
    st.lists(st.tuples(st.sampled_from([AUDIO, VIDEO]), st.integers(0, 5000)), max_size=200),
)
def test_well_behaved_streams_pass_unchanged(start: int, steps: list[tuple[int, int]]) -> None:
    """
    Tracks that only step forwards by at most ``max_forward_jump`` come out
    as their unwrapped input: nothing is corrected, so A/V sync is exact,
    even across the 32-bit wrap and when one track starts just before the
    wrap and the other just after it.
    """
    timeline = Timeline()
    position = {AUDIO: start, VIDEO: start}
    expected: list[tuple[int, int]] = []
    messages: list[tuple[int, int]] = []
    for type_id, step in steps:
        position[type_id] += step
        expected.append((type_id, position[type_id]))
        messages.append((type_id, position[type_id] % U32))
    if expected:
        # Output starts at the first message's u32 value and unwraps from there.
        base = expected[0][1] // U32 * U32
        expected = [(t, ts - base) for t, ts in expected]
    assert run(timeline, messages) == expected
    assert (timeline.counts.held, timeline.counts.rebased) == (0, 0)


def test_wrap_is_unwrapped_and_counted() -> None:
    """A track crossing 2**32 continues past it; the wrap is counted, not corrected."""
    timeline = Timeline()
    raw = steady(U32 - 100, 40, 6)
    out = [timeline.stamp(VIDEO, r) for r in raw]
    assert out == [U32 - 100 + 40 * i for i in range(6)]
    assert timeline.counts.wraps == 1
    assert timeline.counts.rebased == timeline.counts.held == 0


def test_small_backward_step_is_held_and_sync_kept() -> None:
    """
    A step back of 30 ms on audio repeats audio's previous time until the
    encoder catches up; later audio keeps its original time (no drift).
    """
    timeline = Timeline()
    out = [timeline.stamp(AUDIO, r) for r in (0, 23, 46, 16, 39, 69, 92)]
    assert out == [0, 23, 46, 46, 46, 69, 92]
    assert timeline.counts.held == 2


def test_big_backward_jump_is_rebased_with_the_usual_step() -> None:
    """An encoder jumping back 20 s continues from where it was plus its usual step."""
    timeline = Timeline()
    out = [timeline.stamp(VIDEO, r) for r in (20000, 20040, 20080, 0, 40, 80)]
    assert out == [20000, 20040, 20080, 20120, 20160, 20200]
    assert timeline.counts.rebased == 1


def test_forward_leap_is_rebased_but_data_may_be_sparse() -> None:
    """A 1 h leap on video is replaced by its usual step; a data track may be silent long."""
    timeline = Timeline()
    video = [timeline.stamp(VIDEO, r) for r in (0, 40, 80, 3_600_000, 3_600_040)]
    assert video == [0, 40, 80, 120, 160]
    data = [timeline.stamp(DATA, r) for r in (0, 3_600_000)]
    assert data == [0, 3_600_000]
    assert timeline.counts.rebased == 1


@given(anything, st.integers(0, U32 - 1), st.integers(1, 100), st.integers(1, 300))
def test_corrections_never_cross_tracks(
    noise: list[tuple[int, int]], start: int, step: int, count: int
) -> None:
    """
    Video's output depends only on video's input: audio and data messages,
    however broken, change nothing on the video track.
    """
    video = steady(start, step, count)
    reference = Timeline()
    alone = [reference.stamp(VIDEO, r) for r in video]
    mixed: list[tuple[int, int]] = []
    for i, raw in enumerate(video):
        mixed.append((VIDEO, raw))
        mixed.extend(n for n in noise[i : i + 1] if n[0] != VIDEO)
    out = per_track(run(Timeline(), mixed), VIDEO)
    assert out == alone


@given(
    start=st.integers(0, U32 - 1),
    skew=st.integers(-200, 200),
    jump=st.integers(-(2**31) + 1, 2**31 - 1).filter(
        lambda j: j > POLICY.max_forward_jump or j < -POLICY.max_backstep - 100
    ),
    before=st.integers(2, 100),
    after=st.integers(2, 100),
)
def test_discontinuity_on_both_tracks_keeps_av_sync(
    start: int, skew: int, jump: int, before: int, after: int
) -> None:
    """
    When the encoder's clock jumps (backwards or forwards) on audio and video
    at once, each track is rebased on its own with its usual step, and the
    audio-video offset afterwards is the offset before: no desync.
    """
    video_step, audio_step = 40, 23
    video = steady(start, video_step, before) + steady(
        start + before * video_step + jump, video_step, after
    )
    audio = steady(start + skew, audio_step, before * 2) + steady(
        start + skew + before * 2 * audio_step + jump, audio_step, after * 2
    )
    timeline = Timeline()
    out = run(timeline, interleave(video, audio))
    v, a = per_track(out, VIDEO), per_track(out, AUDIO)
    assert v == sorted(v) and a == sorted(a)
    # Offsets (output - input) of each track before and after the jump.
    v_before, v_after = v[0] - start, v[-1] - (start + (before + after - 1) * video_step + jump)
    a_first = start + skew
    a_last = start + skew + (before * 2 + after * 2 - 1) * audio_step + jump
    a_before, a_after = a[0] - a_first, a[-1] - a_last
    drift = abs((v_after - a_after) - (v_before - a_before))
    assert drift == 0
    assert timeline.counts.rebased == 2


@given(
    old_start=st.integers(0, U32 - 1),
    old_count=st.integers(1, 100),
    new_start=st.integers(0, U32 - 1),
    new_count=st.integers(1, 100),
)
def test_new_source_continues_after_the_old_one_on_every_track(
    old_start: int, old_count: int, new_start: int, new_count: int
) -> None:
    """
    After a takeover (``new_source``) the new publisher's timestamps, whatever
    they are, continue after the old publisher's on every track, and the new
    publisher's own audio-video offset is kept exactly.
    """
    timeline = Timeline()
    old = run(
        timeline, interleave(steady(old_start, 40, old_count), steady(old_start, 20, old_count))
    )
    last_video, last_audio = per_track(old, VIDEO)[-1], per_track(old, AUDIO)[-1]
    timeline.new_source()
    new_video = steady(new_start, 40, new_count)
    new_audio = steady(new_start, 20, new_count)
    new = run(timeline, interleave(new_video, new_audio))
    v, a = per_track(new, VIDEO), per_track(new, AUDIO)
    assert v[0] > last_video and a[0] > last_audio
    assert v == sorted(v) and a == sorted(a)
    # Both tracks of the new source got the same offset: sync kept exactly.
    assert v[-1] - a[-1] == (new_count - 1) * 40 - (new_count - 1) * 20
    assert timeline.counts.sources == 1


def test_new_source_whose_tracks_start_apart() -> None:
    """A new source whose audio starts before its video (by raw time) keeps that offset."""
    timeline = Timeline()
    run(timeline, [(VIDEO, 5000), (AUDIO, 5000), (VIDEO, 5040), (AUDIO, 5020)])
    timeline.new_source()
    out = run(timeline, [(AUDIO, 100), (VIDEO, 130), (AUDIO, 120), (VIDEO, 170)])
    assert out == [(AUDIO, 5060), (VIDEO, 5090), (AUDIO, 5080), (VIDEO, 5130)]
