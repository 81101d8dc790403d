# -*- test-case-name: tests.rtmp.test_amf3 -*-
"""
AMF3 encoding and decoding (rtmp-protocol.md 6.2), with string, object and traits reference tables.

:func:`decode` and :func:`encode` work on one RTMP message: reference tables live for one call.
:class:`Decoder` and :class:`Encoder` are also used by :mod:`flashstream.rtmp.amf0` for its
``11`` (AVM+) values, which share one set of tables per message.

The encoder emits string and traits references where values repeat, as Flash does, and object
references when the same Python object (by identity) is written twice, which also makes cyclic
structures encodable.  Python values are mapped as :mod:`flashstream.rtmp.amf_types` describes.
An AMF3 array decodes as a ``list`` when it has no associative part, else as an
:class:`~flashstream.rtmp.amf_types.ECMAArray` whose dense elements are keyed ``"0"``, ``"1"``...
"""

from __future__ import annotations

import datetime
import struct
from typing import Final, TypeVar

import attrs

from flashstream.rtmp.amf_types import (
    DEFAULT_LIMITS,
    UNDEFINED,
    XML,
    ArrayCollection,
    ByteArray,
    Dictionary,
    ECMAArray,
    ObjectProxy,
    Reader,
    TypedObject,
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

__all__ = ["Decoder", "Encoder", "decode", "encode"]

#: Range of the AMF3 integer type (signed 29 bits); other ints are sent as doubles.
INT_MIN: Final = -(2**28)
INT_MAX: Final = 2**28 - 1
_U29_MAX: Final = 2**29 - 1

ARRAY_COLLECTION: Final = "flex.messaging.io.ArrayCollection"
OBJECT_PROXY: Final = "flex.messaging.io.ObjectProxy"

_S32: Final = struct.Struct(">i")
_U32: Final = struct.Struct(">I")

_T = TypeVar("_T")

#: Object table placeholder for an immutable value whose members are still being decoded.
_PENDING: Final = object()


@attrs.frozen
class _Traits:
    class_name: str
    sealed: tuple[str, ...]
    dynamic: bool
    externalizable: bool


_ANONYMOUS: Final = _Traits("", (), dynamic=True, externalizable=False)


class Decoder:
    """Reads AMF3 values from a :class:`Reader`, keeping the message's reference tables."""

    def __init__(self, reader: Reader, limits: Limits) -> None:
        self._reader = reader
        self._limits = limits
        self._strings: list[str] = []
        self._objects: list[object] = []
        self._traits: list[_Traits] = []

    def read_value(self, depth: int = 0) -> object:
        """Decode one value; ``depth`` is the number of containers around it."""
        marker = self._reader.u8()
        if marker <= 0x03:
            return (UNDEFINED, None, False, True)[marker]
        if marker == 0x04:
            value = self._read_u29()
            return value - 0x20000000 if value & 0x10000000 else value
        if marker == 0x05:
            return self._reader.double()
        if marker == 0x06:
            return self._read_string()
        if marker in (0x07, 0x0B, 0x0C):
            return self._read_blob(marker)
        if marker == 0x08:
            return self._read_date()
        if marker == 0x09:
            return self._read_array(depth)
        if marker == 0x0A:
            return self._read_object(depth)
        if 0x0D <= marker <= 0x10:
            return self._read_vector(VectorKind(marker), depth)
        if marker == 0x11:
            return self._read_dictionary(depth)
        raise AMFError(f"unknown AMF3 marker 0x{marker:02x}")

    def _read_u29(self) -> int:
        value = 0
        for _ in range(3):
            byte = self._reader.u8()
            if byte < 0x80:
                return (value << 7) | byte
            value = (value << 7) | (byte & 0x7F)
        return (value << 8) | self._reader.u8()

    def _add(self, table: list[_T], item: _T) -> int:
        check_items(len(table) + 1, self._limits)
        table.append(item)
        return len(table) - 1

    def _object_ref(self, header: int) -> object:
        index = header >> 1
        if index >= len(self._objects):
            raise AMFError(f"AMF3 object reference {index} out of range")
        value = self._objects[index]
        if value is _PENDING:
            raise AMFError(f"AMF3 object reference {index} to a value still being decoded")
        return value

    def _read_string(self) -> str:
        header = self._read_u29()
        if not header & 1:
            index = header >> 1
            if index >= len(self._strings):
                raise AMFError(f"AMF3 string reference {index} out of range")
            return self._strings[index]
        if header == 1:
            return ""
        text = self._reader.utf8(header >> 1)
        self._add(self._strings, text)
        return text

    def _read_blob(self, marker: int) -> object:
        header = self._read_u29()
        if not header & 1:
            return self._object_ref(header)
        value: object
        if marker == 0x0C:
            value = ByteArray(self._reader.read(header >> 1))
        elif marker == 0x07:
            value = XMLDocument(self._reader.utf8(header >> 1))
        else:
            value = XML(self._reader.utf8(header >> 1))
        self._add(self._objects, value)
        return value

    def _read_date(self) -> object:
        header = self._read_u29()
        if not header & 1:
            return self._object_ref(header)
        value = date_from_ms(self._reader.double())
        self._add(self._objects, value)
        return value

    def _read_array(self, depth: int) -> object:
        header = self._read_u29()
        if not header & 1:
            return self._object_ref(header)
        dense_count = header >> 1
        check_items(dense_count, self._limits)
        depth = check_depth(depth, self._limits)
        key = self._read_string()
        if not key:
            dense: list[object] = []
            self._add(self._objects, dense)
            for _ in range(dense_count):
                dense.append(self.read_value(depth))
            return dense
        mixed = ECMAArray()
        self._add(self._objects, mixed)
        count = dense_count
        while key:
            count += 1
            check_items(count, self._limits)
            mixed[key] = self.read_value(depth)
            key = self._read_string()
        for index in range(dense_count):
            mixed[str(index)] = self.read_value(depth)
        return mixed

    def _read_traits(self, header: int) -> _Traits:
        if not header & 2:
            index = header >> 2
            if index >= len(self._traits):
                raise AMFError(f"AMF3 traits reference {index} out of range")
            return self._traits[index]
        if header & 4:
            traits = _Traits(self._read_string(), (), dynamic=False, externalizable=True)
        else:
            sealed_count = header >> 4
            check_items(sealed_count, self._limits)
            class_name = self._read_string()
            sealed = tuple(self._read_string() for _ in range(sealed_count))
            traits = _Traits(class_name, sealed, dynamic=bool(header & 8), externalizable=False)
        self._add(self._traits, traits)
        return traits

    def _read_object(self, depth: int) -> object:
        header = self._read_u29()
        if not header & 1:
            return self._object_ref(header)
        traits = self._read_traits(header)
        depth = check_depth(depth, self._limits)
        if traits.externalizable:
            return self._read_externalizable(traits.class_name, depth)
        attributes: dict[str, object] = {}
        result = TypedObject(traits.class_name, attributes) if traits.class_name else attributes
        self._add(self._objects, result)
        for name in traits.sealed:
            attributes[name] = self.read_value(depth)
        if traits.dynamic:
            count = len(traits.sealed)
            while key := self._read_string():
                count += 1
                check_items(count, self._limits)
                attributes[key] = self.read_value(depth)
        return result

    def _read_externalizable(self, class_name: str, depth: int) -> object:
        if class_name not in (ARRAY_COLLECTION, OBJECT_PROXY):
            raise AMFError(f"unsupported AMF3 externalizable class {class_name!r}")
        index = self._add(self._objects, _PENDING)
        inner = self.read_value(depth)
        value = ArrayCollection(inner) if class_name == ARRAY_COLLECTION else ObjectProxy(inner)
        self._objects[index] = value
        return value

    def _read_vector(self, kind: VectorKind, depth: int) -> object:
        header = self._read_u29()
        if not header & 1:
            return self._object_ref(header)
        count = header >> 1
        check_items(count, self._limits)
        fixed = self._reader.u8() != 0
        reader = self._reader
        items: tuple[object, ...]
        if kind is VectorKind.OBJECT:
            type_name = self._read_string()
            depth = check_depth(depth, self._limits)
            index = self._add(self._objects, _PENDING)
            items = tuple(self.read_value(depth) for _ in range(count))
            vector = Vector(kind, items, fixed, type_name)
            self._objects[index] = vector
            return vector
        if kind is VectorKind.INT:
            items = tuple(reader.s32() for _ in range(count))
        elif kind is VectorKind.UINT:
            items = tuple(reader.u32() for _ in range(count))
        else:
            items = tuple(reader.double() for _ in range(count))
        vector = Vector(kind, items, fixed)
        self._add(self._objects, vector)
        return vector

    def _read_dictionary(self, depth: int) -> object:
        header = self._read_u29()
        if not header & 1:
            return self._object_ref(header)
        count = header >> 1
        check_items(count, self._limits)
        weak_keys = self._reader.u8() != 0
        depth = check_depth(depth, self._limits)
        index = self._add(self._objects, _PENDING)
        items = tuple((self.read_value(depth), self.read_value(depth)) for _ in range(count))
        value = Dictionary(items, weak_keys)
        self._objects[index] = value
        return value


def _u29(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:
        return bytes((value >> 7 | 0x80, value & 0x7F))
    if value < 0x200000:
        return bytes((value >> 14 | 0x80, value >> 7 & 0x7F | 0x80, value & 0x7F))
    if value <= _U29_MAX:
        return bytes(
            (value >> 22 | 0x80, value >> 15 & 0x7F | 0x80, value >> 8 & 0x7F | 0x80, value & 0xFF)
        )
    raise LocalProtocolError(f"AMF3 length or count too large: {value}")


def _fixed_int(packer: struct.Struct, value: object) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LocalProtocolError(f"not an integer: {value!r}")
    try:
        return packer.pack(value)
    except struct.error:
        raise LocalProtocolError(f"integer out of range for its vector: {value!r}") from None


class Encoder:
    """Appends AMF3 values to ``out``, keeping one message's reference tables."""

    def __init__(self, out: bytearray) -> None:
        self._out = out
        self._strings: dict[str, int] = {}
        self._traits: dict[_Traits, int] = {}
        self._objects: dict[int, int] = {}
        #: Keeps every referenced object alive so that no id is reused within the message.
        self._kept: list[object] = []

    def write_value(self, value: object) -> None:
        """Append the encoding of ``value``; unencodable values raise LocalProtocolError."""
        out = self._out
        if value is None:
            out.append(0x01)
        elif value is UNDEFINED:
            out.append(0x00)
        elif isinstance(value, bool):
            out.append(0x03 if value else 0x02)
        elif isinstance(value, int) and INT_MIN <= value <= INT_MAX:
            out.append(0x04)
            out += _u29(value & _U29_MAX)
        elif isinstance(value, (int, float)):
            out.append(0x05)
            out += encode_double(value)
        elif isinstance(value, (XMLDocument, XML)):
            if not self._start(0x07 if isinstance(value, XMLDocument) else 0x0B, value):
                self._write_blob(encode_utf8(value))
        elif isinstance(value, str):
            out.append(0x06)
            self.write_string(value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            if not self._start(0x0C, value):
                self._write_blob(bytes(value))
        elif isinstance(value, datetime.datetime):
            if not self._start(0x08, value):
                out.append(0x01)
                out += encode_double(ms_from_date(value))
        elif isinstance(value, ECMAArray):
            if not self._start(0x09, value):
                out.append(0x01)
                self._write_members(value)
        elif isinstance(value, dict):
            if not self._start(0x0A, value):
                self._write_traits(_ANONYMOUS)
                self._write_members(value)
        elif isinstance(value, (list, tuple)):
            if not self._start(0x09, value):
                out += _u29(len(value) << 1 | 1)
                out.append(0x01)
                for item in value:
                    self.write_value(item)
        else:
            self._write_other(value)

    def _write_other(self, value: object) -> None:
        if isinstance(value, TypedObject):
            if not value.class_name:
                raise LocalProtocolError("a TypedObject needs a class name (use a dict)")
            if not self._start(0x0A, value):
                names = tuple(value.attributes)
                for name in names:
                    self._check_key(name)
                self._write_traits(
                    _Traits(value.class_name, names, dynamic=False, externalizable=False)
                )
                for item in value.attributes.values():
                    self.write_value(item)
        elif isinstance(value, ArrayCollection):
            self._write_externalizable(ARRAY_COLLECTION, value, value.source)
        elif isinstance(value, ObjectProxy):
            self._write_externalizable(OBJECT_PROXY, value, value.value)
        elif isinstance(value, Vector):
            if not self._start(int(value.kind), value):
                self._write_vector(value)
        elif isinstance(value, Dictionary):
            if not self._start(0x11, value):
                self._out += _u29(len(value.items) << 1 | 1)
                self._out.append(0x01 if value.weak_keys else 0x00)
                for key, item in value.items:
                    self.write_value(key)
                    self.write_value(item)
        else:
            raise LocalProtocolError(f"cannot encode {type(value).__name__} in AMF3")

    def _write_externalizable(self, class_name: str, value: object, inner: object) -> None:
        if not self._start(0x0A, value):
            self._write_traits(_Traits(class_name, (), dynamic=False, externalizable=True))
            self.write_value(inner)

    def write_string(self, text: str) -> None:
        """Append ``text`` as a UTF-8-vr (no marker), using the string table."""
        if not text:
            self._out.append(0x01)
            return
        index = self._strings.get(text)
        if index is not None:
            self._out += _u29(index << 1)
            return
        self._strings[text] = len(self._strings)
        self._write_blob(encode_utf8(text))

    def _write_blob(self, data: bytes) -> None:
        self._out += _u29(len(data) << 1 | 1)
        self._out += data

    def _start(self, marker: int, value: object) -> bool:
        """Write ``marker``, then a reference if ``value`` was written before (returns True)."""
        self._out.append(marker)
        index = self._objects.get(id(value))
        if index is not None:
            self._out += _u29(index << 1)
            return True
        self._objects[id(value)] = len(self._objects)
        self._kept.append(value)
        return False

    def _write_traits(self, traits: _Traits) -> None:
        index = self._traits.get(traits)
        if index is not None:
            self._out += _u29(index << 2 | 0x01)
            return
        self._traits[traits] = len(self._traits)
        header = 0x03 | traits.externalizable << 2 | traits.dynamic << 3 | len(traits.sealed) << 4
        self._out += _u29(header)
        self.write_string(traits.class_name)
        for name in traits.sealed:
            self.write_string(name)

    @staticmethod
    def _check_key(key: object) -> None:
        if not isinstance(key, str) or not key:
            raise LocalProtocolError(f"AMF3 member names must be non-empty strings: {key!r}")

    def _write_members(self, members: dict[str, object]) -> None:
        for key, item in members.items():
            self._check_key(key)
            self.write_string(key)
            self.write_value(item)
        self._out.append(0x01)

    def _write_vector(self, vector: Vector) -> None:
        out = self._out
        out += _u29(len(vector.items) << 1 | 1)
        out.append(0x01 if vector.fixed else 0x00)
        if vector.kind is VectorKind.OBJECT:
            self.write_string(vector.type_name)
            for item in vector.items:
                self.write_value(item)
        elif vector.kind is VectorKind.DOUBLE:
            for item in vector.items:
                out += encode_double(item)
        else:
            packer = _S32 if vector.kind is VectorKind.INT else _U32
            for item in vector.items:
                out += _fixed_int(packer, item)


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> list[object]:
    """Decode every AMF3 value in ``data`` (one message: one set of reference tables)."""
    reader = Reader(bytes(data))
    decoder = Decoder(reader, limits)
    values: list[object] = []
    with convert_decode_errors():
        while reader.remaining:
            check_items(len(values) + 1, limits)
            values.append(decoder.read_value())
    return values


def encode(*values: object) -> bytes:
    """Encode ``values`` one after another, sharing reference tables."""
    out = bytearray()
    encoder = Encoder(out)
    with convert_encode_errors():
        for value in values:
            encoder.write_value(value)
    return bytes(out)
