# -*- test-case-name: tests.rtmp.test_amf0 -*-
"""
Python values shared by the AMF0 and AMF3 codecs, and the byte reader and helpers both use.

Mapping (both codecs):

=====================================  ==========================================================
Python                                 AMF
=====================================  ==========================================================
``None`` / :data:`UNDEFINED`           null / undefined
``bool``                               Boolean (false/true in AMF3)
``int`` / ``float``                    Number (AMF0, decodes as float); AMF3 integer for ints in
                                       the signed 29-bit range, else double
``str``                                String (AMF0 long string above 65535 UTF-8 bytes)
``dict[str, object]``                  anonymous Object
:class:`ECMAArray`                     AMF0 ECMA array; AMF3 associative array
``list`` / ``tuple``                   strict (dense) array; decodes as ``list``
aware ``datetime.datetime``            Date (decodes as UTC)
:class:`TypedObject`                   typed object
:class:`XMLDocument`                   XML document (AMF0 ``0F``, AMF3 ``07``)
:class:`XML`                           AMF3 E4X XML (``0B``); AMF0 has only XML documents
:class:`ByteArray`, ``bytes``          AMF3 ByteArray (decodes as :class:`ByteArray`)
:class:`Vector`, :class:`Dictionary`   AMF3 vectors and dictionaries
:class:`ArrayCollection`,              Flex externalizable wrappers (AMF3)
:class:`ObjectProxy`
:class:`AVMPlus`                       AMF0 ``11``: switch to AMF3 for the wrapped value
=====================================  ==========================================================

Strings are decoded with ``surrogateescape`` (and encoded the same way), so bytes that are not
valid UTF-8 (old encoders' metadata) survive a decode/encode round trip unchanged.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import struct
from collections.abc import Iterator
from typing import Final

import attrs

from flashstream.rtmp.errors import AMFError, LimitExceeded, LocalProtocolError
from flashstream.rtmp.limits import Limits

__all__ = [
    "UNDEFINED",
    "AVMPlus",
    "ArrayCollection",
    "ByteArray",
    "Dictionary",
    "ECMAArray",
    "ObjectProxy",
    "Reader",
    "TypedObject",
    "Undefined",
    "Vector",
    "VectorKind",
    "XML",
    "XMLDocument",
]


class Undefined(enum.Enum):
    """The type of :data:`UNDEFINED` (an enum, so it stays a singleton when copied or pickled)."""

    UNDEFINED = "undefined"

    def __repr__(self) -> str:
        return "UNDEFINED"


#: AMF ``undefined`` (AMF0 ``06``, AMF3 ``00``); ``None`` is AMF null.
UNDEFINED: Final = Undefined.UNDEFINED


class ECMAArray(dict[str, object]):
    """An AMF0 ECMA array (``08``), e.g. the ``onMetaData`` body; an AMF3 associative array."""

    def __repr__(self) -> str:
        return f"ECMAArray({dict.__repr__(self)})"


class XMLDocument(str):
    """An XML document (AMF0 ``0F``, AMF3 ``07``), kept as its text."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"XMLDocument({str.__repr__(self)})"


