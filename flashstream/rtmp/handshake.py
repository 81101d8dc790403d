# -*- test-case-name: tests.rtmp.test_handshake -*-
"""
The server side of the RTMP handshake (C0 C1 C2 in, S0 S1 S2 out).

Two answers are given, chosen by the client's C1:

* **simple** (C1 version bytes all zero, or a version without a valid digest,
  as nginx-rtmp does): S1 is ``time, 0, random`` and S2 is an exact copy of C1;
* **digest** (the "complex" Flash Player 9+ handshake): C1 carries an
  HMAC-SHA256 digest at an offset given by one of two schemes; S1 answers with
  a server digest in the *same* scheme and S2 carries a signature keyed on the
  C1 digest.  ffmpeg, librtmp with SWF verification and Flash check both.

C2 is read but never rejected; for the digest handshake its signature is
checked and reported in :attr:`ServerHandshake.c2_valid`.

**RTMPE** (C0 = 6, 8 or 9; :mod:`flashstream.rtmp.rtmpe`) is the digest
handshake plus a Diffie-Hellman exchange: the client's public key is read at
the key offset of its digest scheme, ours is written at the same scheme's key
offset in S1 before the digest, S0 echoes the client's type, and for types 8
and 9 the S2 signature (and the expected C2 signature) is wrapped in XTEA or
Blowfish.  :attr:`ServerHandshake.ciphers` then holds the RC4 pair the
connection runs every later byte through (:data:`~flashstream.rtmp.rtmpe.PLAIN`
for plain RTMP).  An RTMPE C1 without a valid digest, or with an invalid
public key, raises :class:`HandshakeError`.

Reference: ``rtmp-protocol.md`` sections 2 and 3.
"""

from __future__ import annotations

import enum
import hmac
import struct
from collections.abc import Callable

from flashstream.rtmp.errors import HandshakeError, LocalProtocolError
from flashstream.rtmp.rtmpe import (
    PLAIN,
    Ciphers,
    server_ciphers,
    server_key_exchange,
    wrap_signature,
)

__all__ = [
    "COMMON_KEY",
    "DIGEST_SIZE",
    "DH_KEY_SIZE",
    "FMS_KEY",
    "FP_KEY",
    "PACKET_SIZE",
    "RTMP_PLAIN",
    "RTMPE_TYPES",
    "SERVER_VERSION",
    "ServerHandshake",
    "build_handshake_packet",
    "c2_signature",
    "compute_digest",
    "dh_key_offset",
    "digest_offset",
    "find_digest",
    "hmac_sha256",
    "s2_signature",
]

#: Size of C1, C2, S1 and S2.
PACKET_SIZE = 1536
#: Size of an HMAC-SHA256 digest, and so of every digest and signature here.
DIGEST_SIZE = 32
#: Size of an RTMPE Diffie-Hellman public key inside C1/S1.
DH_KEY_SIZE = 128
#: C0/S0 for plain RTMP.
RTMP_PLAIN = 0x03
#: C0 values announcing RTMPE (plain, XTEA- and Blowfish-wrapped signatures).
RTMPE_TYPES = frozenset({0x06, 0x08, 0x09})
#: The version S1 announces in a digest handshake: FMS 4.5.0.1.  ffmpeg only
#: verifies S1 when the first byte is >= 3.
SERVER_VERSION = bytes([4, 5, 0, 1])

#: The 32 bytes both keys end with.
COMMON_KEY = bytes.fromhex("F0EEC24A8068BEE82E00D0D1029E7E576EEC5D2D29806FAB93B8E636CFEB31AE")
#: "Genuine Adobe Flash Media Server 001" + COMMON_KEY (68 bytes).
FMS_KEY = b"Genuine Adobe Flash Media Server 001" + COMMON_KEY
#: "Genuine Adobe Flash Player 001" + COMMON_KEY (62 bytes).
FP_KEY = b"Genuine Adobe Flash Player 001" + COMMON_KEY
#: Only the text part keys the C1 and S1 digests.
_FMS_TEXT_KEY = FMS_KEY[:36]
_FP_TEXT_KEY = FP_KEY[:30]

_SIGNED_SIZE = PACKET_SIZE - DIGEST_SIZE  # 1504: what digests and signatures cover

