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


# -- codec facts for QoS figures ------------------------------------------------

_VIDEO_CODECS = {
    2: "H.263",
    3: "Screen Video",
    4: "VP6",
    5: "VP6 Alpha",
    6: "Screen Video 2",
    7: "H.264",
    12: "H.265",
}
_VIDEO_FOURCCS = {b"avc1": "H.264", b"hvc1": "H.265", b"av01": "AV1", b"vp09": "VP9"}
_AUDIO_CODECS = {
    0: "PCM",
    1: "ADPCM",
    2: "MP3",
    3: "PCM LE",
    4: "Nellymoser 16k",
    5: "Nellymoser 8k",
    6: "Nellymoser",
    7: "G.711 A-law",
    8: "G.711 mu-law",
    10: "AAC",
    11: "Speex",
    14: "MP3 8k",
}
_AUDIO_FOURCCS = {
    b"mp4a": "AAC",
    b".mp3": "MP3",
    b"Opus": "Opus",
    b"fLaC": "FLAC",
    b"ac-3": "AC-3",
    b"ec-3": "E-AC-3",
}
#: AAC sampling frequency index -> Hz (ISO 14496-3).
_AAC_RATES = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350
)


def video_codec(payload: bytes) -> str | None:
    """The codec of a video payload (classic CodecID or Enhanced RTMP FourCC)."""
    if not payload:
        return None
    first = payload[0]
    if first & 0x80:
        fourcc = payload[1:5]
        return _VIDEO_FOURCCS.get(fourcc, fourcc.decode("latin-1") if len(fourcc) == 4 else None)
    return _VIDEO_CODECS.get(first & 0x0F)


def audio_codec(payload: bytes) -> str | None:
    """The codec of an audio payload (SoundFormat or Enhanced RTMP FourCC)."""
    if not payload:
        return None
    sound_format = payload[0] >> 4
    if sound_format == _AUDIO_EX:
        fourcc = payload[1:5]
        return _AUDIO_FOURCCS.get(fourcc, fourcc.decode("latin-1") if len(fourcc) == 4 else None)
    return _AUDIO_CODECS.get(sound_format)


def aac_config(payload: bytes) -> tuple[int, int] | None:
    """(sample rate, channels) from a classic AAC sequence header, if readable."""
    if len(payload) < 4 or payload[0] >> 4 != _AAC or payload[1] != 0:
        return None
    bits = int.from_bytes(payload[2:4], "big")
    rate_index = (bits >> 7) & 0x0F
    channels = (bits >> 3) & 0x0F
    if rate_index >= len(_AAC_RATES):
        return None
    return _AAC_RATES[rate_index], channels


class _Bits:
    """Reads an H.264 RBSP bit by bit (Exp-Golomb codes included)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def bit(self) -> int:
        byte = self.position >> 3
        if byte >= len(self.data):
            raise ValueError("SPS ends early")
        value = (self.data[byte] >> (7 - (self.position & 7))) & 1
        self.position += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


#: profile_idc values whose SPS carries chroma format and bit depths.
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def _unescape(nal: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _sps_dimensions(sps: bytes) -> tuple[int, int]:
    """Width and height (after cropping) from an H.264 sequence parameter set NAL."""
    reader = _Bits(_unescape(sps)[1:])  # skip the NAL header byte
    profile = reader.bits(8)
    reader.bits(16)  # constraint flags, level
    reader.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in _HIGH_PROFILES:
        chroma_format = reader.ue()
        if chroma_format == 3:
            reader.bit()  # separate_colour_plane_flag
        reader.ue()  # bit_depth_luma_minus8
        reader.ue()  # bit_depth_chroma_minus8
        reader.bit()  # qpprime_y_zero_transform_bypass_flag
        if reader.bit():  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format != 3 else 12):
                if reader.bit():
                    size = 16 if index < 6 else 64
                    last = next_scale = 8
                    for _ in range(size):
                        if next_scale:
                            next_scale = (last + reader.se() + 256) % 256
                        last = next_scale or last
    reader.ue()  # log2_max_frame_num_minus4
    poc_type = reader.ue()
    if poc_type == 0:
        reader.ue()
    elif poc_type == 1:
        reader.bit()
        reader.se()
        reader.se()
        for _ in range(min(reader.ue(), 255)):
            reader.se()
    reader.ue()  # max_num_ref_frames
    reader.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = reader.ue() + 1
    height_units = reader.ue() + 1
    frame_mbs_only = reader.bit()
    if not frame_mbs_only:
        reader.bit()  # mb_adaptive_frame_field_flag
    reader.bit()  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if reader.bit():
        crop = (reader.ue(), reader.ue(), reader.ue(), reader.ue())
    sub_width = 2 if chroma_format in (1, 2) else 1
    sub_height = 2 if chroma_format == 1 else 1
    unit_x = sub_width if chroma_format else 1
    unit_y = (sub_height if chroma_format else 1) * (2 - frame_mbs_only)
    width = width_mbs * 16 - unit_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - unit_y * (crop[2] + crop[3])
    return width, height


def avc_dimensions(payload: bytes) -> tuple[int, int] | None:
    """(width, height) from a classic AVC sequence header, or None if unreadable.

    The payload is the FLV video body: codec byte, packet type 0, composition
    time, then the AVCDecoderConfigurationRecord whose first SPS is parsed.
    """
    if len(payload) < 13 or payload[0] & 0x0F != 7 or payload[1] != 0:
        return None
    record = payload[5:]
    if record[5] & 0x1F == 0:
        return None
    length = int.from_bytes(record[6:8], "big")
    sps = record[8 : 8 + length]
    if len(sps) != length or not sps:
        return None
    try:
        return _sps_dimensions(sps)
    except ValueError:
        return None
