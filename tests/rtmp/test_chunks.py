# -*- test-case-name: tests.rtmp.test_chunks -*-
"""
Tests for :mod:`flashstream.rtmp.chunks`.

Every reader test feeds its input whole, one byte at a time and in random
splits drawn by hypothesis, and requires the same messages (or the same
error) each way.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flashstream.rtmp.chunks import ChunkReader, ChunkWriter
from flashstream.rtmp.errors import (
    ChunkError,
    LimitExceeded,
    LocalProtocolError,
    MessageError,
    RemoteProtocolError,
)
from flashstream.rtmp.limits import Limits
from flashstream.rtmp.messages import (
    Abort,
    Message,
    SetChunkSize,
    WindowAckSize,
    encode_control,
)

DEFAULT = Limits()

#: Decorator giving a test a hypothesis ``data`` object to draw splits from.
splits = given(data=st.data())


def _feed(limits: Limits, pieces: list[bytes]) -> list[Message]:
    reader = ChunkReader(limits)
    out: list[Message] = []
    for piece in pieces:
        out += reader.receive_data(piece)
    assert reader.bytes_received == sum(map(len, pieces))
    return out


def _ways(data: bytes, draw: st.DataObject) -> list[list[bytes]]:
    """The input whole, byte by byte, and cut at random places."""
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=10), label="cuts"))
    bounds = [0, *cuts, len(data)]
    return [
        [data],
        [data[i : i + 1] for i in range(len(data))],
        [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)],
    ]


def read(data: bytes, draw: st.DataObject, limits: Limits = DEFAULT) -> list[Message]:
    """Parse ``data`` every way; all must agree."""
    results = [_feed(limits, pieces) for pieces in _ways(data, draw)]
    assert results[0] == results[1] == results[2]
    return results[0]


def read_fails(
    data: bytes, draw: st.DataObject, error: type[Exception], limits: Limits = DEFAULT
) -> None:
    """Parsing ``data`` raises ``error`` every way it is fed."""
    for pieces in _ways(data, draw):
        with pytest.raises(error):
            _feed(limits, pieces)


def h(text: str) -> bytes:
    """Bytes from hex with spaces and newlines."""
    return bytes.fromhex(text)


def chunk_size_message(size: int) -> bytes:
    """A Set Chunk Size message as a fmt 0 chunk on csid 2."""
    return h("02 000000 000004 01 00000000") + size.to_bytes(4, "big")


# -- basic headers and formats ----------------------------------------------------------


@pytest.mark.parametrize(
    ("csid", "basic"),
    [
        (2, "02"),
        (3, "03"),
        (63, "3f"),
        (64, "00 00"),
        (319, "00 ff"),
        (320, "01 00 01"),
        (65599, "01 ff ff"),
    ],
)
@splits
def test_basic_header_sizes(csid: int, basic: str, data: st.DataObject) -> None:
    """Each csid gets the shortest basic header, and the reader reads every form."""
    message = Message(20, 0, 0, b"abc")
    wire = h(basic + "000000 000003 14 00000000 616263")
    assert ChunkWriter().write(message, csid) == wire
    # A continuation chunk carries the same csid in a fmt 3 basic header.
    long = Message(9, 1, 0, bytes(130))
    cont = bytes([0xC0 | h(basic)[0]]) + h(basic)[1:]
    long_wire = h(basic + "000000 000082 09 01000000") + bytes(128) + cont + bytes(2)
    assert ChunkWriter().write(long, csid) == long_wire
    assert read(wire + long_wire, data) == [message, long]


FORMATS_WIRE = h(
    "04 0003e8 000002 08 01000000 aaaa"  # fmt 0: ts 1000, length 2
    "44 000014 000003 08 bbbbbb"  # fmt 1: +20, new length 3
    "84 00001e cccccc"  # fmt 2: +30
    "c4 dddddd"  # fmt 3 new message: +30 again
    "c4 eeeeee"  # and again
)
FORMATS_MESSAGES = [
    Message(8, 1, 1000, h("aaaa")),
    Message(8, 1, 1020, h("bbbbbb")),
    Message(8, 1, 1050, h("cccccc")),
    Message(8, 1, 1080, h("dddddd")),
    Message(8, 1, 1110, h("eeeeee")),
]


@splits
def test_each_fmt(data: st.DataObject) -> None:
    """fmt 0, 1, 2 and 3 headers read as absolute time, deltas and repeats."""
    assert read(FORMATS_WIRE, data) == FORMATS_MESSAGES


def test_writer_picks_each_fmt() -> None:
    """The writer picks fmt 0, 1, 2, 3 exactly as in FORMATS_WIRE."""
    writer = ChunkWriter()
    assert b"".join(writer.write(m, 4) for m in FORMATS_MESSAGES) == FORMATS_WIRE


@splits
def test_fmt3_new_message_after_fmt0_doubles(data: st.DataObject) -> None:
    """fmt 3 starting a new message after fmt 0 at T means 2T (spec, ffmpeg, librtmp)."""
    wire = h(
        "04 000064 000001 08 01000000 aa"  # fmt 0, ts 100
        "c4 bb"  # delta is the fmt 0 timestamp: 200
        "c4 cc"  # 300
        "84 00000a dd"  # fmt 2: +10 = 310
        "c4 ee"  # delta 10 now: 320
    )
    assert [m.timestamp for m in read(wire, data)] == [100, 200, 300, 310, 320]


def test_writer_never_fmt3_after_fmt0() -> None:
    """Right after fmt 0 the writer uses fmt 2 even when the delta equals the timestamp."""
    writer = ChunkWriter()
    writer.write(Message(8, 1, 100, b"a"), 4)
    assert writer.write(Message(8, 1, 200, b"b"), 4) == h("84 000064 62")
    assert writer.write(Message(8, 1, 300, b"c"), 4) == h("c4 63")


def test_writer_fmt0_on_msid_change_and_backwards_time() -> None:
    """A new msid, a timestamp going back, or one wrapping past 2**32 gets fmt 0."""
    writer = ChunkWriter()
    writer.write(Message(8, 1, 100, b"a"), 4)
    assert writer.write(Message(8, 2, 120, b"a"), 4) == h("04 000078 000001 08 02000000 61")
    assert writer.write(Message(8, 2, 110, b"a"), 4) == h("04 00006e 000001 08 02000000 61")
    writer.write(Message(8, 2, 2**32 - 1, b"a"), 4)
    assert writer.write(Message(8, 2, 5, b"a"), 4) == h("04 000005 000001 08 02000000 61")


@splits
def test_zero_length_message(data: st.DataObject) -> None:
    """A zero-length message is complete at its header, also as a fmt 3 new message."""
    messages = [Message(18, 1, 7, b""), Message(18, 1, 14, b""), Message(8, 1, 20, b"x")]
    writer = ChunkWriter()
    wire = b"".join(writer.write(m, 5) for m in messages)
    assert wire == h("05 000007 000000 12 01000000  85 000007  45 000006 000001 08 78")
    assert read(wire, data) == messages
    assert read(h("05 000007 000000 12 01000000 c5"), data) == messages[:2]


# -- extended timestamps ----------------------------------------------------------------

BIG = 0x01000000  # needs an extended timestamp


@splits
def test_extended_timestamp_fmt0(data: st.DataObject) -> None:
    """fmt 0 with FF FF FF reads a u32 absolute time, with or without the fmt 3 repeat."""
    payload = bytes(range(200))
    message = Message(9, 1, BIG, payload)
    repeated = h("04 ffffff 0000c8 09 01000000 01000000") + payload[:128]
    repeated += h("c4 01000000") + payload[128:]
    assert ChunkWriter().write(message, 4) == repeated
    assert read(repeated, data) == [message]
    bare = h("04 ffffff 0000c8 09 01000000 01000000") + payload[:128]
    bare += h("c4") + payload[128:]
    assert read(bare, data) == [message]


@splits
def test_extended_timestamp_fmt1_is_a_delta(data: st.DataObject) -> None:
    """An extended timestamp in fmt 1 is a delta; fmt 3 chunks may repeat it or not."""
    payload = bytes(range(200))
    first = Message(8, 1, 5, b"a")
    second = Message(9, 1, 5 + BIG, payload)
    third = Message(9, 1, 5 + 2 * BIG, payload)  # fmt 3 new message, same delta
    writer = ChunkWriter()
    wire = writer.write(first, 4)
    repeated = h("44 ffffff 0000c8 09 01000000") + payload[:128] + h("c4 01000000") + payload[128:]
    assert writer.write(second, 4) == repeated
    repeated3 = h("c4 01000000") + payload[:128] + h("c4 01000000") + payload[128:]
    assert writer.write(third, 4) == repeated3
    assert read(wire + repeated + repeated3, data) == [first, second, third]
    bare = h("44 ffffff 0000c8 09 01000000") + payload[:128] + h("c4") + payload[128:]
    bare3 = h("c4") + payload[:128] + h("c4") + payload[128:]
    assert read(wire + bare + bare3, data) == [first, second, third]


@splits
def test_extended_peek_with_lookalike_payload(data: st.DataObject) -> None:
    """A short continuation whose bytes start like the extended value is not eaten."""
    message = Message(9, 1, BIG, bytes(128) + h("0100"))
    wire = h("04 ffffff 000082 09 01000000 01000000") + bytes(128) + h("c4 0100")
    after = Message(8, 1, 7, b"z")
    after_wire = h("05 000007 000001 08 01000000 7a")
    assert read(wire + after_wire, data) == [message, after]


@pytest.mark.parametrize("timestamp", [0xFFFFFE, 0xFFFFFF, 2**32 - 1])
def test_writer_extended_threshold(timestamp: int) -> None:
    """The extended field is used from 0xFFFFFF up, not below."""
    wire = ChunkWriter().write(Message(8, 1, timestamp, b""), 4)
    if timestamp < 0xFFFFFF:
        assert wire == h("04") + timestamp.to_bytes(3, "big") + h("000000 08 01000000")
    else:
        assert wire == h("04 ffffff 000000 08 01000000") + timestamp.to_bytes(4, "big")


# -- chunk size, abort, interleaving, restarts -------------------------------------------


@splits
def test_chunk_size_change_in_same_receive(data: st.DataObject) -> None:
    """A Set Chunk Size applies to the very next chunk, even within one receive_data call."""
    payload = bytes(range(200))
    wire = chunk_size_message(200) + h("04 000000 0000c8 09 01000000") + payload
    assert read(wire, data) == [encode_control(SetChunkSize(200)), Message(9, 1, 0, payload)]
    reader = ChunkReader()
    reader.receive_data(wire)
    assert reader.chunk_size == 200


@splits
def test_abort_discards_partial(data: st.DataObject) -> None:
    """Abort drops the partial message; the next fmt 3 on that csid starts a new one."""
    payload = bytes(range(200))
    wire = (
        h("04 00000a 0000c8 09 01000000")
        + payload[:128]
        + h("02 000000 000004 02 00000000 00000004")  # Abort csid 4
        + h("02 000000 000004 02 00000000 00000063")  # Abort of an unknown csid: ignored
        + h("c4")
        + payload[:128]
        + h("c4")
        + payload[128:]
    )
    assert read(wire, data) == [
        encode_control(Abort(4)),
        encode_control(Abort(99)),
        Message(9, 1, 20, payload),  # a new message: 10 + delta 10
    ]


@splits
def test_interleaved_csids(data: st.DataObject) -> None:
    """Chunks of two csids interleave; each message is reassembled from its own csid."""
    a, b = b"A" * 200, b"B" * 150
    wire = (
        h("04 000010 0000c8 08 01000000")
        + a[:128]
        + h("06 000020 000096 09 01000000")
        + b[:128]
        + h("c6")
        + b[128:]
        + h("c4")
        + a[128:]
    )
    assert read(wire, data) == [Message(9, 1, 0x20, b), Message(8, 1, 0x10, a)]


@splits
def test_new_header_discards_partial(data: st.DataObject) -> None:
    """A fmt 1 (or 0) header on a csid with a partial message restarts it (OBS)."""
    a = bytes(200)
    wire = h("04 000010 0000c8 09 01000000") + a[:128] + h("44 000005 000003 09 616263")
    wire += h("04 000100 0000c8 09 01000000") + a[:128] + h("04 000200 000001 08 01000000 7a")
    assert read(wire, data) == [Message(9, 1, 0x15, b"abc"), Message(8, 1, 0x200, b"z")]


@splits
def test_any_type_id(data: st.DataObject) -> None:
    """Messages of unassigned type ids (0, 7, 255) are returned like any other."""
    messages = [Message(0, 1, 0, b"a"), Message(7, 1, 1, b"b"), Message(255, 1, 2, b"")]
    writer = ChunkWriter()
    assert read(b"".join(writer.write(m, 3) for m in messages), data) == messages


@splits
def test_uninitialised_csid(data: st.DataObject) -> None:
    """fmt 1/2/3 on a csid never started by fmt 0 is a ChunkError."""
    for wire in (h("45 000000 000001 08 00"), h("85 000000 00"), h("c5 00"), h("82 000000")):
        read_fails(wire, data, ChunkError)


@splits
def test_librtmp_fmt1_on_fresh_control_csid(data: st.DataObject) -> None:
    """librtmp's ping response, fmt 1 on a fresh csid 2, is accepted as msid 0 (SRS #98)."""
    wire = h("42 000000 000006 04 0006 00000d0f")
    assert read(wire, data) == [Message(4, 0, 0, h("0006 00000d0f"))]


