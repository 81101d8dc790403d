# -*- test-case-name: tests.rtmp.test_amf0 -*-
"""Tests for :mod:`flashstream.rtmp.amf0`: golden bytes, round trips, limits, py3amf cross-check."""

from __future__ import annotations

import datetime
import math
import struct
from typing import Any

import pyamf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flashstream.rtmp import amf0
from flashstream.rtmp.amf0 import (
    UNDEFINED,
    XML,
    ArrayCollection,
    AVMPlus,
    ByteArray,
    Dictionary,
    ECMAArray,
    ObjectProxy,
    TypedObject,
    Vector,
    VectorKind,
    XMLDocument,
)
from flashstream.rtmp.errors import AMFError, LimitExceeded, LocalProtocolError
from flashstream.rtmp.limits import Limits

UTC = datetime.UTC


def number(value: float) -> bytes:
    """The AMF0 encoding of a Number."""
    return b"\x00" + struct.pack(">d", value)


def short(text: str) -> bytes:
    """A u16-length-prefixed UTF-8 name (object key, class name)."""
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def string(text: str) -> bytes:
    """The AMF0 encoding of a String."""
    return b"\x02" + short(text)


OBJECT_END = b"\x00\x00\x09"


# --- comparing decoded values -----------------------------------------------------------------


def assert_same(actual: object, expected: object) -> None:
    """Assert ``actual == expected`` with exact types, key order, NaN and the sign of zero."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, float):
        assert isinstance(actual, float)
        if math.isnan(expected):
            assert math.isnan(actual)
        else:
            assert actual == expected and math.copysign(1, actual) == math.copysign(1, expected)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict)
        assert list(actual) == list(expected)
        for key in expected:
            assert_same(actual[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple))
        assert len(actual) == len(expected)
        for left, right in zip(actual, expected, strict=True):
            assert_same(left, right)
    elif isinstance(expected, TypedObject):
        assert isinstance(actual, TypedObject)
        assert actual.class_name == expected.class_name
        assert_same(actual.attributes, expected.attributes)
    elif isinstance(expected, Vector):
        assert isinstance(actual, Vector)
        assert (actual.kind, actual.fixed, actual.type_name) == (
            expected.kind,
            expected.fixed,
            expected.type_name,
        )
        assert_same(actual.items, expected.items)
    elif isinstance(expected, Dictionary):
        assert isinstance(actual, Dictionary)
        assert actual.weak_keys == expected.weak_keys
        assert_same(actual.items, expected.items)
    elif isinstance(expected, ArrayCollection):
        assert isinstance(actual, ArrayCollection)
        assert_same(actual.source, expected.source)
    elif isinstance(expected, ObjectProxy):
        assert isinstance(actual, ObjectProxy)
        assert_same(actual.value, expected.value)
    else:
        assert actual == expected


def amf0_expected(value: object) -> object:
    """What decoding the AMF0 encoding of ``value`` gives back."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, datetime.datetime):
        return value.astimezone(UTC)
    if isinstance(value, (list, tuple)):
        return [amf0_expected(item) for item in value]
    if isinstance(value, dict):
        return type(value)({key: amf0_expected(item) for key, item in value.items()})
    if isinstance(value, TypedObject):
        attributes = amf0_expected(value.attributes)
        assert isinstance(attributes, dict)
        return TypedObject(value.class_name, attributes)
    return value


def utc_datetimes() -> st.SearchStrategy[datetime.datetime]:
    """UTC datetimes with millisecond precision (what an AMF Date carries exactly)."""
    return st.datetimes(timezones=st.just(UTC)).map(
        lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    )


keys = st.text(min_size=1, max_size=8)

amf0_scalars = st.one_of(
    st.none(),
    st.just(UNDEFINED),
    st.booleans(),
    st.floats(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.text(max_size=20),
    utc_datetimes(),
    st.text(max_size=20).map(XMLDocument),
)

amf0_values = st.recursive(
    amf0_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(keys, children, max_size=5),
        st.dictionaries(keys, children, max_size=5).map(ECMAArray),
        st.builds(TypedObject, st.text(max_size=8), st.dictionaries(keys, children, max_size=5)),
    ),
    max_leaves=20,
)


