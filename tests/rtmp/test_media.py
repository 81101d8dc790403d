"""Recognising keyframes and codec sequence headers in FLV-style payloads."""

from __future__ import annotations

import pytest

from flashstream.rtmp import media


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        (b"\x17\x01\x00\x00\x00", True),  # AVC keyframe
        (b"\x27\x01\x00\x00\x00", False),  # AVC inter frame
        (b"\x12", True),  # Sorenson keyframe
        (b"\x92hvc1", True),  # Enhanced RTMP keyframe (ExHeader, FrameType 1)
        (b"\xa1hvc1", False),  # Enhanced RTMP inter frame
        (b"", False),
    ],
)
def test_is_keyframe(payload: bytes, key: bool) -> None:
    """FrameType 1 in the first byte (classic or Enhanced RTMP) is a keyframe."""
    assert media.is_keyframe(payload) is key


@pytest.mark.parametrize(
    ("type_id", "payload", "header"),
    [
        (9, b"\x17\x00\x00\x00\x00\x01", True),  # AVC sequence header
        (9, b"\x17\x01\x00\x00\x00", False),
        (9, b"\x1c\x00\x00\x00\x00", True),  # legacy HEVC (codec 12)
        (9, b"\x90hvc1", True),  # Enhanced RTMP SequenceStart
        (9, b"\x91hvc1", False),  # Enhanced RTMP CodedFrames
        (9, b"\x12\x00", False),  # Sorenson has no packet type
        (8, b"\xaf\x00\x12\x10", True),  # AAC AudioSpecificConfig
        (8, b"\xaf\x01\x21", False),  # AAC raw frame
        (8, b"\x90Opus", True),  # Enhanced RTMP audio SequenceStart
        (8, b"\x2f\x00", False),  # MP3
        (18, b"\x17\x00", False),  # data messages are never headers
        (9, b"\x17", False),
    ],
)
def test_is_sequence_header(type_id: int, payload: bytes, header: bool) -> None:
    """Codec configuration messages are told apart from frames."""
    assert media.is_sequence_header(type_id, payload) is header
