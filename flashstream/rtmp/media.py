# -*- test-case-name: tests.rtmp.test_media -*-
"""
Facts about FLV-style audio and video payloads that the server acts on.

RTMP audio/video bodies are FLV tag bodies: the first byte carries the codec
and frame type.  These pure functions recognise keyframes and codec sequence
headers (AVC/HEVC/AAC and their Enhanced RTMP forms) so the hub can cache
what a late joiner needs.
"""

from __future__ import annotations

AUDIO = 8
VIDEO = 9

#: FLV video codec ids that carry a packet type byte (AVC, legacy HEVC).
_PACKETIZED_VIDEO = frozenset({7, 12})
#: FLV SoundFormat of AAC, and the Enhanced RTMP "ExHeader" sound format.
_AAC = 10
_AUDIO_EX = 9


def is_keyframe(payload: bytes) -> bool:
    """True if a video payload is a key frame (FrameType 1)."""
    return bool(payload) and (payload[0] >> 4) & 0x07 == 1


def is_video_sequence_header(payload: bytes) -> bool:
    """True for an AVC/HEVC decoder configuration (classic or Enhanced RTMP)."""
    if len(payload) < 2:
        return False
    first = payload[0]
    if first & 0x80:  # Enhanced RTMP: PacketType 0 = SequenceStart
        return first & 0x0F == 0
    return first & 0x0F in _PACKETIZED_VIDEO and payload[1] == 0


def is_audio_sequence_header(payload: bytes) -> bool:
    """True for an AAC AudioSpecificConfig (or an Enhanced RTMP SequenceStart)."""
    if len(payload) < 2:
        return False
    sound_format = payload[0] >> 4
    if sound_format == _AAC:
        return payload[1] == 0
    if sound_format == _AUDIO_EX:
        return payload[0] & 0x0F == 0
    return False


def is_sequence_header(type_id: int, payload: bytes) -> bool:
    """True if the audio/video message is a codec sequence header."""
    if type_id == VIDEO:
        return is_video_sequence_header(payload)
    if type_id == AUDIO:
        return is_audio_sequence_header(payload)
    return False
