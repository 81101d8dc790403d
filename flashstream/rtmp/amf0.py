# -*- test-case-name: tests.rtmp.test_amf0 -*-
"""
AMF0 encoding and decoding (rtmp-protocol.md 6.1), with the ``11`` (AVM+) switch to AMF3.

Python values are mapped as :mod:`flashstream.rtmp.amf_types` describes; its value types are
re-exported here.  Decoding follows what peers send rather than the letter of the spec:

* an ECMA array's count is ignored (it is only a hint); the array ends at ``00 00 09`` or at the
  end of the payload;
* references (``07``) index objects, typed objects, ECMA and strict arrays in order of
  appearance and return the earlier Python object;
* ``0D`` (unsupported) decodes as :data:`UNDEFINED`; MovieClip (``04``), RecordSet (``0E``) and
  unknown markers raise :class:`AMFError`;
* every ``11`` value of one :func:`decode` call shares one set of AMF3 reference tables.

The encoder never emits references (ffmpeg and librtmp do not understand them), so a cyclic
value cannot be encoded.  AMF3-only values (ByteArray, XML, vectors...) must be wrapped in
:class:`AVMPlus`.
"""

from __future__ import annotations

import datetime
import struct
from typing import Final

from flashstream.rtmp import amf3
from flashstream.rtmp.amf_types import (
    DEFAULT_LIMITS,
    UNDEFINED,
    XML,
    ArrayCollection,
    AVMPlus,
    ByteArray,
    Dictionary,
    ECMAArray,
    ObjectProxy,
    Reader,
    TypedObject,
    Undefined,
    Vector,
    VectorKind,
    XMLDocument,
    check_depth,
    check_items,
    convert_decode_errors,
    convert_encode_errors,
    date_from_ms,
    encode_double,
    encode_utf8,
    ms_from_date,
)
from flashstream.rtmp.errors import AMFError, LocalProtocolError
from flashstream.rtmp.limits import Limits

__all__ = [
    "UNDEFINED",
    "AVMPlus",
    "ArrayCollection",
    "ByteArray",
    "Dictionary",
    "ECMAArray",
    "ObjectProxy",
    "TypedObject",
    "Undefined",
    "Vector",
    "VectorKind",
    "XML",
    "XMLDocument",
    "decode",
    "encode",
]

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_OBJECT_END: Final = b"\x00\x00\x09"


class _Decoder:
    def __init__(self, reader: Reader, limits: Limits) -> None:
        self._reader = reader
        self._limits = limits
        self._complex: list[object] = []
        self._amf3: amf3.Decoder | None = None

    def read_value(self, depth: int) -> object:
        reader = self._reader
        marker = reader.u8()
        if marker == 0x00:
            return reader.double()
        if marker == 0x01:
            return reader.u8() != 0
        if marker == 0x02:
            return reader.utf8(reader.u16())
        if marker == 0x05:
            return None
        if marker in (0x06, 0x0D):
            return UNDEFINED
        if marker == 0x07:
            index = reader.u16()
            if index >= len(self._complex):
                raise AMFError(f"AMF0 reference {index} out of range")
            return self._complex[index]
        if marker == 0x0B:
            milliseconds = reader.double()
            reader.s16()  # time zone: ignored, AMF dates are UTC instants
            return date_from_ms(milliseconds)
        if marker == 0x0C:
            return reader.utf8(reader.u32())
        if marker == 0x0F:
            return XMLDocument(reader.utf8(reader.u32()))
        if marker == 0x11:
            if self._amf3 is None:
                self._amf3 = amf3.Decoder(reader, self._limits)
            return self._amf3.read_value(depth)
        if marker in (0x03, 0x08, 0x0A, 0x10):
            return self._read_complex(marker, check_depth(depth, self._limits))
        raise AMFError(f"unsupported AMF0 marker 0x{marker:02x}")

    def _register(self, value: object) -> None:
        check_items(len(self._complex) + 1, self._limits)
        self._complex.append(value)

    def _read_complex(self, marker: int, depth: int) -> object:
        reader = self._reader
        if marker == 0x03:
            members: dict[str, object] = {}
            self._register(members)
            self._read_members(members, depth)
            return members
        if marker == 0x08:
            reader.u32()  # the count is only a hint, often 0 or wrong
            array = ECMAArray()
            self._register(array)
            self._read_members(array, depth, end_of_data_ends=True)
            return array
        if marker == 0x0A:
            count = reader.u32()
            check_items(count, self._limits)
            items: list[object] = []
            self._register(items)
            for _ in range(count):
                items.append(self.read_value(depth))
            return items
        attributes: dict[str, object] = {}  # 0x10, typed object
        typed = TypedObject(reader.utf8(reader.u16()), attributes)
        self._register(typed)
        self._read_members(attributes, depth)
        return typed

    def _read_members(
        self, members: dict[str, object], depth: int, end_of_data_ends: bool = False
    ) -> None:
        reader = self._reader
        count = 0
        while True:
            if end_of_data_ends and not reader.remaining:
                return
            length = reader.u16()
            if not length:
                if end_of_data_ends and not reader.remaining:
                    return
                if reader.u8() != 0x09:
                    raise AMFError("AMF0 empty member name without the object end marker")
                return
            key = reader.utf8(length)
            count += 1
            check_items(count, self._limits)
            members[key] = self.read_value(depth)