# --- golden bytes -----------------------------------------------------------------------------

MOMENT = datetime.datetime(2020, 1, 1, tzinfo=UTC)

#: (value, its exact encoding), checked in both directions.
GOLDEN: list[tuple[object, bytes]] = [
    (1.5, bytes.fromhex("00 3ff8000000000000")),
    (-0.0, bytes.fromhex("00 8000000000000000")),
    (True, b"\x01\x01"),
    (False, b"\x01\x00"),
    ("abc", bytes.fromhex("02 0003 616263")),
    ("", bytes.fromhex("02 0000")),
    ("é", bytes.fromhex("02 0002 c3a9")),
    ({"a": 1.0}, b"\x03" + short("a") + number(1.0) + OBJECT_END),
    ({}, b"\x03" + OBJECT_END),
    (None, b"\x05"),
    (UNDEFINED, b"\x06"),
    (ECMAArray(a=1.0), b"\x08\x00\x00\x00\x01" + short("a") + number(1.0) + OBJECT_END),
    (["x", None], b"\x0a\x00\x00\x00\x02" + string("x") + b"\x05"),
    (MOMENT, bytes.fromhex("0b 4276f5e66e800000 0000")),
    ("x" * 65535, b"\x02\xff\xff" + b"x" * 65535),
    ("x" * 65536, b"\x0c\x00\x01\x00\x00" + b"x" * 65536),
    ("é" * 32768, b"\x0c\x00\x01\x00\x00" + "é".encode() * 32768),
    (XMLDocument("<a/>"), bytes.fromhex("0f 00000004 3c612f3e")),
    (
        TypedObject("Foo", {"b": "c"}),
        b"\x10" + short("Foo") + short("b") + string("c") + OBJECT_END,
    ),
    (AVMPlus(1), bytes.fromhex("11 04 01")),
    (AVMPlus({"a": 1}), bytes.fromhex("11 0a 0b 01 03 61 04 01 01")),
    (AVMPlus(ByteArray(b"ab")), bytes.fromhex("11 0c 05 61 62")),
]


@pytest.mark.parametrize(("value", "encoded"), GOLDEN)
def test_golden_encode(value: object, encoded: bytes) -> None:
    """Every AMF0 marker we write has exactly the reference encoding."""
    assert amf0.encode(value) == encoded


@pytest.mark.parametrize(("value", "encoded"), GOLDEN)
def test_golden_decode(value: object, encoded: bytes) -> None:
    """Every AMF0 marker decodes to the expected Python value; AVM+ values come back unwrapped."""
    expected = value.value if isinstance(value, AVMPlus) else amf0_expected(value)
    assert_same(amf0.decode(encoded), [expected])


def test_int_encodes_as_number() -> None:
    """Python ints are AMF0 Numbers and decode as floats."""
    assert amf0.encode(3) == number(3.0)
    assert_same(amf0.decode(amf0.encode(3)), [3.0])


def test_boolean_nonzero_is_true() -> None:
    """Any non-zero Boolean byte means true."""
    assert amf0.decode(b"\x01\x02") == [True]


def test_decode_all_values() -> None:
    """decode() returns every value in the payload, in order; empty data gives no values."""
    assert amf0.decode(string("a") + number(2.0) + b"\x05") == ["a", 2.0, None]
    assert amf0.decode(b"") == []


def test_long_string_marker_for_short_text() -> None:
    """A long string (0C) holding a short text is accepted."""
    assert amf0.decode(b"\x0c\x00\x00\x00\x02hi") == ["hi"]


def test_date_timezone_ignored() -> None:
    """The Date time-zone field is ignored: dates are UTC instants."""
    encoded = bytes.fromhex("0b 4276f5e66e800000 0100")
    assert amf0.decode(encoded) == [MOMENT]