# -- limits -----------------------------------------------------------------------------


@splits
def test_message_too_large(data: st.DataObject) -> None:
    """A header announcing more than max_message_size bytes raises LimitExceeded."""
    limits = Limits(max_message_size=100)
    assert read(h("04 000000 000064 09 01000000") + bytes(100), data, limits)
    read_fails(h("04 000000 000065 09 01000000"), data, LimitExceeded, limits)
    read_fails(
        h("04 000000 000001 09 01000000 00 44 000000 000065 09"), data, LimitExceeded, limits
    )


@splits
def test_too_many_chunk_streams(data: st.DataObject) -> None:
    """More distinct csids than max_chunk_streams raises LimitExceeded; ids may be large."""
    limits = Limits(max_chunk_streams=2)
    ok = h("01 ff ff 000000 000000 08 00000000  3f 000000 000000 08 00000000")
    assert len(read(ok + h("01 ff ff 000001 000000 08 00000000"), data, limits)) == 3
    read_fails(ok + h("03 000000 000000 08 00000000"), data, LimitExceeded, limits)


@splits
def test_pending_bytes(data: st.DataObject) -> None:
    """Partial messages holding more than max_pending_bytes raise LimitExceeded."""
    limits = Limits(max_pending_bytes=350)
    two = h("04 000000 0000c8 09 01000000") + bytes(128) + h("05 000000 0000c8 09 01000000")
    two += bytes(128)  # 256 bytes pending
    finish = h("c4") + bytes(72) + h("c5") + bytes(72)  # at most 328 pending
    assert len(read(two + finish, data, limits)) == 2
    read_fails(two + h("06 000000 0000c8 09 01000000") + bytes(128), data, LimitExceeded, limits)