class _Encoder:
    def __init__(self) -> None:
        self.out = bytearray()
        self._open: set[int] = set()
        self._amf3: amf3.Encoder | None = None

    def write_value(self, value: object) -> None:
        out = self.out
        if value is None:
            out.append(0x05)
        elif value is UNDEFINED:
            out.append(0x06)
        elif isinstance(value, bool):
            out += b"\x01\x01" if value else b"\x01\x00"
        elif isinstance(value, (int, float)):
            out.append(0x00)
            out += encode_double(value)
        elif isinstance(value, XMLDocument):
            data = encode_utf8(value)
            out.append(0x0F)
            out += self._u32(len(data)) + data
        elif isinstance(value, str) and not isinstance(value, XML):
            data = encode_utf8(value)
            if len(data) <= 0xFFFF:
                out.append(0x02)
                out += _U16.pack(len(data)) + data
            else:
                out.append(0x0C)
                out += self._u32(len(data)) + data
        elif isinstance(value, datetime.datetime):
            out.append(0x0B)
            out += encode_double(ms_from_date(value)) + b"\x00\x00"
        elif isinstance(value, AVMPlus):
            if self._amf3 is None:
                self._amf3 = amf3.Encoder(out)
            out.append(0x11)
            self._amf3.write_value(value.value)
        elif isinstance(value, (dict, list, tuple, TypedObject)):
            if id(value) in self._open:
                raise LocalProtocolError("cannot encode a cyclic value in AMF0")
            self._open.add(id(value))
            self._write_complex(value)
            self._open.discard(id(value))
        else:
            raise LocalProtocolError(
                f"cannot encode {type(value).__name__} in AMF0 (AMF3 values need AVMPlus)"
            )

    @staticmethod
    def _u32(length: int) -> bytes:
        if length > 0xFFFFFFFF:
            raise LocalProtocolError(f"AMF0 value too long: {length} bytes")
        return _U32.pack(length)

    def _write_complex(
        self, value: dict[str, object] | list[object] | tuple[object, ...] | TypedObject
    ) -> None:
        out = self.out
        if isinstance(value, ECMAArray):
            out.append(0x08)
            out += self._u32(len(value))
            self._write_members(value)
        elif isinstance(value, dict):
            out.append(0x03)
            self._write_members(value)
        elif isinstance(value, TypedObject):
            out.append(0x10)
            self._write_short_string(value.class_name)
            self._write_members(value.attributes)
        else:
            out.append(0x0A)
            out += self._u32(len(value))
            for item in value:
                self.write_value(item)

    def _write_short_string(self, text: str) -> None:
        data = encode_utf8(text)
        if len(data) > 0xFFFF:
            raise LocalProtocolError(f"AMF0 name longer than 65535 bytes: {text[:40]!r}...")
        self.out += _U16.pack(len(data)) + data

    def _write_members(self, members: dict[str, object]) -> None:
        for key, item in members.items():
            if not isinstance(key, str) or not key:
                raise LocalProtocolError(f"AMF0 member names must be non-empty strings: {key!r}")
            self._write_short_string(key)
            self.write_value(item)
        self.out += _OBJECT_END


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> list[object]:
    """Decode every AMF0 value in ``data`` (one message payload)."""
    reader = Reader(bytes(data))
    decoder = _Decoder(reader, limits)
    values: list[object] = []
    with convert_decode_errors():
        while reader.remaining:
            check_items(len(values) + 1, limits)
            values.append(decoder.read_value(0))
    return values


def encode(*values: object) -> bytes:
    """Encode ``values`` one after another; unencodable values raise LocalProtocolError."""
    encoder = _Encoder()
    with convert_encode_errors():
        for value in values:
            encoder.write_value(value)
    return bytes(encoder.out)