# scheme -> (base of the 4 bytes summed, modulus, first offset)
_DIGEST_SCHEMES = {1: (8, 728, 12), 2: (772, 728, 776)}
_DH_KEY_SCHEMES = {1: (1532, 632, 772), 2: (768, 632, 8)}
#: The order verifiers (ffmpeg, nginx) try the schemes in.
_SCHEME_SEARCH_ORDER = (2, 1)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """Return HMAC-SHA256 of ``message`` under ``key``."""
    return hmac.digest(key, message, "sha256")


def _offset(packet: bytes, scheme: int, table: dict[int, tuple[int, int, int]]) -> int:
    if len(packet) != PACKET_SIZE:
        raise LocalProtocolError(f"handshake packet must be {PACKET_SIZE} bytes, not {len(packet)}")
    try:
        base, modulus, first = table[scheme]
    except KeyError:
        raise LocalProtocolError(f"unknown digest scheme {scheme!r} (expected 1 or 2)") from None
    return sum(packet[base : base + 4]) % modulus + first


def digest_offset(packet: bytes, scheme: int) -> int:
    """
    Where the 32-byte digest sits in a C1/S1 ``packet`` under ``scheme``.

    Scheme 1 (digest first) gives 12..739, scheme 2 (DH key first) 776..1503.
    """
    return _offset(packet, scheme, _DIGEST_SCHEMES)


def dh_key_offset(packet: bytes, scheme: int) -> int:
    """
    Where the 128-byte RTMPE public key sits in a C1/S1 ``packet``.

    Scheme 1 gives 772..1403, scheme 2 gives 8..639; neither range overlaps the
    scheme's digest area or the bytes that choose either offset.
    """
    return _offset(packet, scheme, _DH_KEY_SCHEMES)


def compute_digest(packet: bytes, offset: int, key: bytes) -> bytes:
    """HMAC-SHA256 of ``packet`` without the 32 digest bytes at ``offset``."""
    if len(packet) != PACKET_SIZE:
        raise LocalProtocolError(f"handshake packet must be {PACKET_SIZE} bytes, not {len(packet)}")
    if not 0 <= offset <= _SIGNED_SIZE:
        raise LocalProtocolError(f"digest offset {offset} outside the packet")
    return hmac_sha256(key, bytes(packet[:offset]) + bytes(packet[offset + DIGEST_SIZE :]))


def find_digest(packet: bytes, key: bytes) -> tuple[int, bytes] | None:
    """
    Validate the digest of a C1/S1 ``packet`` under ``key``.

    Scheme 2 is tried before scheme 1, as ffmpeg and nginx do.  Returns
    ``(scheme, digest)`` for the first scheme whose stored digest matches, or
    ``None``.
    """
    for scheme in _SCHEME_SEARCH_ORDER:
        offset = digest_offset(packet, scheme)
        stored = bytes(packet[offset : offset + DIGEST_SIZE])
        if hmac.compare_digest(compute_digest(packet, offset, key), stored):
            return scheme, stored
    return None


def s2_signature(c1_digest: bytes, s2: bytes, rtmp_type: int = RTMP_PLAIN) -> bytes:
    """
    The signature closing S2: keyed on the client's C1 digest, over S2[0:1504].

    For RTMPE types 8 and 9 (``rtmp_type``, the S0 byte) it is wrapped as
    :func:`~flashstream.rtmp.rtmpe.wrap_signature` describes.
    """
    temp = hmac_sha256(FMS_KEY, c1_digest)
    return wrap_signature(rtmp_type, temp, hmac_sha256(temp, bytes(s2[:_SIGNED_SIZE])))


def c2_signature(s1_digest: bytes, c2: bytes, rtmp_type: int = RTMP_PLAIN) -> bytes:
    """The signature closing C2: keyed on the server's S1 digest, over C2[0:1504]."""
    temp = hmac_sha256(FP_KEY, s1_digest)
    return wrap_signature(rtmp_type, temp, hmac_sha256(temp, bytes(c2[:_SIGNED_SIZE])))


