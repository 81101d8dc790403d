"""Recognising keyframes and codec sequence headers in FLV-style payloads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def _avc_sequence_header(width: int, height: int, pix_fmt: str, profile: str) -> bytes:
    """An FLV AVC sequence header made from a real libx264 encoder's SPS/PPS (PyAV)."""
    import fractions
    import re

    import av

    context = av.CodecContext.create("libx264", "w")
    context.width = width
    context.height = height
    context.pix_fmt = pix_fmt
    context.time_base = fractions.Fraction(1, 25)
    if profile:
        context.options = {"profile": profile}
    context.flags |= av.codec.context.Flags.global_header
    context.open()
    extradata = context.extradata
    assert extradata is not None
    nals = [n for n in re.split(b"\x00\x00\x00\x01|\x00\x00\x01", extradata) if n]
    sps = next(n for n in nals if n[0] & 0x1F == 7)
    pps = next(n for n in nals if n[0] & 0x1F == 8)
    record = (
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1])
        + len(sps).to_bytes(2, "big")
        + sps
        + b"\x01"
        + len(pps).to_bytes(2, "big")
        + pps
    )
    return b"\x17\x00\x00\x00\x00" + record


@pytest.mark.parametrize(
    ("width", "height", "pix_fmt", "profile"),
    [
        (320, 240, "yuv420p", "baseline"),
        (1280, 720, "yuv420p", "high"),
        (1920, 1080, "yuv420p", "main"),  # 1088 coded lines, cropped to 1080
        (642, 362, "yuv420p", "high"),  # odd sizes need cropping on both axes
        (352, 288, "yuv444p", ""),  # High 4:4:4 carries chroma format and bit depths
    ],
)
def test_avc_dimensions_from_real_encoder(
    width: int, height: int, pix_fmt: str, profile: str
) -> None:
    """The SPS of a libx264 stream gives back the encoded width and height."""
    header = _avc_sequence_header(width, height, pix_fmt, profile)
    assert media.avc_dimensions(header) == (width, height)


def test_avc_dimensions_of_truncated_or_foreign_payloads() -> None:
    """Every prefix of a header, inter frames and other codecs give None, never an error."""
    header = _avc_sequence_header(320, 240, "yuv420p", "high")
    for end in range(len(header) - 4):  # the PPS tail is not needed for the size
        assert media.avc_dimensions(header[:end]) in (None, (320, 240)), end
    assert media.avc_dimensions(header[:12]) is None
    assert media.avc_dimensions(b"\x27\x01\x00\x00\x00" + header[5:]) is None
    assert media.avc_dimensions(b"\x1c\x00" + header[2:]) is None  # HEVC codec id


@given(st.binary(max_size=64))
def test_avc_dimensions_never_raises(data: bytes) -> None:
    """Arbitrary bytes after an AVC sequence header prefix give a size or None."""
    result = media.avc_dimensions(b"\x17\x00\x00\x00\x00" + data)
    assert result is None or isinstance(result, tuple)


@pytest.mark.parametrize(
    ("payload", "codec"),
    [
        (b"\x17\x00", "H.264"),
        (b"\x2c\x01", "H.265"),
        (b"\x22", "H.263"),
        (b"\x90av01", "AV1"),
        (b"\x90hvc1", "H.265"),
        (b"\x0f", None),
        (b"", None),
    ],
)
def test_video_codec(payload: bytes, codec: str | None) -> None:
    """Video codec names come from the CodecID nibble or the Enhanced RTMP FourCC."""
    assert media.video_codec(payload) == codec


@pytest.mark.parametrize(
    ("payload", "codec"),
    [
        (b"\xaf\x01", "AAC"),
        (b"\x2f", "MP3"),
        (b"\x90Opus", "Opus"),
        (b"\xb2", "Speex"),
        (b"", None),
    ],
)
def test_audio_codec(payload: bytes, codec: str | None) -> None:
    """Audio codec names come from the SoundFormat nibble or the Enhanced RTMP FourCC."""
    assert media.audio_codec(payload) == codec


def test_aac_config() -> None:
    """An AudioSpecificConfig gives sample rate and channels; other payloads give None."""
    assert media.aac_config(b"\xaf\x00\x12\x10") == (44100, 2)  # AAC LC, index 4, stereo
    assert media.aac_config(b"\xaf\x00\x11\x90") == (48000, 2)
    assert media.aac_config(b"\xaf\x00\x17\x88") is None  # index 15 is reserved here
    assert media.aac_config(b"\xaf\x01\x12\x10") is None  # raw frame, not the config
    assert media.aac_config(b"\xaf\x00\x12") is None