def test_date_from_other_timezone() -> None:
    """An aware datetime in another zone encodes as the same instant, decoded in UTC."""
    paris = datetime.timezone(datetime.timedelta(hours=1))
    value = datetime.datetime(2020, 1, 1, 1, tzinfo=paris)
    [decoded] = amf0.decode(amf0.encode(value))
    assert isinstance(decoded, datetime.datetime)
    assert decoded == MOMENT and decoded.tzinfo == UTC


def test_unsupported_marker_is_undefined() -> None:
    """The Unsupported marker (0D) decodes as UNDEFINED."""
    assert amf0.decode(b"\x0d") == [UNDEFINED]


@pytest.mark.parametrize("marker", [0x04, 0x09, 0x0E, 0x12, 0xFF])
def test_reserved_and_unknown_markers(marker: int) -> None:
    """MovieClip, a stray object end, RecordSet and unknown markers raise AMFError."""
    with pytest.raises(AMFError):
        amf0.decode(bytes((marker,)))


def test_utf8_round_trip_of_invalid_bytes() -> None:
    """Invalid UTF-8 in a string decodes without error and re-encodes to the same bytes."""
    encoded = b"\x02\x00\x02\xff\xfe"
    [text] = amf0.decode(encoded)
    assert isinstance(text, str)
    assert amf0.encode(text) == encoded


# --- ECMA arrays and object ends --------------------------------------------------------------

ECMA_BODY = short("a") + number(1.0) + short("b") + string("x")


@pytest.mark.parametrize("count", [0, 1, 2, 5, 0xFFFFFFFF])
def test_ecma_array_count_is_a_hint(count: int) -> None:
    """An ECMA array is read to its end marker whatever its count says."""
    encoded = b"\x08" + struct.pack(">I", count) + ECMA_BODY + OBJECT_END + b"\x05"
    assert_same(amf0.decode(encoded), [ECMAArray(a=1.0, b="x"), None])


@pytest.mark.parametrize("ending", [b"", b"\x00\x00"])
def test_ecma_array_ended_by_end_of_payload(ending: bytes) -> None:
    """The end of the payload (after a member or an empty name) ends an ECMA array."""
    encoded = b"\x08\x00\x00\x00\x02" + ECMA_BODY + ending
    assert_same(amf0.decode(encoded), [ECMAArray(a=1.0, b="x")])


def test_ecma_array_truncated_inside_member() -> None:
    """An ECMA array cut inside a member name or value is still an error."""
    encoded = b"\x08\x00\x00\x00\x02" + ECMA_BODY
    for cut in (1, 3, 5):
        with pytest.raises(AMFError):
            amf0.decode(encoded[:-cut])


def test_object_needs_end_marker() -> None:
    """An anonymous object cut before its end marker raises AMFError."""
    for encoded in (b"\x03" + short("a") + b"\x05", b"\x03" + short("a") + b"\x05\x00\x00"):
        with pytest.raises(AMFError):
            amf0.decode(encoded)


def test_empty_name_without_end_marker() -> None:
    """An empty member name must be followed by the object end marker 09."""
    with pytest.raises(AMFError, match="end marker"):
        amf0.decode(b"\x03\x00\x00\x05")


def test_object_end_ends_nested_objects() -> None:
    """Each object end marker closes the innermost object."""
    encoded = (
        b"\x03" + short("o") + b"\x03" + short("x") + b"\x05" + OBJECT_END + short("y") + b"\x06"
    )
    assert amf0.decode(encoded + OBJECT_END) == [{"o": {"x": None}, "y": UNDEFINED}]


# --- references -------------------------------------------------------------------------------


def test_reference_returns_earlier_object() -> None:
    """A reference (07) returns the very object decoded earlier, counting arrays and objects."""
    inner = b"\x03" + short("k") + b"\x05" + OBJECT_END
    encoded = b"\x0a\x00\x00\x00\x03" + inner + b"\x07\x00\x01" + b"\x07\x00\x00"
    outer: Any
    [outer] = amf0.decode(encoded)
    assert outer[0] == {"k": None}
    assert outer[1] is outer[0]
    assert outer[2] is outer
    assert amf0.decode(inner + inner + b"\x07\x00\x01")[2] == {"k": None}