def build_handshake_packet(
    *,
    time_ms: int,
    version: bytes,
    random_part: bytes,
    scheme: int | None = None,
    digest_key: bytes | None = None,
    dh_public_key: bytes | None = None,
) -> bytes:
    """
    Assemble a C1/S1: ``time (u32) + version (4 bytes) + 1528 random bytes``.

    With a ``scheme`` (and its ``digest_key``), an optional RTMPE
    ``dh_public_key`` (128 bytes) is written at the scheme's key offset first,
    then the digest at the scheme's digest offset.  Without one the packet is
    returned as is (the simple handshake).
    """
    if len(version) != 4 or len(random_part) != PACKET_SIZE - 8:
        raise LocalProtocolError("a handshake packet needs a 4-byte version and 1528 random bytes")
    packet = bytearray(struct.pack(">I", time_ms & 0xFFFFFFFF) + version + random_part)
    if scheme is None or digest_key is None:
        if scheme is not None or digest_key is not None or dh_public_key is not None:
            raise LocalProtocolError("a digest scheme, its key and a DH key go together")
        return bytes(packet)
    if dh_public_key is not None:
        if len(dh_public_key) != DH_KEY_SIZE:
            raise LocalProtocolError(f"DH public key must be {DH_KEY_SIZE} bytes")
        key_at = dh_key_offset(bytes(packet), scheme)
        packet[key_at : key_at + DH_KEY_SIZE] = dh_public_key
    unsigned = bytes(packet)
    offset = digest_offset(unsigned, scheme)
    packet[offset : offset + DIGEST_SIZE] = compute_digest(unsigned, offset, digest_key)
    return bytes(packet)


class _State(enum.Enum):
    C0C1 = enum.auto()
    C2 = enum.auto()
    COMPLETE = enum.auto()
    FAILED = enum.auto()


