# -*- test-case-name: tests.rtmp.test_commands -*-
"""Tests for :mod:`flashstream.rtmp.commands`: real-world command and data payloads."""

from __future__ import annotations

import attrs
import pyamf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flashstream.rtmp.amf0 import UNDEFINED, ECMAArray
from flashstream.rtmp.commands import (
    COMMAND_AMF0,
    COMMAND_AMF3,
    DATA_AMF0,
    DATA_AMF3,
    Command,
    DataMessage,
    decode_command,
    decode_data,
    encode_command,
    encode_data,
)
from flashstream.rtmp.errors import AMFError, LimitExceeded, LocalProtocolError, MessageError
from flashstream.rtmp.limits import Limits
from tests.rtmp.test_amf0 import OBJECT_END, amf0_expected, amf0_values, assert_same, number
from tests.rtmp.test_amf0 import short as name
from tests.rtmp.test_amf0 import string as text


def test_message_type_ids() -> None:
    """The message type ids are those of the RTMP specification."""
    assert (COMMAND_AMF0, COMMAND_AMF3, DATA_AMF0, DATA_AMF3) == (20, 17, 18, 15)


# --- what ffmpeg sends ------------------------------------------------------------------------

#: ffmpeg's ``connect`` when publishing (rtmpproto.c gen_connect, no swfUrl, no E-RTMP list).
FFMPEG_PUBLISH_CONNECT = (
    text("connect")
    + number(1.0)
    + b"\x03"
    + name("app")
    + text("live")
    + name("type")
    + text("nonprivate")
    + name("flashVer")
    + text("FMLE/3.0 (compatible; Lavf61.1.100)")
    + name("tcUrl")
    + text("rtmp://localhost:1935/live")
    + OBJECT_END
)

#: ffmpeg's ``connect`` when playing.
FFMPEG_PLAY_CONNECT = (
    text("connect")
    + number(1.0)
    + b"\x03"
    + name("app")
    + text("vod")
    + name("flashVer")
    + text("LNX 9,0,124,2")
    + name("tcUrl")
    + text("rtmp://example.com/vod")
    + name("fpad")
    + b"\x01\x00"
    + name("capabilities")
    + number(15.0)
    + name("audioCodecs")
    + number(4071.0)
    + name("videoCodecs")
    + number(252.0)
    + name("videoFunction")
    + number(1.0)
    + OBJECT_END
)


def test_ffmpeg_publish_connect() -> None:
    """ffmpeg's publishing connect decodes to its properties and re-encodes byte for byte."""
    command = decode_command(COMMAND_AMF0, FFMPEG_PUBLISH_CONNECT)
    assert command == Command(
        "connect",
        1.0,
        {
            "app": "live",
            "type": "nonprivate",
            "flashVer": "FMLE/3.0 (compatible; Lavf61.1.100)",
            "tcUrl": "rtmp://localhost:1935/live",
        },
    )
    assert encode_command(command) == FFMPEG_PUBLISH_CONNECT


def test_ffmpeg_play_connect() -> None:
    """ffmpeg's playing connect decodes with its capabilities and re-encodes byte for byte."""
    command = decode_command(COMMAND_AMF0, FFMPEG_PLAY_CONNECT)
    assert command.command_object == {
        "app": "vod",
        "flashVer": "LNX 9,0,124,2",
        "tcUrl": "rtmp://example.com/vod",
        "fpad": False,
        "capabilities": 15.0,
        "audioCodecs": 4071.0,
        "videoCodecs": 252.0,
        "videoFunction": 1.0,
    }
    assert command.arguments == ()
    assert encode_command(command) == FFMPEG_PLAY_CONNECT


def test_connect_extra_arguments() -> None:
    """Values after the connect object (ffmpeg rtmp_conn, librtmp conn=) become arguments."""
    payload = FFMPEG_PUBLISH_CONNECT + text("token") + b"\x01\x01" + b"\x05"
    assert decode_command(COMMAND_AMF0, payload).arguments == ("token", True, None)