def test_reference_table_counts_all_complex_values() -> None:
    """Typed objects and ECMA arrays take reference slots too; strings and dates do not."""
    typed = b"\x10" + short("T") + OBJECT_END
    ecma = b"\x08\x00\x00\x00\x00" + OBJECT_END
    values = amf0.decode(string("s") + typed + MOMENT_BYTES + ecma + b"\x07\x00\x00\x07\x00\x01")
    assert values[4] is values[1]
    assert values[5] is values[3]


MOMENT_BYTES = bytes.fromhex("0b 4276f5e66e800000 0000")


def test_bad_reference() -> None:
    """A reference past the table raises AMFError."""
    with pytest.raises(AMFError):
        amf0.decode(b"\x03" + OBJECT_END + b"\x07\x00\x01")


def test_amf3_tables_shared_across_avmplus_values() -> None:
    """All 11 values of one message share the AMF3 reference tables, on both sides."""
    encoded = amf0.encode(AVMPlus("s"), AVMPlus({"s": 1}), AVMPlus({"s": 2}))
    assert encoded == bytes.fromhex("11 06 03 73  11 0a 0b 01 00 04 01 01  11 0a 01 00 04 02 01")
    assert amf0.decode(encoded) == ["s", {"s": 1}, {"s": 2}]
    assert amf0.decode(bytes.fromhex("11 06 03 73 05 11 06 00")) == ["s", None, "s"]
    with pytest.raises(AMFError):
        amf0.decode(bytes.fromhex("11 06 00"))
    assert amf0.decode(amf0.encode(AVMPlus("s"))) == ["s"]


# --- encoding errors --------------------------------------------------------------------------


def _cyclic() -> list[object]:
    loop: list[object] = []
    loop.append(loop)
    return loop


class _Opaque:
    """An arbitrary object with a stable repr (test ids must match across xdist workers)."""

    def __repr__(self) -> str:
        return "opaque"


@pytest.mark.parametrize(
    "value",
    [
        _Opaque(),
        b"bytes",
        ByteArray(b"x"),
        XML("<a/>"),
        Vector(VectorKind.INT, (1,)),
        Dictionary(()),
        ArrayCollection([]),
        {1, 2},
        {1: "int key"},
        {"": "empty key"},
        {"x" * 65536: "key too long"},
        TypedObject("x" * 65536, {}),
        datetime.datetime(2020, 1, 1),
        10**400,
        _cyclic(),
        "\ud800",
    ],
    ids=repr,
)
def test_unencodable(value: object) -> None:
    """Values AMF0 cannot carry raise LocalProtocolError (AMF3-only ones need AVMPlus)."""
    with pytest.raises(LocalProtocolError):
        amf0.encode(value)


def test_shared_value_is_not_a_cycle() -> None:
    """The same object twice (not nested in itself) is written twice, without references."""
    shared = {"a": 1.0}
    assert amf0.encode([shared, shared]) == amf0.encode([{"a": 1.0}, {"a": 1.0}])


# --- limits -----------------------------------------------------------------------------------


def nested_arrays(depth: int) -> bytes:
    """``depth`` strict arrays, each holding the next, around a null."""
    return b"\x0a\x00\x00\x00\x01" * depth + b"\x05"


def test_depth_limit() -> None:
    """Nesting up to max_amf_depth decodes; one level more raises LimitExceeded."""
    limits = Limits(max_amf_depth=5)
    amf0.decode(nested_arrays(5), limits)
    with pytest.raises(LimitExceeded) as caught:
        amf0.decode(nested_arrays(6), limits)
    assert caught.value.limit == "max_amf_depth"