class XML(str):
    """An AMF3 E4X ``XML`` value (``0B``), kept as its text."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"XML({str.__repr__(self)})"


class ByteArray(bytes):
    """An AMF3 ``ByteArray`` (``0C``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ByteArray({bytes.__repr__(self)})"


@attrs.frozen
class TypedObject:
    """An object of a named ActionScript class (AMF0 ``10``, AMF3 object with a class name)."""

    class_name: str
    attributes: dict[str, object]


@attrs.frozen
class AVMPlus:
    """Encode ``value`` in AMF3 inside an AMF0 stream (the ``11`` marker).

    Only an encoding instruction: decoding returns the AMF3 value itself, unwrapped.
    """

    value: object


class VectorKind(enum.IntEnum):
    """The four AMF3 vector types; the values are their markers."""

    INT = 0x0D
    UINT = 0x0E
    DOUBLE = 0x0F
    OBJECT = 0x10


@attrs.frozen
class Vector:
    """An AMF3 ``Vector.<int>``, ``Vector.<uint>``, ``Vector.<Number>`` or ``Vector.<T>``."""

    kind: VectorKind = attrs.field(converter=VectorKind)
    items: tuple[object, ...]
    fixed: bool = False
    #: Element class name, for :attr:`VectorKind.OBJECT` only (``"*"`` = any type).
    type_name: str = "*"


@attrs.frozen
class Dictionary:
    """An AMF3 ``flash.utils.Dictionary`` (``11``): keys may be any value, hence pairs."""

    items: tuple[tuple[object, object], ...]
    weak_keys: bool = False


@attrs.frozen
class ArrayCollection:
    """Flex ``flex.messaging.io.ArrayCollection``: an externalizable wrapper of one array."""

    source: object


@attrs.frozen
class ObjectProxy:
    """Flex ``flex.messaging.io.ObjectProxy``: an externalizable wrapper of one object."""

    value: object


_U16: Final = struct.Struct(">H")
_S16: Final = struct.Struct(">h")
_U32: Final = struct.Struct(">I")
_S32: Final = struct.Struct(">i")
_DOUBLE: Final = struct.Struct(">d")


class Reader:
    """A bounds-checked cursor over one message payload; running short raises :class:`AMFError`."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        """Bytes left after the cursor."""
        return len(self.data) - self.pos

    def read(self, n: int) -> bytes:
        """The next ``n`` bytes."""
        end = self.pos + n
        if end > len(self.data):
            raise AMFError(f"truncated AMF data: need {n} bytes at offset {self.pos}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self) -> int:
        """The next byte."""
        if self.pos >= len(self.data):
            raise AMFError(f"truncated AMF data: need 1 byte at offset {self.pos}")
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        """A big-endian unsigned 16-bit integer."""
        return int(_U16.unpack(self.read(2))[0])

    def s16(self) -> int:
        """A big-endian signed 16-bit integer."""
        return int(_S16.unpack(self.read(2))[0])

    def u32(self) -> int:
        """A big-endian unsigned 32-bit integer."""
        return int(_U32.unpack(self.read(4))[0])

    def s32(self) -> int:
        """A big-endian signed 32-bit integer."""
        return int(_S32.unpack(self.read(4))[0])

    def double(self) -> float:
        """A big-endian IEEE-754 double."""
        return float(_DOUBLE.unpack(self.read(8))[0])

    def utf8(self, n: int) -> str:
        """The next ``n`` bytes as text (see the module docstring for invalid UTF-8)."""
        return self.read(n).decode("utf-8", "surrogateescape")


def encode_double(value: object) -> bytes:
    """The IEEE-754 big-endian encoding of the int or float ``value``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LocalProtocolError(f"not a number: {value!r}")
    try:
        return _DOUBLE.pack(value)
    except (OverflowError, struct.error):
        raise LocalProtocolError(f"number too large for a double: {value!r}") from None


def encode_utf8(text: str) -> bytes:
    """``text`` as UTF-8, the inverse of :meth:`Reader.utf8`."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as error:
        raise LocalProtocolError(f"string is not encodable as UTF-8: {error}") from None


#: The default bounds of :func:`~flashstream.rtmp.amf0.decode` and friends (``Limits()``).
DEFAULT_LIMITS: Final = Limits()

_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MILLISECOND: Final = datetime.timedelta(milliseconds=1)


def date_from_ms(ms: float) -> datetime.datetime:
    """The UTC datetime ``ms`` milliseconds after the Unix epoch."""
    try:
        return _EPOCH + datetime.timedelta(milliseconds=ms)
    except (OverflowError, ValueError):
        raise AMFError(f"date out of range: {ms!r} ms") from None


def ms_from_date(value: datetime.datetime) -> float:
    """Milliseconds from the Unix epoch to the timezone-aware ``value``."""
    if value.utcoffset() is None:
        raise LocalProtocolError(f"AMF dates must be timezone-aware: {value!r}")
    return (value - _EPOCH) / _MILLISECOND


def check_depth(depth: int, limits: Limits) -> int:
    """``depth + 1``, the nesting level of a container entered at ``depth``, if allowed."""
    depth += 1
    if depth > limits.max_amf_depth:
        raise LimitExceeded("max_amf_depth", depth, limits.max_amf_depth)
    return depth


def check_items(count: int, limits: Limits) -> None:
    """Refuse a container or reference table of ``count`` entries beyond the limit."""
    if count > limits.max_amf_items:
        raise LimitExceeded("max_amf_items", count, limits.max_amf_items)


@contextlib.contextmanager
def convert_decode_errors() -> Iterator[None]:
    """Turn stray Python errors raised while decoding into :class:`AMFError`."""
    try:
        yield
    except (RecursionError, struct.error, ValueError, IndexError, OverflowError) as error:
        raise AMFError(f"invalid AMF data: {error}") from None


@contextlib.contextmanager
def convert_encode_errors() -> Iterator[None]:
    """Turn the RecursionError of a too deeply nested value into :class:`LocalProtocolError`."""
    try:
        yield
    except RecursionError:
        raise LocalProtocolError("value nested too deeply to encode") from None