#: ffmpeg's metadata as rtmpproto sends it: @setDataFrame prepended to flvenc's onMetaData, whose
#: ECMA array count is ffmpeg's estimate rather than the real number of entries.
METADATA = ECMAArray(
    duration=0.0,
    width=1280.0,
    height=720.0,
    videodatarate=2500.0,
    framerate=30.0,
    videocodecid=7.0,
    audiodatarate=128.0,
    audiosamplerate=44100.0,
    audiosamplesize=16.0,
    stereo=True,
    audiocodecid=10.0,
    encoder="Lavf61.1.100",
    filesize=0.0,
)
FFMPEG_SET_DATA_FRAME = (
    text("@setDataFrame")
    + text("onMetaData")
    + b"\x08\x00\x00\x00\x10"  # 16: ffmpeg's estimate, not the 13 entries that follow
    + (name("duration") + number(0.0))
    + (name("width") + number(1280.0))
    + (name("height") + number(720.0))
    + (name("videodatarate") + number(2500.0))
    + (name("framerate") + number(30.0))
    + (name("videocodecid") + number(7.0))
    + (name("audiodatarate") + number(128.0))
    + (name("audiosamplerate") + number(44100.0))
    + (name("audiosamplesize") + number(16.0))
    + (name("stereo") + b"\x01\x01")
    + (name("audiocodecid") + number(10.0))
    + (name("encoder") + text("Lavf61.1.100"))
    + (name("filesize") + number(0.0))
    + OBJECT_END
)


def test_ffmpeg_set_data_frame() -> None:
    """ffmpeg's @setDataFrame/onMetaData decodes to the ECMA array, whatever its count says."""
    data = decode_data(DATA_AMF0, FFMPEG_SET_DATA_FRAME)
    assert data.name == "@setDataFrame"
    assert data.arguments[0] == "onMetaData"
    assert_same(data.arguments[1], METADATA)
    assert data == DataMessage("@setDataFrame", ("onMetaData", METADATA))


def test_metadata_round_trip() -> None:
    """Metadata forwarded as plain onMetaData keeps its ECMA array and values."""
    forwarded = DataMessage("onMetaData", (METADATA,))
    payload = encode_data(forwarded)
    assert payload.startswith(text("onMetaData") + b"\x08\x00\x00\x00\x0d")
    decoded = decode_data(DATA_AMF0, payload)
    assert decoded == forwarded
    assert_same(decoded.arguments[0], METADATA)


# --- what the server sends --------------------------------------------------------------------


def test_connect_result_golden() -> None:
    """The connect _result encodes as the AMF0 sequence nginx and ffmpeg's listener send."""
    result = Command(
        "_result",
        1,
        {"fmsVer": "FMS/3,0,1,123", "capabilities": 31},
        ({"level": "status", "code": "NetConnection.Connect.Success", "objectEncoding": 0},),
    )
    payload = encode_command(result)
    assert payload == (
        text("_result")
        + number(1.0)
        + b"\x03"
        + name("fmsVer")
        + text("FMS/3,0,1,123")
        + name("capabilities")
        + number(31.0)
        + OBJECT_END
        + b"\x03"
        + name("level")
        + text("status")
        + name("code")
        + text("NetConnection.Connect.Success")
        + name("objectEncoding")
        + number(0.0)
        + OBJECT_END
    )
    assert list(pyamf.decode(payload, encoding=pyamf.AMF0)) == [
        "_result",
        1,
        {"fmsVer": "FMS/3,0,1,123", "capabilities": 31},
        {"level": "status", "code": "NetConnection.Connect.Success", "objectEncoding": 0},
    ]


def test_sample_access_golden() -> None:
    """|RtmpSampleAccess(true, true) has the exact AMF0 encoding players expect."""
    payload = encode_data(DataMessage("|RtmpSampleAccess", (True, True)))
    assert payload == text("|RtmpSampleAccess") + b"\x01\x01\x01\x01"