def test_depth_bomb() -> None:
    """A deeply nested payload (objects, arrays, AVM+ switches) is refused, not recursed into."""
    bombs = [
        nested_arrays(100_000),
        (b"\x03" + short("a")) * 100_000,
        b"\x08\x00\x00\x00\x00\x00\x01a" * 100_000,
        b"\x0a\x00\x00\x00\x01" * 20 + b"\x11" + b"\x09\x03\x01" * 20 + b"\x01",
    ]
    for bomb in bombs:
        with pytest.raises(LimitExceeded):
            amf0.decode(bomb)


def test_depth_counts_through_avmplus() -> None:
    """AMF3 containers inside an AVM+ value add to the AMF0 nesting depth."""
    limits = Limits(max_amf_depth=3)
    amf0.decode(b"\x0a\x00\x00\x00\x01\x11" + b"\x09\x03\x01" * 2 + b"\x01", limits)
    with pytest.raises(LimitExceeded):
        amf0.decode(b"\x0a\x00\x00\x00\x01\x11" + b"\x09\x03\x01" * 3 + b"\x01", limits)


def test_item_count_limits() -> None:
    """Containers and the reference table are limited to max_amf_items entries."""
    limits = Limits(max_amf_items=4)
    four = amf0.encode(ECMAArray({str(i): None for i in range(4)}))
    amf0.decode(four, limits)
    too_many: object
    for too_many in (
        [None] * 5,
        {str(i): None for i in range(5)},
        ECMAArray({str(i): None for i in range(5)}),
        TypedObject("T", {str(i): None for i in range(5)}),
        [[{}, {}], [{}, {}]],  # five complex values in the reference table
    ):
        with pytest.raises(LimitExceeded) as caught:
            amf0.decode(amf0.encode(too_many), limits)
        assert caught.value.limit == "max_amf_items"
    with pytest.raises(LimitExceeded):
        amf0.decode(b"\x05" * 5, limits)


def test_item_count_bomb() -> None:
    """A strict array announcing 2**32-1 items is refused before anything is allocated."""
    with pytest.raises(LimitExceeded):
        amf0.decode(b"\x0a\xff\xff\xff\xff\x05")


def test_count_beyond_payload() -> None:
    """A strict array announcing more items than the payload holds raises AMFError."""
    with pytest.raises(AMFError):
        amf0.decode(b"\x0a\x00\x00\x10\x00\x05\x05")


TRUNCATION_SAMPLES: list[object] = [
    1.5,
    True,
    "hello",
    "x" * 70_000,
    {"a": [1.0, "b", None], "c": {"d": MOMENT}},
    TypedObject("T", {"x": XMLDocument("<x/>")}),
    AVMPlus({"a": [1, "s", ByteArray(b"zz")]}),
    [ECMAArray(a=1.0), UNDEFINED],
]


@pytest.mark.parametrize("value", TRUNCATION_SAMPLES, ids=lambda value: repr(value)[:30])
def test_truncated_at_every_length(value: object) -> None:
    """Every strict prefix of an encoded value raises AMFError (never IndexError/struct.error)."""
    encoded = amf0.encode(value)
    for length in range(1, len(encoded)):
        if length > 300 and length < len(encoded) - 300:
            continue  # the middle of a long string adds nothing
        with pytest.raises(AMFError):
            amf0.decode(encoded[:length])


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_garbage(data: bytes) -> None:
    """Arbitrary bytes decode or raise AMFError/LimitExceeded, nothing else."""
    try:
        amf0.decode(data, Limits(max_amf_depth=8, max_amf_items=64))
    except (AMFError, LimitExceeded):
        pass


@settings(max_examples=300)
@given(st.lists(st.sampled_from([0x02, 0x03, 0x05, 0x08, 0x0A, 0x10, 0x11, 0x09, 0x00, 0x01])))
def test_garbage_made_of_markers(markers: list[int]) -> None:
    """Byte soup made of AMF0 markers decodes or raises AMFError/LimitExceeded, nothing else."""
    try:
        amf0.decode(bytes(markers), Limits(max_amf_depth=8, max_amf_items=64))
    except (AMFError, LimitExceeded):
        pass


