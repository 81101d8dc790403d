# -*- test-case-name: tests.rtmp.test_handshake -*-
"""
Sans-IO RTMP *client* handshakes that check a server the way real clients do.

Each kind reproduces what one client sends in C0+C1, what it verifies in
S0+S1+S2 and how it builds C2 (facts from ``rtmp-protocol.md`` section 2.6,
checked against ffmpeg's ``rtmp_handshake`` and librtmp's ``HandShake``):

``"ffmpeg"``
    ffmpeg playing: C1 version 9.0.124.2, time 0, scheme-1 digest.  When
    S1[4] >= 3 it validates the S1 digest at base 772 then base 8 ("Server
    response validating failed"), checks the S2 signature ("Signature
    mismatch") and sends a signed C2; otherwise C2 is an echo of S1.
``"ffmpeg_publish"``
    ffmpeg publishing: the same C1, no checks at all, C2 = echo of S1.
``"librtmp_plain"``
    librtmp / rtmpdump / OBS: version 0.0.0.0, no digest; C2 = S1 with its
    own time written over S1[4:8]; only *warns* when S2 differs from C1.
``"librtmp_swf"``
    librtmp with SWF verification: version 10.0.45.2, scheme-1 digest.  A
    server answering S0 = 3 with S1[4] = 0 gets the plain path; otherwise the
    S1 digest must validate (scheme 2 then 1) and S2 must be signed.
``"flash"``
    Flash Player style: a real-looking version, scheme-2 digest.  How Flash
    orders its checks is not documented, so this client is deliberately the
    strictest: the S1 digest must sit in Flash's own scheme (2).  Against a
    simple-handshake server it falls back to the echo (real Flash then plays
    without H.264), leaving :attr:`ClientHandshake.server_verified` False.
``"librtmp_rtmpe"``
    rtmpdump over ``rtmpe://`` (librtmp's ``HandShake`` with encryption): C0
    6, version 128.0.3.2, scheme-2 digest with its DH public key at the
    scheme-2 key offset.  The S1 digest must validate (scheme 2 then 1, and
    the server's key is read in whichever validated), S2 must be signed
    (wrapped when S0 is 8 or 9, as librtmp's FP10 code does), the server key
    must pass ffmpeg's checks; then both RC4 states are set up and warmed up
    by 1536 bytes.  C2 is sent in clear.
``"rtmpe_xtea"``, ``"rtmpe_blowfish"``
    The same client announcing C0 = 8 or 9 (the Flash Player 10+ types): it
    expects a wrapped S2 signature and wraps its C2 signature.

``secret_padding`` chooses how an RTMPE client lays out a shared secret
whose top byte is zero in its 128-byte HMAC key: ``"left"`` (librtmp built
on GnuTLS, as in Debian) or ``"right"`` (OpenSSL builds of librtmp and
ffmpeg, which write it unpadded into a zeroed buffer).

Verification failures raise :class:`ServerNotGenuine` with ffmpeg's messages.

The digest, Diffie-Hellman and key-derivation arithmetic here is written
again on purpose rather than imported from :mod:`flashstream.rtmp`: the
client is an independent oracle, so a mistake in the server's helpers cannot
hide itself.  Only the XTEA/Blowfish block wrapping is imported; it is pinned
by fixed vectors from librtmp in ``tests/rtmp/test_rtmpe.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable

import attrs
from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
from cryptography.hazmat.primitives.ciphers import Cipher

from flashstream.rtmp.rtmpe import wrap_signature

__all__ = ["CLIENT_KINDS", "RTMPE_KINDS", "ClientHandshake", "ServerNotGenuine"]

_COMMON = bytes.fromhex("F0EEC24A8068BEE82E00D0D1029E7E576EEC5D2D29806FAB93B8E636CFEB31AE")
_FMS_KEY = b"Genuine Adobe Flash Media Server 001" + _COMMON
_FP_KEY = b"Genuine Adobe Flash Player 001" + _COMMON
_SIZE = 1536

#: RFC 2409 group 2, as librtmp's dhgroups.h spells it.
_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
    16,
)
_Q = (_P - 1) // 2

#: Verification messages, as ffmpeg logs them.
S1_FAILED = "Server response validating failed"
S2_FAILED = "Signature mismatch"
#: ffmpeg's complaint about a server DH key.
BAD_KEY = "Invalid server public key"


class ServerNotGenuine(AssertionError):
    """The server's S1 digest or S2 signature failed a client's verification."""


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _digest_pos(packet: bytes, base: int) -> int:
    """ffmpeg's ``ff_rtmp_calc_digest_pos(buf, base, 728, base + 4)``."""
    return sum(packet[base : base + 4]) % 728 + base + 4


def _calc_digest(packet: bytes, pos: int, key: bytes) -> bytes:
    """ffmpeg's ``ff_rtmp_calc_digest``: HMAC over the packet minus the digest gap."""
    return _hmac(key, packet[:pos] + packet[pos + 32 :])