def test_create_stream_result() -> None:
    """_result(4, null, 1) round-trips with a null command object."""
    command = Command("_result", 4.0, None, (1.0,))
    payload = encode_command(command)
    assert payload == text("_result") + number(4.0) + b"\x05" + number(1.0)
    assert decode_command(COMMAND_AMF0, payload) == command


# --- AMF3 message types (17, 15) --------------------------------------------------------------

#: Flash's NetConnection.call("setName", responder, {name: "bob", age: 7}) with objectEncoding 3:
#: a leading 00, the name and transaction id in AMF0, the argument switched to AMF3.
FLASH_CALL = (
    b"\x00"
    + text("setName")
    + number(2.0)
    + b"\x05"
    + bytes.fromhex("11 0a 0b 01 09")
    + b"name"
    + bytes.fromhex("06 07")
    + b"bob"
    + bytes.fromhex("07")
    + b"age"
    + bytes.fromhex("04 07 01")
)


def test_flash_amf3_call() -> None:
    """A type 17 command skips its leading 00 and unwraps the AMF3 argument."""
    command = decode_command(COMMAND_AMF3, FLASH_CALL)
    assert command == Command("setName", 2.0, None, ({"name": "bob", "age": 7},))
    [argument] = command.arguments
    assert isinstance(argument, dict) and type(argument["age"]) is int


def test_amf3_tables_shared_by_arguments() -> None:
    """AMF3 arguments of one message share reference tables (Red5 relies on it)."""
    payload = FLASH_CALL + bytes.fromhex("11 0a 01 00 06 02 04 04 08 01")
    command = decode_command(COMMAND_AMF3, payload)
    assert command.arguments == ({"name": "bob", "age": 7}, {"name": "bob", "age": 8})


def test_amf3_values_in_name_and_transaction() -> None:
    """A name or transaction id sent through an AVM+ switch is accepted (AMF3 int id → float)."""
    payload = b"\x00" + bytes.fromhex("11 06 09") + b"ping" + bytes.fromhex("11 04 05")
    command = decode_command(COMMAND_AMF3, payload)
    assert command == Command("ping", 5.0, None)
    assert type(command.transaction_id) is float


def test_amf3_command_without_leading_zero() -> None:
    """A type 17 payload missing its leading 00 is decoded from its first byte."""
    assert decode_command(COMMAND_AMF3, FLASH_CALL[1:]) == decode_command(COMMAND_AMF3, FLASH_CALL)


def test_amf3_data_message() -> None:
    """A type 15 data message skips the leading 00, or decodes from byte 0 when it is absent."""
    body = (
        text("onMetaData") + bytes.fromhex("11 09 01 0b") + b"width" + bytes.fromhex("04 8a 00 01")
    )
    expected = DataMessage("onMetaData", (ECMAArray(width=1280),))
    assert decode_data(DATA_AMF3, b"\x00" + body) == expected
    assert decode_data(DATA_AMF3, body) == expected


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        number(1.0) + number(1.0),
        b"\x05" + number(1.0),
        text("connect"),
        text("connect") + text("1"),
        text("connect") + b"\x01\x01",
        text("connect") + b"\x05",
        text("connect") + b"\x06",
    ],
)
def test_bad_commands(payload: bytes) -> None:
    """A command needs a string name and a numeric transaction id, else MessageError."""
    with pytest.raises(MessageError):
        decode_command(COMMAND_AMF0, payload)


@pytest.mark.parametrize("payload", [b"", number(1.0), b"\x05", b"\x11\x04\x01"])
def test_bad_data_messages(payload: bytes) -> None:
    """A data message needs a string handler name, else MessageError."""
    with pytest.raises(MessageError):
        decode_data(DATA_AMF0, payload)
    with pytest.raises(MessageError):
        decode_data(DATA_AMF3, b"\x00" + payload)


def test_command_object_defaults_to_none() -> None:
    """A command with only a name and a transaction id has a None command object."""
    payload = text("closeStream") + number(0.0)
    assert decode_command(COMMAND_AMF0, payload) == Command("closeStream", 0.0, None)


