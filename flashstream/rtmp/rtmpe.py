# -*- test-case-name: tests.rtmp.test_rtmpe -*-
"""
RTMPE, the obfuscated RTMP of Flash Media Server, as pure functions.

RTMPE (C0 = 0x06, and the 0x08/0x09 variants) is a digest handshake that also
carries a Diffie-Hellman exchange, followed by RC4 over every later byte in
both directions.  It hides the stream from casual inspection; it is not
security (the handshake keys are public).  This module holds the pieces; the
handshake (:mod:`flashstream.rtmp.handshake`) places keys in C1/S1 and the
connection (:mod:`flashstream.rtmp.connection`) runs its bytes through the
ciphers.  Plain RTMP goes through :data:`PLAIN`, whose ciphers change
nothing, so the connection has one code path for both.

* **Diffie-Hellman** over the 1024-bit Oakley group 2 (RFC 2409), g = 2.
  Public keys are 128 bytes big-endian, left-padded with zeros.  A peer's key
  is checked as ffmpeg does: 2 <= y <= p - 2 and y^q mod p == 1.
* **Shared secret** K = y_peer^x mod p as a 128-byte HMAC key.  The libraries
  disagree on how a K with a leading zero byte is laid out (GnuTLS builds of
  librtmp pad on the left; OpenSSL builds of librtmp and ffmpeg write it
  unpadded into a zeroed buffer, i.e. pad on the right).  The server picks
  its key *after* seeing the client's, so :func:`server_key_exchange` simply
  draws again until K has a non-zero top byte, where both layouts agree.
* **RC4 keys**: client-to-server = HMAC-SHA256(K, server public key)[:16],
  server-to-client = HMAC-SHA256(K, client public key)[:16]; each RC4 state
  discards 1536 keystream bytes before use.
* **Types 8 and 9** wrap the C2/S2 signatures in XTEA or Blowfish with one of
  fifteen fixed keys (:func:`wrap_signature`).

Reference: ``rtmp-protocol.md`` section 3.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable
from typing import Protocol

import attrs
from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4, Blowfish
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from flashstream.rtmp.errors import HandshakeError, LocalProtocolError

__all__ = [
    "BLOWFISH_KEYS",
    "DH_KEY_SIZE",
    "G",
    "P",
    "PLAIN",
    "PRIVATE_KEY_SIZE",
    "Q",
    "RC4_DISCARD",
    "RTMPE_BLOWFISH",
    "RTMPE_PLAIN",
    "RTMPE_XTEA",
    "XTEA_KEYS",
    "ByteCipher",
    "Ciphers",
    "DHKeyPair",
    "IdentityCipher",
    "RC4Cipher",
    "blowfish_encrypt_block",
    "rc4_keys",
    "server_ciphers",
    "server_key_exchange",
    "shared_secret",
    "validate_public_key",
    "wrap_signature",
    "xtea_encrypt_block",
]

#: RFC 2409 Oakley group 2 (= RFC 3526's 1024-bit MODP group) prime.
P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
    16,
)
#: The generator.
G = 2
#: (p - 1) / 2, the order of the subgroup every valid public key lies in.
Q = (P - 1) // 2
#: Size of a public key and of the shared secret, in bytes.
DH_KEY_SIZE = 128
#: Random bytes drawn for a private exponent (256 bits).
PRIVATE_KEY_SIZE = 32
#: Keystream bytes each RC4 state throws away before its first use.
RC4_DISCARD = 1536

#: C0 values: RTMPE with plain, XTEA-wrapped and Blowfish-wrapped signatures.
RTMPE_PLAIN = 0x06
RTMPE_XTEA = 0x08
RTMPE_BLOWFISH = 0x09

#: How many key pairs :func:`server_key_exchange` draws, at most, looking for
#: a secret with a non-zero top byte (each draw fails with chance 1/256).
_MAX_KEY_DRAWS = 16

_RC4_KEY_SIZE = 16
_MASK32 = 0xFFFFFFFF


# -- Diffie-Hellman ------------------------------------------------------------


def validate_public_key(value: int) -> None:
    """
    Raise :class:`HandshakeError` unless ``value`` is a usable peer key.

    ffmpeg's rule: 2 <= y <= p - 2 (so not 0, 1, p - 1 or anything >= p) and
    y^q mod p == 1 (y lies in the prime-order subgroup, which also tells a key
    read at the wrong offset from random bytes half of the time).
    """
    if not 2 <= value <= P - 2:
        raise HandshakeError(
            "RTMPE client Diffie-Hellman public key out of range (must be between 2 and p-2)"
        )
    if _jacobi(value, P) != 1:
        raise HandshakeError(
            "RTMPE client Diffie-Hellman public key is not in the group (y^q mod p != 1)"
        )


def _jacobi(a: int, n: int) -> int:
    """
    The Jacobi symbol (a/n) for odd n > 0.

    For the prime p it is the Legendre symbol, which Euler's criterion makes
    equal to a^((p-1)/2) mod p: so ``_jacobi(y, P) == 1`` is exactly
    ``pow(y, Q, P) == 1`` for 0 < y < p, at a fraction of the cost of a
    1023-bit exponentiation (a peer can make us check many keys).
    """
    a %= n
    result = 1
    while a:
        while not a & 1:
            a >>= 1
            if n & 7 in (3, 5):
                result = -result
        a, n = n, a
        if a & 3 == 3 and n & 3 == 3:
            result = -result
        a %= n
    return result if n == 1 else 0


@attrs.frozen(repr=False)
class DHKeyPair:
    """A private exponent and its 128-byte public key ``g^x mod p``."""

    private: int
    public: bytes

    @classmethod
    def from_private(cls, private: int) -> DHKeyPair:
        """The key pair for a given private exponent (any x >= 1)."""
        if private < 1:
            raise LocalProtocolError("a DH private exponent must be positive")
        return cls(private, pow(G, private, P).to_bytes(DH_KEY_SIZE, "big"))

    @classmethod
    def generate(cls, random_bytes: Callable[[int], bytes]) -> DHKeyPair:
        """
        A key pair from :data:`PRIVATE_KEY_SIZE` injected random bytes.

        A 256-bit exponent is plenty for a 1024-bit group (and RTMPE is no
        secret anyway) and makes the two exponentiations a handshake needs
        about four times cheaper than a 1024-bit one.
        """
        data = bytes(random_bytes(PRIVATE_KEY_SIZE))
        if len(data) != PRIVATE_KEY_SIZE:
            raise LocalProtocolError(f"random_bytes({PRIVATE_KEY_SIZE}) returned {len(data)} bytes")
        return cls.from_private(int.from_bytes(data, "big") % (Q - 1) + 1)


def shared_secret(private: int, peer_public: bytes) -> int:
    """K = y^x mod p for the peer's 128-byte public key (validated first)."""
    if len(peer_public) != DH_KEY_SIZE:
        raise LocalProtocolError(f"a DH public key is {DH_KEY_SIZE} bytes")
    value = int.from_bytes(peer_public, "big")
    validate_public_key(value)
    return pow(value, private, P)