def _validate(packet: bytes, base: int, key: bytes) -> int:
    """ffmpeg's ``rtmp_validate_digest``: the digest position, or 0 on mismatch."""
    pos = _digest_pos(packet, base)
    return pos if hmac.compare_digest(_calc_digest(packet, pos, key), packet[pos : pos + 32]) else 0


def _dh_pos(packet: bytes, digest_base: int) -> int:
    """Where the DH key sits for the scheme whose digest base is ``digest_base``."""
    key_base = 768 if digest_base == 772 else 1532
    first = 8 if digest_base == 772 else 772
    return sum(packet[key_base : key_base + 4]) % 632 + first


class _RC4:
    """One RC4 direction of an RTMPE client, warmed up by 1536 bytes."""

    def __init__(self, key: bytes) -> None:
        self._context = Cipher(ARC4(key), mode=None).encryptor()
        self._context.update(bytes(_SIZE))

    def update(self, data: bytes) -> bytes:
        return self._context.update(data)


@attrs.frozen
class _Profile:
    """What one client kind sends and checks."""

    version: bytes
    #: Offset base of the C1 digest (8 = scheme 1, 772 = scheme 2); None = no digest.
    digest_base: int | None
    #: Bases tried, in order, when validating the S1 digest; () = never verifies.
    verify_bases: tuple[int, ...]
    #: Verify only when S1[4] is at least this (ffmpeg: 3; librtmp: non-zero).
    min_server_major: int
    #: librtmp habits: the plain-path C2 carries the client's time in [4:8], and
    #: an S0 other than C0 or an S2 other than C1 is logged (kept in ``warnings``).
    librtmp: bool
    #: C0: 3, or 6/8/9 for RTMPE.
    c0: int = 3

    @property
    def rtmpe(self) -> bool:
        return self.c0 != 3


_PROFILES = {
    "ffmpeg": _Profile(bytes([9, 0, 124, 2]), 8, (772, 8), 3, False),
    "ffmpeg_publish": _Profile(bytes([9, 0, 124, 2]), 8, (), 3, False),
    "librtmp_plain": _Profile(bytes(4), None, (), 1, True),
    "librtmp_swf": _Profile(bytes([10, 0, 45, 2]), 8, (772, 8), 1, True),
    # 128.0.7.2: the style of version seen in public captures of Flash Player 10+.
    "flash": _Profile(bytes([128, 0, 7, 2]), 772, (772,), 1, False),
    "librtmp_rtmpe": _Profile(bytes([128, 0, 3, 2]), 772, (772, 8), 0, True, c0=6),
    "rtmpe_xtea": _Profile(bytes([128, 0, 3, 2]), 772, (772, 8), 0, True, c0=8),
    "rtmpe_blowfish": _Profile(bytes([128, 0, 3, 2]), 772, (772, 8), 0, True, c0=9),
}

#: The client kinds that speak RTMPE.
RTMPE_KINDS = tuple(kind for kind, profile in _PROFILES.items() if profile.rtmpe)

#: Every supported client kind.
CLIENT_KINDS = tuple(_PROFILES)