# --- round trips ------------------------------------------------------------------------------


@settings(max_examples=200)
@given(st.lists(amf0_values, max_size=4))
def test_round_trip(values: list[object]) -> None:
    """Decoding an encoding gives the values back (ints as floats, tuples as lists)."""
    assert_same(amf0.decode(amf0.encode(*values)), [amf0_expected(value) for value in values])


# --- cross-check with py3amf (imported as pyamf) ----------------------------------------------


def from_pyamf(value: Any) -> object:
    """A py3amf decoding result in our value mapping, for the AMF0 subset both handle."""
    if isinstance(value, bool) or value is None:
        return value
    if value is pyamf.Undefined:
        return UNDEFINED
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=UTC)
    if isinstance(value, pyamf.TypedObject):
        return TypedObject(value.alias, {k: from_pyamf(v) for k, v in value.items()})
    if isinstance(value, pyamf.MixedArray):
        return ECMAArray({k: from_pyamf(v) for k, v in value.items()})
    if isinstance(value, dict):
        return {k: from_pyamf(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_pyamf(item) for item in value]
    return value


def to_pyamf(value: object) -> Any:
    """Our value as py3amf expects it to encode it (naive UTC dates, MixedArray, Undefined)."""
    if value is UNDEFINED:
        return pyamf.Undefined
    if isinstance(value, datetime.datetime):
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, ECMAArray):
        return pyamf.MixedArray({k: to_pyamf(v) for k, v in value.items()})
    if isinstance(value, dict):
        return {k: to_pyamf(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_pyamf(item) for item in value]
    return value


CROSS_VALUES: list[object] = [
    1.5,
    -7.0,
    "abc",
    "x" * 70_000,
    "naïve ☃",
    True,
    False,
    None,
    UNDEFINED,
    MOMENT,
    {"app": "live", "tcUrl": "rtmp://localhost/live", "n": 2.0},
    ECMAArray(duration=0.0, width=1280.0, encoder="Lavf61.1.100"),
    [1.0, "two", [3.0, {"four": None}]],
]


@pytest.mark.parametrize("value", CROSS_VALUES, ids=lambda value: repr(value)[:30])
def test_we_decode_pyamf(value: object) -> None:
    """What py3amf encodes in AMF0, we decode to the same value."""
    encoded = pyamf.encode(to_pyamf(value), encoding=pyamf.AMF0).getvalue()
    assert_same(amf0.decode(encoded), [amf0_expected(value)])


@pytest.mark.parametrize(
    "value", [*CROSS_VALUES, TypedObject("Foo", {"b": "c"})], ids=lambda value: repr(value)[:30]
)
def test_pyamf_decodes_us(value: object) -> None:
    """What we encode in AMF0, py3amf decodes to the same value (typed objects included)."""
    decoded = list(pyamf.decode(amf0.encode(value), encoding=pyamf.AMF0))
    assert_same([from_pyamf(item) for item in decoded], [amf0_expected(value)])


#: The subset py3amf handles faithfully in AMF0: no XML (it needs an ElementTree), no typed
#: objects (it writes unregistered classes as anonymous objects), no NaN, infinities or -0.0
#: (it decodes that as the int 0), no
#: surrogate escapes, and dates to the second only (it converts milliseconds through float
#: seconds, which can lose a microsecond).
pyamf_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: x + 0.0),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
    utc_datetimes().map(lambda moment: moment.replace(microsecond=0)),
)
pyamf_values = st.recursive(
    pyamf_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=100)
@given(pyamf_values)
def test_pyamf_cross_check_property(value: object) -> None:
    """For random values of the shared subset, each implementation decodes the other's AMF0."""
    ours = amf0.encode(value)
    theirs = pyamf.encode(to_pyamf(value), encoding=pyamf.AMF0).getvalue()
    expected = amf0_expected(value)
    assert_same([from_pyamf(item) for item in pyamf.decode(ours, encoding=pyamf.AMF0)], [expected])
    assert_same(amf0.decode(theirs), [expected])