@pytest.mark.parametrize(
    ("announced", "limit", "expected"),
    [(0x7FFFFFFF, 0xFFFFFF, 0xFFFFFF), (4096, 0xFFFFFF, 4096), (1000, 256, 256)],
)
@splits
def test_chunk_size_clamped(announced: int, limit: int, expected: int, data: st.DataObject) -> None:
    """A chunk size above max_chunk_size is clamped to it, and chunks are read at that size."""
    limits = Limits(max_chunk_size=limit)
    payload = bytes(range(256)) + bytes(44)
    writer = ChunkWriter(expected)
    wire = chunk_size_message(announced) + writer.write(Message(9, 1, 0, payload), 4)
    assert read(wire, data, limits)[1].payload == payload
    reader = ChunkReader(limits)
    reader.receive_data(chunk_size_message(announced))
    assert reader.chunk_size == expected


@pytest.mark.parametrize("size", [0, 0x80000000, 0xFFFFFFFF])
@splits
def test_invalid_chunk_size(size: int, data: st.DataObject) -> None:
    """Chunk size 0 or with bit 31 set is a ChunkError."""
    read_fails(chunk_size_message(size), data, ChunkError)


@splits
def test_short_set_chunk_size(data: st.DataObject) -> None:
    """A Set Chunk Size payload shorter than 4 bytes is a MessageError."""
    read_fails(h("02 000000 000002 01 00000000 0100"), data, MessageError)