class ClientHandshake:
    """
    One client's side of the handshake, fed the server's bytes.

    ``random_bytes(n)`` fills C1 and the signed C2; ``time_ms`` is the C1 time
    (ffmpeg always sends 0).
    """

    def __init__(
        self,
        kind: str,
        random_bytes: Callable[[int], bytes],
        *,
        time_ms: int = 0,
        secret_padding: str = "left",
    ) -> None:
        if kind not in _PROFILES:
            raise ValueError(f"unknown client kind {kind!r}; expected one of {CLIENT_KINDS}")
        self.kind = kind
        self._profile = _PROFILES[kind]
        self._random_bytes = random_bytes
        self._secret_padding = secret_padding
        self._time = struct.pack(">I", time_ms & 0xFFFFFFFF)
        c1 = bytearray(self._time + self._profile.version + random_bytes(_SIZE - 8))
        self.c1_digest: bytes | None = None
        #: RTMPE: our private exponent and 128-byte public key.
        self._private = 0
        self.public_key: bytes | None = None
        if self._profile.rtmpe:
            self._private = int.from_bytes(random_bytes(128), "big") % (_Q - 1) + 1
            self.public_key = pow(2, self._private, _P).to_bytes(128, "big")
            assert self._profile.digest_base is not None
            at = _dh_pos(bytes(c1), self._profile.digest_base)
            c1[at : at + 128] = self.public_key
        #: RTMPE: the server's public key, the 128-byte HMAC key made of the
        #: shared secret, and the RC4 states (None = plain RTMP).
        self.server_public_key: bytes | None = None
        self.secret: bytes | None = None
        self._encrypt: _RC4 | None = None
        self._decrypt: _RC4 | None = None
        if self._profile.digest_base is not None:
            pos = _digest_pos(bytes(c1), self._profile.digest_base)
            self.c1_digest = _calc_digest(bytes(c1), pos, _FP_KEY[:30])
            c1[pos : pos + 32] = self.c1_digest
        self.c1 = bytes(c1)
        self._buffer = bytearray()
        #: S0, S1, S2 and C2 once the server's answer is in.
        self.s0: int | None = None
        self.s1: bytes | None = None
        self.s2: bytes | None = None
        self.c2: bytes | None = None
        #: True when S1 and S2 passed the digest checks, False when the client
        #: took the plain path, None until S0+S1+S2 are in.
        self.server_verified: bool | None = None
        #: Which base validated S1 (772 or 8), when it was checked.
        self.server_digest_base: int | None = None
        #: Non-fatal complaints, as librtmp logs them.
        self.warnings: list[str] = []
        #: Bytes that followed S2 in the input (the server's first chunks).
        self.leftover = b""

    def initial_bytes(self) -> bytes:
        """C0+C1."""
        return bytes([self._profile.c0]) + self.c1

    def encrypt(self, data: bytes) -> bytes:
        """What the client sends after C2: RC4 for RTMPE, as is otherwise."""
        return data if self._encrypt is None else self._encrypt.update(data)

    def decrypt(self, data: bytes) -> bytes:
        """What the client reads after S2: RC4 for RTMPE, as is otherwise."""
        return data if self._decrypt is None else self._decrypt.update(data)

    def receive_data(self, data: bytes) -> bytes | None:
        """Feed server bytes; return C2 once S0+S1+S2 are in, else None."""
        if self.c2 is not None:
            self.leftover += data
            return None
        self._buffer += data
        if len(self._buffer) < 1 + 2 * _SIZE:
            return None
        self.leftover = bytes(self._buffer[1 + 2 * _SIZE :])
        self.s0 = self._buffer[0]
        self.s1 = bytes(self._buffer[1 : 1 + _SIZE])
        self.s2 = bytes(self._buffer[1 + _SIZE : 1 + 2 * _SIZE])
        self._buffer.clear()
        self.c2 = self._respond(self.s0, self.s1, self.s2)
        return self.c2

    def _respond(self, s0: int, s1: bytes, s2: bytes) -> bytes:
        profile = self._profile
        if profile.librtmp and s0 != profile.c0:
            self.warnings.append(f"Type mismatch: client sent {profile.c0}, server answered {s0}")
        if not profile.rtmpe and (not profile.verify_bases or s1[4] < profile.min_server_major):
            return self._echo(s1, s2)
        assert self.c1_digest is not None
        pos = 0
        for base in profile.verify_bases:
            pos = _validate(s1, base, _FMS_KEY[:36])
            if pos:
                self.server_digest_base = base
                break
        if not pos:
            raise ServerNotGenuine(S1_FAILED)
        if profile.rtmpe:
            assert self.server_digest_base is not None
            self._exchange_keys(s1, self.server_digest_base)
        temp = _hmac(_FMS_KEY, self.c1_digest)
        expected = wrap_signature(s0, temp, _hmac(temp, s2[: _SIZE - 32]))
        if not hmac.compare_digest(expected, s2[_SIZE - 32 :]):
            raise ServerNotGenuine(S2_FAILED)
        self.server_verified = True
        c2 = self._random_bytes(_SIZE - 32)
        temp = _hmac(_FP_KEY, s1[pos : pos + 32])
        return c2 + wrap_signature(s0, temp, _hmac(temp, c2))

    def _exchange_keys(self, s1: bytes, digest_base: int) -> None:
        """Read the server's key where its digest scheme puts it; set up RC4."""
        assert self.public_key is not None
        at = _dh_pos(s1, digest_base)
        server_key = s1[at : at + 128]
        value = int.from_bytes(server_key, "big")
        if not 2 <= value <= _P - 2 or pow(value, _Q, _P) != 1:
            raise ServerNotGenuine(BAD_KEY)
        shared = pow(value, self._private, _P)
        if self._secret_padding == "left":
            secret = shared.to_bytes(128, "big")
        else:
            secret = shared.to_bytes((shared.bit_length() + 7) // 8, "big").ljust(128, b"\0")
        self.server_public_key = server_key
        self.secret = secret
        self._encrypt = _RC4(_hmac(secret, server_key)[:16])
        self._decrypt = _RC4(_hmac(secret, self.public_key)[:16])

    def _echo(self, s1: bytes, s2: bytes) -> bytes:
        """The plain path: C2 echoes S1 (librtmp stamps its time into [4:8])."""
        self.server_verified = False
        if not self._profile.librtmp:
            return s1
        if s2 != self.c1:
            self.warnings.append("client signature does not match!")
        return s1[:4] + self._time + s1[8:]