def test_undefined_command_object_kept() -> None:
    """The command object is passed through as sent (here: undefined)."""
    payload = text("play") + number(0.0) + b"\x06" + text("name")
    assert decode_command(COMMAND_AMF0, payload) == Command("play", 0.0, UNDEFINED, ("name",))


@pytest.mark.parametrize("type_id", [DATA_AMF0, DATA_AMF3, 8, 19, 0])
def test_command_wrong_type(type_id: int) -> None:
    """decode_command only takes types 20 and 17."""
    with pytest.raises(LocalProtocolError):
        decode_command(type_id, FFMPEG_PUBLISH_CONNECT)


@pytest.mark.parametrize("type_id", [COMMAND_AMF0, COMMAND_AMF3, 9, 16])
def test_data_wrong_type(type_id: int) -> None:
    """decode_data only takes types 18 and 15."""
    with pytest.raises(LocalProtocolError):
        decode_data(type_id, FFMPEG_SET_DATA_FRAME)


def test_truncated_command() -> None:
    """A command cut anywhere raises AMFError, or MessageError when the name or id is missing."""
    header = len(text("connect") + number(1.0))
    for length in range(1, len(FFMPEG_PUBLISH_CONNECT)):
        if length == header:
            continue  # connect(1) without its object is a valid command
        expected = AMFError if length != len(text("connect")) else MessageError
        with pytest.raises(expected):
            decode_command(COMMAND_AMF0, FFMPEG_PUBLISH_CONNECT[:length])


def test_limits_applied() -> None:
    """The limits given are applied to the payload's AMF values."""
    with pytest.raises(LimitExceeded):
        decode_command(COMMAND_AMF0, FFMPEG_PUBLISH_CONNECT, Limits(max_amf_items=3))
    with pytest.raises(LimitExceeded):
        decode_data(DATA_AMF0, FFMPEG_SET_DATA_FRAME, Limits(max_amf_items=12))


def test_unencodable_argument() -> None:
    """A command argument AMF0 cannot carry raises LocalProtocolError."""
    with pytest.raises(LocalProtocolError):
        encode_command(Command("x", 0, None, (object(),)))


# --- round trips ------------------------------------------------------------------------------


@settings(max_examples=100)
@given(
    st.text(max_size=20),
    st.floats(allow_nan=False),
    amf0_values,
    st.lists(amf0_values, max_size=3),
)
def test_command_round_trip(
    command_name: str, transaction_id: float, command_object: object, arguments: list[object]
) -> None:
    """decode_command(encode_command(c)) gives c back (AMF0 mapping: ints become floats)."""
    command = Command(command_name, transaction_id, command_object, tuple(arguments))
    decoded = decode_command(COMMAND_AMF0, encode_command(command))
    assert decoded.name == command_name
    assert decoded.transaction_id == transaction_id
    assert_same(decoded.command_object, amf0_expected(command_object))
    assert_same(list(decoded.arguments), amf0_expected(arguments))
    as_amf3 = decode_command(COMMAND_AMF3, b"\x00" + encode_command(command))
    assert_same(attrs.astuple(as_amf3, recurse=False), attrs.astuple(decoded, recurse=False))


@settings(max_examples=100)
@given(st.text(max_size=20), st.lists(amf0_values, max_size=3))
def test_data_round_trip(handler: str, arguments: list[object]) -> None:
    """decode_data(encode_data(d)) gives d back, also as a type 15 payload."""
    data = DataMessage(handler, tuple(arguments))
    decoded = decode_data(DATA_AMF0, encode_data(data))
    assert decoded.name == handler
    assert_same(list(decoded.arguments), amf0_expected(arguments))
    as_amf3 = decode_data(DATA_AMF3, b"\x00" + encode_data(data))
    assert_same(attrs.astuple(as_amf3, recurse=False), attrs.astuple(decoded, recurse=False))