def test_reader_unusable_after_error() -> None:
    """After a protocol error the reader refuses further input."""
    reader = ChunkReader()
    with pytest.raises(ChunkError):
        reader.receive_data(h("c5 00"))
    with pytest.raises(LocalProtocolError):
        reader.receive_data(b"")


@given(wire=st.binary(max_size=400))
@settings(max_examples=200)
def test_garbage_raises_only_protocol_errors(wire: bytes) -> None:
    """Arbitrary bytes give messages or a RemoteProtocolError, never another exception."""
    limits = Limits(max_message_size=1000, max_pending_bytes=2000)
    for feed in ([wire], [wire[i : i + 1] for i in range(len(wire))]):
        try:
            _feed(limits, feed)
        except RemoteProtocolError:
            pass


MUTATION_BASE = (
    chunk_size_message(64)
    + h("02 000000 000004 02 00000000 00000004")
    + h("04 ffffff 000050 09 01000000 01000000")
    + bytes(64)
    + h("06 000000 000001 00 01000000 aa c4 01000000")
    + bytes(16)
    + FORMATS_WIRE
)


@given(
    changes=st.lists(st.tuples(st.integers(0, len(MUTATION_BASE) - 1), st.integers(0, 255))),
    data=st.data(),
)
@settings(max_examples=200)
def test_mutated_stream_raises_only_protocol_errors(
    changes: list[tuple[int, int]], data: st.DataObject
) -> None:
    """A valid stream with bytes overwritten gives messages or a RemoteProtocolError."""
    wire = bytearray(MUTATION_BASE)
    for index, value in changes:
        wire[index] = value
    for pieces in _ways(bytes(wire), data):
        try:
            _feed(Limits(max_message_size=1000), pieces)
        except RemoteProtocolError:
            pass