def server_key_exchange(
    client_public: bytes, random_bytes: Callable[[int], bytes]
) -> tuple[DHKeyPair, bytes]:
    """
    Our key pair and the 128-byte secret for a client's public key.

    Key pairs are drawn until the secret's top byte is non-zero, so the
    left-padded (GnuTLS) and right-padded (OpenSSL) layouts of the secret
    that clients use are the same bytes.  Raises :class:`HandshakeError` for
    an invalid client key.
    """
    pair = DHKeyPair.generate(random_bytes)
    secret = shared_secret(pair.private, client_public)
    for _ in range(_MAX_KEY_DRAWS - 1):
        if secret >> (8 * DH_KEY_SIZE - 8):
            break
        pair = DHKeyPair.generate(random_bytes)
        secret = shared_secret(pair.private, client_public)
    return pair, secret.to_bytes(DH_KEY_SIZE, "big")


def rc4_keys(secret: bytes, client_public: bytes, server_public: bytes) -> tuple[bytes, bytes]:
    """``(client_to_server, server_to_client)`` RC4 keys for a 128-byte secret."""
    client_to_server = hmac.digest(secret, server_public, "sha256")[:_RC4_KEY_SIZE]
    server_to_client = hmac.digest(secret, client_public, "sha256")[:_RC4_KEY_SIZE]
    return client_to_server, server_to_client


# -- byte ciphers --------------------------------------------------------------


class ByteCipher(Protocol):
    """A stream transform: bytes in, as many bytes out, state kept between calls."""

    def update(self, data: bytes) -> bytes:
        """Transform ``data``, continuing where the last call stopped."""


class IdentityCipher:
    """The cipher of plain RTMP: returns its input."""

    def update(self, data: bytes) -> bytes:
        """Return ``data`` unchanged."""
        return data


class RC4Cipher:
    """RC4 keyed with ``key`` after ``discard`` keystream bytes (RTMPE uses 1536)."""

    def __init__(self, key: bytes, discard: int = RC4_DISCARD) -> None:
        self._context = Cipher(ARC4(key), mode=None).encryptor()
        self._context.update(bytes(discard))

    def update(self, data: bytes) -> bytes:
        """Encrypt or decrypt (the same thing for RC4) the next bytes of the stream."""
        return self._context.update(data)


@attrs.frozen
class Ciphers:
    """A connection's byte transforms: ``decrypt`` for input, ``encrypt`` for output."""

    decrypt: ByteCipher
    encrypt: ByteCipher
    #: Whether these are RTMPE ciphers (False for :data:`PLAIN`).
    encrypted: bool


#: The ciphers of plain RTMP (stateless, so one value serves everyone).
PLAIN = Ciphers(IdentityCipher(), IdentityCipher(), encrypted=False)


def server_ciphers(secret: bytes, client_public: bytes, server_public: bytes) -> Ciphers:
    """The server's RC4 pair: decrypt client-to-server, encrypt server-to-client."""
    client_to_server, server_to_client = rc4_keys(secret, client_public, server_public)
    return Ciphers(RC4Cipher(client_to_server), RC4Cipher(server_to_client), encrypted=True)


