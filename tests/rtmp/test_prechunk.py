# -*- test-case-name: tests.rtmp.test_prechunk -*-
"""
Tests for :mod:`flashstream.rtmp.prechunk`: a shared chunk body plus a
per-player first header is byte for byte what :class:`ChunkWriter` writes,
and it reads back as the same messages.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flashstream.rtmp.chunks import ChunkReader, ChunkWriter
from flashstream.rtmp.limits import Limits
from flashstream.rtmp.messages import Message, MessageType
from flashstream.rtmp.prechunk import SharedMessage, chunk_body, share

KEYFRAME = b"\x17\x01\x00\x00\x00" + bytes(300)
INTER = b"\x27\x01\x00\x00\x00" + bytes(50)
AVC_HEADER = b"\x17\x00\x00\x00\x00\x01\x64"
AAC_HEADER = b"\xaf\x00\x12\x10"
AAC_FRAME = b"\xaf\x01" + bytes(20)


def _shared_write(writer: ChunkWriter, message: SharedMessage, csid: int) -> bytes:
    """What ServerConnection.send_shared queues: header + body, or the fallback."""
    header = writer.first_header(
        csid, message.timestamp, len(message.payload), message.type_id, message.stream_id
    )
    if header is None:
        return writer.write(message, csid)
    return header + message.body(writer.chunk_size, csid)


messages = st.lists(
    st.tuples(
        st.sampled_from([8, 9, 18]),
        st.integers(1, 3),
        st.one_of(st.integers(0, 5000), st.integers(0xFFFFF0, 0x1000010)),
        st.binary(max_size=700),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(
    items=messages,
    chunk_size=st.sampled_from([1, 7, 128, 256, 4096]),
    csid=st.sampled_from([2, 6, 63, 64, 319, 320, 65599]),
)
def test_shared_body_matches_the_writer(
    items: list[tuple[int, int, int, bytes]], chunk_size: int, csid: int
) -> None:
    """header + shared body equals ChunkWriter.write for any message sequence."""
    plain = ChunkWriter(chunk_size)
    shared = ChunkWriter(chunk_size)
    reader = ChunkReader(Limits())
    reader._chunk_size = chunk_size  # the peer announced it (tested in test_chunks)
    timestamp = 0
    sent = []
    for type_id, msid, step, payload in items:
        timestamp = (timestamp + step) % 2**32 if step < 0xFFFFF0 else step
        message = Message(type_id, msid, timestamp, payload)
        expected = plain.write(message, csid)
        got = _shared_write(shared, share(message), csid)
        assert got == expected
        sent.append(message)
        assert reader.receive_data(got) == [message]


def test_body_is_built_once_per_chunk_size_and_csid() -> None:
    """The same bytes object is returned to every player with the same chunk size and csid."""
    message = share(Message(9, 1, 0, KEYFRAME))
    first = message.body(128, 7)
    assert message.body(128, 7) is first
    assert message.body(4096, 7) is not first
    assert message.body(128, 6) != first
    assert chunk_body(KEYFRAME, 128, 7) == first


def test_short_payload_body_is_the_payload() -> None:
    """A payload within one chunk is shared as the payload object itself."""
    message = share(Message(8, 1, 0, AAC_FRAME))
    assert message.body(4096, 6) is AAC_FRAME


def test_extended_timestamp_falls_back() -> None:
    """A first header needing an extended timestamp is refused, leaving the state alone."""
    writer = ChunkWriter(128)
    assert writer.first_header(7, 0x1000000, 300, 9, 1) is None
    # The state is unchanged: the same message written normally starts with fmt 0.
    assert writer.write(Message(9, 1, 0x1000000, bytes(300)), 7)[0] >> 6 == 0
    # fmt 3 repeating an extended delta is refused too.
    writer.write(Message(9, 1, 0x2000000, bytes(300)), 7)  # fmt 2, delta >= 0xFFFFFF
    writer.write(Message(9, 1, 0x3000000, bytes(300)), 7)  # same delta again: fmt 3 + ext
    assert writer.first_header(7, 0x4000000, 300, 9, 1) is None


def test_share_classifies_once() -> None:
    """share() records keyframes and sequence headers; shared messages pass through."""
    key = share(Message(9, 1, 0, KEYFRAME))
    assert key.keyframe and not key.sequence_header
    assert not share(Message(9, 1, 0, INTER)).keyframe
    header = share(Message(9, 1, 0, AVC_HEADER))
    assert header.sequence_header and not header.keyframe
    assert share(Message(8, 1, 0, AAC_HEADER)).sequence_header
    assert not share(Message(8, 1, 0, AAC_FRAME)).sequence_header
    assert not share(Message(MessageType.DATA_AMF0, 1, 0, b"\x02")).keyframe
    assert share(key) is key


def test_shared_message_equals_the_plain_message() -> None:
    """A shared message compares and hashes like the plain message it wraps."""
    plain = Message(9, 1, 40, INTER)
    shared = share(plain)
    assert shared == plain and plain == shared
    assert hash(shared) == hash(plain)
    assert shared != Message(9, 1, 41, INTER)
    assert shared.plain() == plain and type(shared.plain()) is Message