# -- the writer -------------------------------------------------------------------------


def test_writer_rejects_bad_input() -> None:
    """Out-of-range csids, sizes and fields are LocalProtocolErrors."""
    writer = ChunkWriter()
    bad: list[Callable[[], object]] = [
        lambda: writer.write(Message(8, 1, 0, b""), 1),
        lambda: writer.write(Message(8, 1, 0, b""), 65600),
        lambda: writer.write(Message(8, 1, 0, bytes(0x1000000)), 4),
        lambda: writer.write(Message(256, 1, 0, b""), 4),
        lambda: writer.write(Message(8, 2**32, 0, b""), 4),
        lambda: writer.write(Message(8, 1, 2**32, b""), 4),
        lambda: writer.set_chunk_size(0),
        lambda: writer.set_chunk_size(0x80000000),
        lambda: ChunkWriter(0),
    ]
    for call in bad:
        with pytest.raises(LocalProtocolError):
            call()


def test_writer_control_golden() -> None:
    """Window Acknowledgement Size 2500000 on csid 2 is the bytes ffmpeg sends."""
    wire = ChunkWriter().write(encode_control(WindowAckSize(2500000)), 2)
    assert wire == h("02 000000 000004 05 00000000 002625a0")


def test_writer_chunk_size() -> None:
    """set_chunk_size changes where the following messages are cut."""
    writer = ChunkWriter(4096)
    assert writer.chunk_size == 4096
    writer.set_chunk_size(2)
    assert writer.chunk_size == 2
    assert writer.write(Message(8, 1, 0, b"abcde"), 3) == h(
        "03 000000 000005 08 01000000 6162 c3 6364 c3 65"
    )