# -- types 8 and 9: wrapped signatures ---------------------------------------------

#: XTEA keys of type 8, 16 bytes each (four little-endian words).
XTEA_KEYS = tuple(
    bytes.fromhex(key)
    for key in (
        "b234f0bf1f08d91195b7dfcc32e78d74",
        "b65e6a080e094317b85af06ee2395afe",
        "6f95107b2105ce763aa78823a1490144",
        "17f343a9b21bf1ebeea591a63963f317",
        "0ae0307a2ce229b5a5ae87a0ac79cbc0",
        "230ccebdffdeeb2f16aefa1c9d232311",
        "7b3fdd552ee6e77799c4b89be41e48c9",
        "b4b67b403691e87155bfaea739b833ca",
        "c3bdf6fc97363cb625f8e47cb259d904",
        "fd91e0284c4c954100dbb77ff866a0e3",
        "765b8457031b254fcd5bd446290dc3a2",
        "f8eecc0a46b555da523447033b716358",
        "dc7520b8ee1f5fa7e86842d8cc442aa7",
        "9e6ecf07257b6da16caea79f29562fd9",
        "e4eab1fee13c8c8ca764004e2a7c386a",
    )
)

#: Blowfish keys of type 9, 24 bytes each.
BLOWFISH_KEYS = tuple(
    bytes.fromhex(key)
    for key in (
        "7934774c67d1383adfb356be8b7bd02438e07358415d6967",
        "46f6b4cc0193e3a19e7d3c655586fd098ff7b3c46f41ca5c",
        "1ae7e2f3f9147994c0d39743087bb384432f9d843f21019b",
        "d3e354b0f71df62b5a434d0483643e0d592f61cbb16a590d",
        "c8c1e9b8165699217b5b36b7b59bdf06492c97f59548857e",
        "ebe5e62ea4bad42cf216e08f6623a94341ce381484950053",
        "66db90f03b4ff56fe49c2089355ed2b2c39e9f7f63b22881",
        "bb20aced2a046a1994989bc8ffcd93efc60d56a7eb13d930",
        "bcf2438209408a8725436de6bba4b944583f217c99bb3f24",
        "ec1aaacdcebd5311d2fb83b6c3baab4f6279e865a9922876",
        "c60c300391182d7b79dae1d564779a12c5b1d7914f964ca3",
        "d77c2abfa6e7857c45adff1294d8dea45c3d79a444025d22",
        "16190d816a4cc7f8b8f94ecd2c9e9084b2082560e11eae18",
        "e97c58261b519e49826061fca0a01bcdf505d6a66d0788a3",
        "2b97118bd94ed9df20e39c10e6a1352111f9130d0b2465b2",
    )
)

_XTEA_DELTA = 0x9E3779B9
_XTEA_ROUNDS = 32


def xtea_encrypt_block(block: bytes, key: bytes) -> bytes:
    """
    XTEA (32 rounds) over one 8-byte block as RTMPE type 8 uses it.

    The block is two little-endian words, the key four little-endian words.
    """
    v0, v1 = struct.unpack("<2I", block)
    k = struct.unpack("<4I", key)
    total = 0
    for _ in range(_XTEA_ROUNDS):
        v0 = (v0 + ((((v1 << 4) ^ (v1 >> 5)) + v1) ^ (total + k[total & 3]))) & _MASK32
        total = (total + _XTEA_DELTA) & _MASK32
        v1 = (v1 + ((((v0 << 4) ^ (v0 >> 5)) + v0) ^ (total + k[(total >> 11) & 3]))) & _MASK32
    return struct.pack("<2I", v0, v1)


def blowfish_encrypt_block(block: bytes, key: bytes) -> bytes:
    """
    Blowfish over one 8-byte block as RTMPE type 9 uses it.

    Type 9 reads the block as two little-endian words where standard Blowfish
    reads big-endian ones, so each 4-byte half is reversed on the way in and
    on the way out.
    """
    swapped = block[3::-1] + block[7:3:-1]
    encryptor = Cipher(Blowfish(key), modes.ECB()).encryptor()
    out = encryptor.update(swapped) + encryptor.finalize()
    return out[3::-1] + out[7:3:-1]


def wrap_signature(rtmp_type: int, temp: bytes, signature: bytes) -> bytes:
    """
    A C2/S2 ``signature`` as a client of ``rtmp_type`` (C0/S0) expects it.

    Types 8 and 9 encrypt each 8-byte block ``i`` of the 32-byte signature
    with key number ``temp[i] % 15`` (``temp`` is the intermediate HMAC the
    signature was keyed with); every other type leaves it as it is.
    """
    if rtmp_type == RTMPE_XTEA:
        encrypt, keys = xtea_encrypt_block, XTEA_KEYS
    elif rtmp_type == RTMPE_BLOWFISH:
        encrypt, keys = blowfish_encrypt_block, BLOWFISH_KEYS
    else:
        return signature
    return b"".join(
        encrypt(signature[i : i + 8], keys[temp[i] % 15]) for i in range(0, len(signature), 8)
    )