class ServerHandshake:
    """
    Sans-IO server handshake: feed peer bytes, drain bytes to send.

    ``random_bytes(n)`` supplies the random parts of S1 and S2; ``time_ms`` is
    written into S1's time field.
    """

    def __init__(self, *, random_bytes: Callable[[int], bytes], time_ms: int = 0) -> None:
        self._random_bytes = random_bytes
        self._time_ms = time_ms
        self._state = _State.C0C1
        self._buffer = bytearray()  # C0+C1, then C2: never more than 1537 bytes
        self._outgoing = bytearray()
        self._s1_digest: bytes | None = None
        self._client_version: int | None = None
        self._client_flash_version: bytes | None = None
        self._scheme: int | None = None
        self._c2_valid: bool | None = None
        self._ciphers = PLAIN

    @property
    def complete(self) -> bool:
        """Whether C2 has been received in full."""
        return self._state is _State.COMPLETE

    @property
    def client_version(self) -> int | None:
        """The client's C0 byte, once received."""
        return self._client_version

    @property
    def client_flash_version(self) -> bytes | None:
        """C1[4:8], the client's (Flash Player) version, once C1 is in."""
        return self._client_flash_version

    @property
    def scheme(self) -> int | None:
        """Digest scheme of C1 and so of S1 (1 or 2); ``None`` for the simple handshake."""
        return self._scheme

    @property
    def c2_valid(self) -> bool | None:
        """For a digest handshake, whether C2's signature matched; else ``None``."""
        return self._c2_valid

    @property
    def encrypted(self) -> bool:
        """Whether the client asked for RTMPE (C0 = 6, 8 or 9)."""
        return self._client_version in RTMPE_TYPES

    @property
    def ciphers(self) -> Ciphers:
        """
        The byte transforms for everything after the handshake.

        RC4 in both directions for RTMPE (ready once S0+S1+S2 are queued), the
        identity otherwise.  Input after C2 goes through ``decrypt``, output
        after S2 through ``encrypt``.
        """
        return self._ciphers

    def data_to_send(self) -> bytes:
        """Drain the bytes to send (S0+S1+S2, once C0+C1 are in)."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def receive_data(self, data: bytes) -> bytes | None:
        """
        Feed bytes from the peer.

        Returns ``None`` while the handshake is incomplete.  The call that
        completes C2 returns whatever followed C2 in ``data`` (possibly
        ``b""``): those bytes belong to the chunk stream (still encrypted, for
        RTMPE).  Feeding after completion (or after a failure) raises
        :class:`LocalProtocolError`; an unsupported C0 or an unusable RTMPE
        C1 raises :class:`HandshakeError`.
        """
        if self._state is _State.COMPLETE:
            raise LocalProtocolError(
                "handshake already complete: later bytes belong to the chunk stream"
            )
        if self._state is _State.FAILED:
            raise LocalProtocolError("handshake already failed")
        data = bytes(data)
        if self._state is _State.C0C1:
            if data and self._client_version is None:
                self._check_c0(data[0])
            data = self._fill(data, 1 + PACKET_SIZE)
            if len(self._buffer) < 1 + PACKET_SIZE:
                return None
            c1 = bytes(self._buffer[1:])
            self._buffer.clear()
            try:
                self._answer(c1)
            except HandshakeError:
                self._state = _State.FAILED
                raise
            self._state = _State.C2
        data = self._fill(data, PACKET_SIZE)
        if len(self._buffer) < PACKET_SIZE:
            return None
        self._check_c2(bytes(self._buffer))
        self._buffer.clear()
        self._state = _State.COMPLETE
        return data

    def _fill(self, data: bytes, size: int) -> bytes:
        """Move bytes from ``data`` into the buffer until it holds ``size``; return the rest."""
        take = size - len(self._buffer)
        self._buffer += data[:take]
        return data[take:]

    def _random(self, size: int) -> bytes:
        data = bytes(self._random_bytes(size))
        if len(data) != size:
            raise LocalProtocolError(f"random_bytes({size}) returned {len(data)} bytes")
        return data

    def _check_c0(self, c0: int) -> None:
        self._client_version = c0
        if c0 == RTMP_PLAIN or c0 in RTMPE_TYPES:
            return
        self._state = _State.FAILED
        raise HandshakeError(f"not RTMP: first byte 0x{c0:02x}")

    def _answer(self, c1: bytes) -> None:
        """Queue S0+S1+S2 for ``c1``, in the client's digest scheme if it has one."""
        self._client_flash_version = c1[4:8]
        found = find_digest(c1, _FP_TEXT_KEY) if any(c1[4:8]) else None
        rtmp_type = self._client_version
        assert rtmp_type is not None
        if found is None and self.encrypted:
            raise HandshakeError(
                f"RTMPE client (C0=0x{rtmp_type:02x}) sent a C1 without a valid digest"
            )
        if found is None:
            s1 = build_handshake_packet(
                time_ms=self._time_ms, version=bytes(4), random_part=self._random(PACKET_SIZE - 8)
            )
            s2 = c1
        else:
            self._scheme, c1_digest = found
            random_part = self._random(PACKET_SIZE - 8)
            dh_public_key = None
            if self.encrypted:
                dh_public_key = self._key_exchange(c1, self._scheme)
            s1 = build_handshake_packet(
                time_ms=self._time_ms,
                version=SERVER_VERSION,
                random_part=random_part,
                scheme=self._scheme,
                digest_key=_FMS_TEXT_KEY,
                dh_public_key=dh_public_key,
            )
            s1_offset = digest_offset(s1, self._scheme)
            self._s1_digest = s1[s1_offset : s1_offset + DIGEST_SIZE]
            s2_random = self._random(_SIGNED_SIZE)
            s2 = s2_random + s2_signature(c1_digest, s2_random, rtmp_type)
        self._outgoing += bytes([rtmp_type]) + s1 + s2

    def _key_exchange(self, c1: bytes, scheme: int) -> bytes:
        """Read the client's DH key from ``c1``, set up the RC4 pair, return our key."""
        client_at = dh_key_offset(c1, scheme)
        client_public = c1[client_at : client_at + DH_KEY_SIZE]
        pair, secret = server_key_exchange(client_public, self._random)
        self._ciphers = server_ciphers(secret, client_public, pair.public)
        return pair.public

    def _check_c2(self, c2: bytes) -> None:
        """Record whether a digest client's C2 is signed right; never reject."""
        if self._s1_digest is not None:
            assert self._client_version is not None
            expected = c2_signature(self._s1_digest, c2, self._client_version)
            self._c2_valid = hmac.compare_digest(expected, c2[_SIGNED_SIZE:])