# -- round trip -------------------------------------------------------------------------

CSIDS = st.sampled_from([2, 3, 4, 63, 64, 319, 320, 65599])
STEPS = st.sampled_from([0, 1, 20, 33, 0xFFFFFE, 0xFFFFFF, BIG, 2**32 - 1])
NOTABLE_TIMES = st.sampled_from([0, 0xFFFFFE, 0xFFFFFF, BIG, 2**32 - 2, 2**32 - 1])
PAYLOADS = st.one_of(st.sampled_from([b"", b"x" * 10, bytes(range(200))]), st.binary(max_size=400))
Op = tuple[str, int, Message | int]


@st.composite
def operations(draw: st.DrawFn) -> list[Op]:
    """
    Messages on assorted csids, chunk size changes and aborts.  "repeat"
    sends a message like the last one on a csid, one step later again, so
    that fmt 2 and fmt 3 headers (also with extended timestamps) occur.
    """
    ops: list[Op] = []
    last: dict[int, tuple[Message, int]] = {}  # csid -> (message, last step)
    for _ in range(draw(st.integers(0, 20))):
        kind = draw(st.sampled_from(["message"] * 4 + ["repeat"] * 3 + ["chunk size", "abort"]))
        if kind == "chunk size":
            size = draw(st.one_of(st.integers(1, 300), st.sampled_from([0xFFFFFF, 0x7FFFFFFF])))
            ops.append(("chunk size", 2, size))
        elif kind == "abort":
            ops.append(("abort", 2, draw(CSIDS)))
        elif kind == "repeat" and last:
            csid = draw(st.sampled_from(sorted(last)))
            previous, step = last[csid]
            size = len(previous.payload)
            payload = draw(st.binary(min_size=size, max_size=size))
            message = attrs.evolve(
                previous, timestamp=(previous.timestamp + step) % 2**32, payload=payload
            )
            last[csid] = (message, step)
            ops.append(("message", csid, message))
        else:
            csid = draw(CSIDS)
            step = draw(STEPS)
            if csid in last and draw(st.booleans()):
                timestamp = (last[csid][0].timestamp + step) % 2**32
            else:
                timestamp = draw(st.one_of(NOTABLE_TIMES, st.integers(0, 2**32 - 1)))
            type_id = draw(st.sampled_from([0, 8, 9, 18, 20]) | st.integers(3, 255))
            msid = draw(st.sampled_from([0, 1, 2**32 - 1]))
            message = Message(type_id, msid, timestamp, draw(PAYLOADS))
            last[csid] = (message, step)
            ops.append(("message", csid, message))
    return ops


@given(ops=operations(), first_chunk_size=st.integers(1, 300), data=st.data())
@settings(max_examples=150, deadline=None)
def test_round_trip(ops: list[Op], first_chunk_size: int, data: st.DataObject) -> None:
    """Whatever the writer writes, the reader gives back, however the bytes are split."""
    writer = ChunkWriter()
    expected: list[Message] = []
    wire = b""
    if first_chunk_size != 128:
        ops = [("chunk size", 2, first_chunk_size), *ops]
    for kind, csid, value in ops:
        if isinstance(value, Message):
            message = value
        elif kind == "chunk size":
            message = encode_control(SetChunkSize(value))
        else:
            message = encode_control(Abort(value))
        wire += writer.write(message, csid)
        expected.append(message)
        if kind == "chunk size":
            assert isinstance(value, int)
            writer.set_chunk_size(value)
    if len(wire) <= 4000:
        assert read(wire, data) == expected
    else:
        cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=20)))
        bounds = [0, *cuts, len(wire)]
        assert _feed(DEFAULT, [wire]) == expected
        assert _feed(DEFAULT, [wire[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]) == (
            expected
        )
