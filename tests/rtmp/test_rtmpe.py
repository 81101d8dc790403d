# -*- test-case-name: tests.rtmp.test_rtmpe -*-
"""
Tests for :mod:`flashstream.rtmp.rtmpe` and RTMPE through the handshake and
the connection.

The Diffie-Hellman, key-derivation, RC4 and XTEA/Blowfish results are checked
against fixed vectors printed by librtmp's own RTMPE code (see
``tests/rtmp/vectors/librtmp_rtmpe_oracle.c``); the handshakes run against
:class:`tests.handshake_client.ClientHandshake`'s librtmp-style RTMPE client,
which does its own DH and RC4.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Callable

import pytest

from flashstream.rtmp.errors import HandshakeError, LocalProtocolError
from flashstream.rtmp.events import HandshakeCompleted, MediaReceived, PublishRequested
from flashstream.rtmp.handshake import (
    FP_KEY,
    PACKET_SIZE,
    ServerHandshake,
    build_handshake_packet,
    dh_key_offset,
)
from flashstream.rtmp.messages import MessageType
from flashstream.rtmp.rtmpe import (
    BLOWFISH_KEYS,
    DH_KEY_SIZE,
    PLAIN,
    PRIVATE_KEY_SIZE,
    RC4_DISCARD,
    XTEA_KEYS,
    DHKeyPair,
    IdentityCipher,
    P,
    Q,
    RC4Cipher,
    blowfish_encrypt_block,
    rc4_keys,
    server_ciphers,
    server_key_exchange,
    shared_secret,
    validate_public_key,
    wrap_signature,
    xtea_encrypt_block,
)
from tests.handshake_client import RTMPE_KINDS, ClientHandshake, ServerNotGenuine
from tests.helpers import AAC_FRAME, AVC_KEYFRAME, ConnectionPair, FlashClient, seeded_random

#: The C0 each RTMPE client kind sends.
KIND_TYPE = {"librtmp_rtmpe": 6, "rtmpe_xtea": 8, "rtmpe_blowfish": 9}

#: Vectors printed by librtmp's RTMPE code (tests/rtmp/vectors/librtmp_rtmpe_oracle.c).
#: "plain": a typical exchange; "zero_top_byte": a server key whose shared
#: secret has a zero top byte (GnuTLS librtmp pads it on the left).
LIBRTMP_VECTORS: dict[str, dict[str, str]] = {
    "plain": {
        "server_seed": "server",
        "client_public": (
            "18fe0877df1a84e0d06d436dfa4f399a796f8e7d09d36f176866352a49abc632"
            "ad1b541e1c473720cfac2395623dc3b284665f9c4ec49ac5006158ea606d0999"
            "0f9ccbd0f6819a8a0ec625939c6e629e83b8390dc2cb4faecd03734ff26021f9"
            "1a10629fe25eb7dfa259bebe9babee953b2191acb88b4266f3f617507e3e538a"
        ),
        "server_public": (
            "418bb1259932461b1216d8a23af52391509aabe4f0ec7c1750be7d2d4515b638"
            "1176304190244f2f3505d88896e4affa373430ecb1c6df42bb601a47adaf699d"
            "0be92f9744737689bf49627300f4ee254006bbe5902a179947d5ed055f62de8a"
            "114d933e599eb3fcb469cb365d89fd8896eab726bab69f4e864e8758fd36201c"
        ),
        "secret": (
            "d48b33726b7d44218cc594eec8cab787172e2a0ab677dae4dd945f46d81c5f48"
            "8de9a6cbb2220ea5db65a5a1c0bef42b8d90ff0bd9c43e85d88ded2a9d92e3dd"
            "8935c3bfbd6899dd5cf3098ae9dd201fce03ddf7491ecabd185ac8e80837b063"
            "12d7c9ba95ad28373aefe82cbbdd0b4fd520dd788578c1217a0baaa7edbc6c0b"
        ),
        "keystream_client_to_server": (
            "3f4517cede2ecc20a259cb9bd9f09ef5b2503eaad15a578c3b8549261f57e70e"
            "e0ae1df54edfbf8ef55cbd63340ce88f"
        ),
        "keystream_server_to_client": (
            "bc4dbf18aac9e3bf50dc751ba074548c9983b4e075d3970b597b857b2bdd2e62"
            "d0c19e09df6e8dc5da9e3130323aacfc"
        ),
    },
    "zero_top_byte": {
        "server_seed": "server157",
        "client_public": (
            "18fe0877df1a84e0d06d436dfa4f399a796f8e7d09d36f176866352a49abc632"
            "ad1b541e1c473720cfac2395623dc3b284665f9c4ec49ac5006158ea606d0999"
            "0f9ccbd0f6819a8a0ec625939c6e629e83b8390dc2cb4faecd03734ff26021f9"
            "1a10629fe25eb7dfa259bebe9babee953b2191acb88b4266f3f617507e3e538a"
        ),
        "server_public": (
            "c9491fb1c1c91a370ada0eb94b52e19d0eab835e95e5bf3242ea9f86f977868a"
            "101871463e99c486fd2bf9fab36864a56f40e6a8dddf771654550322cd10a08b"
            "f140fcb9b0cbabfbd322c56b4a9bc92d715a49806ab69ff95be386de83a0bcdd"
            "15cd07a2f63f6c0050a9a881a10fe4c4a0067d9ee20875446a4bcd7ee95289f1"
        ),
        "secret": (
            "0064d44e16b9ee5146431126e38da376c031cd94a0c280edb9961447e3d474bc"
            "c9798a7a14da3fd5556a5ff298329b071013cb9fab559189997812bffe7e1f90"
            "7419bd1d8c70935e2f4f31b17d1e8e2363f2ef57ad28e226ecdf9325a218cd98"
            "bfbc6b90d135b869578ab6531af88c9d65446ad9849af6b70ce19899387714de"
        ),
        "keystream_client_to_server": (
            "507b68a97981df297c924056c54e52a010351b4612df965fd1ee212214288039"
            "5a8e523fbb2fe651e603deb22c1e8de2"
        ),
        "keystream_server_to_client": (
            "00d27c0533dbbf94c90be5ba3b7b7880efbdc8780c03a320de6d26b5fe21a466"
            "fa02956ee56b11ff64e79de840fcd65e"
        ),
    },
}

#: librtmp's rtmpe8_sig (XTEA) of the block 00 01 .. 07 under keys 0..14.
LIBRTMP_XTEA = (
    "c7c82aca95daa419",
    "56db83e87bb6c03f",
    "83e79d336fe13cf4",
    "3f6995e8db8eff4b",
    "461421c5e9476b9e",
    "b4cb855c172482f6",
    "125fd128ad5d3482",
    "462cb97d43c6dca1",
    "f50041d2a536667c",
    "84f660b627880e23",
    "58d64861f02e38fa",
    "ebb7e02f45c30c73",
    "252099840f5d0952",
    "c6036f28cfa4256e",
    "b7eecfdda2307f55",
)
#: librtmp's rtmpe9_sig (Blowfish) of the same block under keys 0..14.
LIBRTMP_BLOWFISH = (
    "a031fb6d807be57d",
    "c6bf25ece357e347",
    "f524a328092d4769",
    "6f719aa57093a566",
    "c231405151907752",
    "1d25cc9bde471da4",
    "ffd7e49294afae43",
    "4d14bb94b0cf1321",
    "d54ef4538c6252e9",
    "ca0a9910c0de1b08",
    "67e5d62da3dcf2e5",
    "c276411c15ec7a19",
    "58d100468622b7c7",
    "de85ea2830aa8abd",
    "e3082b7c168b32eb",
)


def private_key(seed: str) -> int:
    """The fixed private exponents the vectors were printed with (SHA-512 twice over)."""
    return int.from_bytes(hashlib.sha512(seed.encode()).digest() * 2, "big")


def seeded(seed: int) -> Callable[[int], bytes]:
    """A reproducible ``random_bytes``."""
    return random.Random(seed).randbytes


# -- Diffie-Hellman and keys against librtmp -------------------------------------


def test_group_is_oakley_group_2() -> None:
    """p is the 1024-bit safe prime of RFC 2409 group 2: 2^1024 - 2^960 - 1 + 2^64 * ..."""
    assert P.bit_length() == 1024
    assert P >> 960 == 2**64 - 1 and P & (2**64 - 1) == 2**64 - 1
    assert Q == (P - 1) // 2
    # Fermat checks of p and q to a few bases: both are (probable) primes.
    assert all(pow(base, P - 1, P) == 1 for base in (2, 3, 5, 7))
    assert all(pow(base, Q - 1, Q) == 1 for base in (2, 3, 5, 7))


@pytest.mark.parametrize("name", sorted(LIBRTMP_VECTORS))
def test_key_exchange_matches_librtmp(name: str) -> None:
    """Public keys, the 128-byte secret and both RC4 keystreams equal librtmp's."""
    vector = LIBRTMP_VECTORS[name]
    client = DHKeyPair.from_private(private_key("client"))
    server = DHKeyPair.from_private(private_key(vector["server_seed"]))
    assert client.public.hex() == vector["client_public"]
    assert server.public.hex() == vector["server_public"]
    secret = shared_secret(server.private, client.public)
    assert secret == shared_secret(client.private, server.public)
    assert secret.to_bytes(DH_KEY_SIZE, "big").hex() == vector["secret"]
    ciphers = server_ciphers(secret.to_bytes(DH_KEY_SIZE, "big"), client.public, server.public)
    size = len(vector["keystream_client_to_server"]) // 2
    assert ciphers.decrypt.update(bytes(size)).hex() == vector["keystream_client_to_server"]
    assert ciphers.encrypt.update(bytes(size)).hex() == vector["keystream_server_to_client"]
    assert ciphers.encrypted


def test_zero_top_byte_vector_really_has_one() -> None:
    """The second vector exercises the padding question: its secret starts with 00."""
    assert LIBRTMP_VECTORS["zero_top_byte"]["secret"].startswith("00")
    assert not LIBRTMP_VECTORS["plain"]["secret"].startswith("00")


def test_server_draws_again_until_the_secret_layout_is_unambiguous() -> None:
    """
    A first key pair giving a secret with a zero top byte is replaced, so the
    left-padded (GnuTLS) and right-padded (OpenSSL) layouts of the secret agree.
    """
    client = DHKeyPair.from_private(private_key("client"))
    # A 256-bit private key whose secret with this client starts with 00.
    bad = int.from_bytes(hashlib.sha256(b"short235").digest(), "big")
    assert shared_secret(bad, client.public) >> 1016 == 0
    # The first draw becomes the private key ``bad``, the second a fresh one.
    draws = [(bad - 1).to_bytes(PRIVATE_KEY_SIZE, "big"), bytes(range(PRIVATE_KEY_SIZE))]
    pair, secret = server_key_exchange(client.public, lambda size: draws.pop(0))
    assert draws == []
    assert pair.private != bad
    assert secret[0] != 0
    value = shared_secret(client.private, pair.public)
    assert secret == value.to_bytes(DH_KEY_SIZE, "big")
    assert secret == value.to_bytes((value.bit_length() + 7) // 8, "big").ljust(128, b"\0")


def test_key_pair_from_random_bytes_is_valid() -> None:
    """Generated keys are 128 bytes, pass the peer checks, and depend on the randomness."""
    first = DHKeyPair.generate(seeded(1))
    second = DHKeyPair.generate(seeded(2))
    for pair in (first, second):
        assert len(pair.public) == DH_KEY_SIZE
        validate_public_key(int.from_bytes(pair.public, "big"))
    assert first.public != second.public
    assert DHKeyPair.generate(constant_bytes(0)).private == 1
    with pytest.raises(LocalProtocolError, match="random_bytes"):
        DHKeyPair.generate(lambda size: b"short")


def constant_bytes(value: int) -> Callable[[int], bytes]:
    """``random_bytes`` that always returns ``value`` bytes."""
    return lambda size: bytes([value]) * size


def test_group_membership_check_is_eulers_criterion() -> None:
    """The fast membership test agrees with y^q mod p == 1 on keys and non-keys."""
    generator = random.Random(9)
    values = [2, 3, 4, P - 2, P - 3] + [generator.randrange(2, P - 1) for _ in range(40)]
    for value in values:
        in_group = pow(value, Q, P) == 1
        if in_group:
            validate_public_key(value)
        else:
            with pytest.raises(HandshakeError, match="not in the group"):
                validate_public_key(value)
    assert any(pow(v, Q, P) == 1 for v in values) and any(pow(v, Q, P) != 1 for v in values)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "out of range"),
        (1, "out of range"),
        (P - 1, "out of range"),
        (P, "out of range"),
        (2**1024 - 1, "out of range"),
        (P - 2, "not in the group"),
    ],
    ids=["0", "1", "p-1", "p", "2^1024-1", "p-2"],
)
def test_invalid_peer_keys_are_refused(value: int, message: str) -> None:
    """Keys outside [2, p-2] or outside the order-q subgroup raise HandshakeError."""
    with pytest.raises(HandshakeError, match=f"Diffie-Hellman public key .*{message}"):
        validate_public_key(value)
    with pytest.raises(HandshakeError):
        shared_secret(5, value.to_bytes(DH_KEY_SIZE, "big"))


def test_rc4_keys_are_the_hmac_of_the_other_sides_key() -> None:
    """client-to-server = HMAC(K, server key)[:16]; server-to-client = HMAC(K, client key)[:16]."""
    secret, client, server = b"K" * 128, b"c" * 128, b"s" * 128
    c2s, s2c = rc4_keys(secret, client, server)
    assert c2s == hmac.new(secret, server, hashlib.sha256).digest()[:16]
    assert s2c == hmac.new(secret, client, hashlib.sha256).digest()[:16]


# -- ciphers -------------------------------------------------------------------------


def test_rc4_round_trip_in_any_pieces() -> None:
    """What one RC4 state encrypts, another with the same key decrypts, however it is split."""
    data = bytes(range(256)) * 20
    sender, receiver = RC4Cipher(b"k" * 16), RC4Cipher(b"k" * 16)
    encrypted = b"".join(sender.update(data[i : i + 7]) for i in range(0, len(data), 7))
    assert encrypted != data
    decrypted = b"".join(receiver.update(encrypted[i : i + 1]) for i in range(len(encrypted)))
    assert decrypted == data


def test_rc4_discards_its_warm_up() -> None:
    """The first bytes out are keystream byte 1536 onwards, not byte 0."""
    warmed, cold = RC4Cipher(b"k" * 16), RC4Cipher(b"k" * 16, discard=0)
    cold.update(bytes(RC4_DISCARD))
    assert warmed.update(bytes(32)) == cold.update(bytes(32))
    assert RC4Cipher(b"k" * 16).update(bytes(32)) != RC4Cipher(b"k" * 16, discard=0).update(
        bytes(32)
    )


def test_identity_cipher_and_plain() -> None:
    """Plain RTMP's ciphers return their input and say they are not encryption."""
    data = b"\x03\x00\x00\x00chunk"
    assert IdentityCipher().update(data) is data
    assert PLAIN.decrypt.update(data) == data and PLAIN.encrypt.update(data) == data
    assert PLAIN.encrypted is False


@pytest.mark.parametrize("key_id", range(15))
def test_xtea_and_blowfish_blocks_match_librtmp(key_id: int) -> None:
    """Type 8 (XTEA) and type 9 (Blowfish) block encryption equal librtmp's, key by key."""
    block = bytes(range(8))
    assert xtea_encrypt_block(block, XTEA_KEYS[key_id]).hex() == LIBRTMP_XTEA[key_id]
    assert blowfish_encrypt_block(block, BLOWFISH_KEYS[key_id]).hex() == LIBRTMP_BLOWFISH[key_id]


def test_wrap_signature_picks_keys_from_temp() -> None:
    """Each 8-byte block i uses key temp[i] % 15; types other than 8 and 9 pass through."""
    signature = bytes(range(32))
    temp = bytes([15 + 3, 0, 0, 0, 0, 0, 0, 0, 14] + [0] * 7 + [29] + [0] * 7 + [1] + [0] * 7)
    assert wrap_signature(6, temp, signature) == signature
    assert wrap_signature(3, temp, signature) == signature
    wrapped = wrap_signature(8, temp, signature)
    assert wrapped == b"".join(
        xtea_encrypt_block(signature[i : i + 8], XTEA_KEYS[k])
        for i, k in zip((0, 8, 16, 24), (3, 14, 14, 1), strict=True)
    )
    assert wrap_signature(9, temp, signature)[:8] == blowfish_encrypt_block(
        signature[:8], BLOWFISH_KEYS[3]
    )


# -- the handshake ---------------------------------------------------------------------


def feed(receiver: ServerHandshake | ClientHandshake, data: bytes, one_by_one: bool) -> object:
    """Feed ``data`` whole or byte by byte; return the last call's result."""
    if not one_by_one:
        return receiver.receive_data(data)
    results = [receiver.receive_data(data[i : i + 1]) for i in range(len(data))]
    assert all(result is None for result in results[:-1])
    return results[-1]


def rtmpe_handshake(
    kind: str, *, one_by_one: bool = False, seed: int = 2, padding: str = "left"
) -> tuple[ServerHandshake, ClientHandshake, bytes]:
    """Run an RTMPE handshake; C2 is followed by client bytes encrypted by the client."""
    server = ServerHandshake(random_bytes=seeded(seed), time_ms=77)
    client = ClientHandshake(kind, seeded(seed + 100), secret_padding=padding)
    assert feed(server, client.initial_bytes(), one_by_one) is None
    reply = server.data_to_send()
    assert len(reply) == 1 + 2 * PACKET_SIZE
    c2 = feed(client, reply, one_by_one)
    assert isinstance(c2, bytes)
    first_chunk = client.encrypt(
        b"\x02\x00\x00\x00\x00\x00\x04\x01\x00\x00\x00\x00\x00\x00\x10\x00"
    )
    assert feed(server, c2[:-1], one_by_one) is None
    leftover = server.receive_data(c2[-1:] + first_chunk)
    assert isinstance(leftover, bytes)
    return server, client, leftover


@pytest.mark.parametrize("one_by_one", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("kind", RTMPE_KINDS)
def test_rtmpe_handshake_completes_and_keys_agree(kind: str, one_by_one: bool) -> None:
    """
    A librtmp-style RTMPE client verifies S1/S2 (wrapped for 8/9), both sides
    derive the same RC4 keys, and the bytes after C2 decrypt to the chunk.
    """
    server, client, leftover = rtmpe_handshake(kind, one_by_one=one_by_one)
    assert server.complete and server.encrypted
    assert server.client_version == KIND_TYPE[kind]
    assert client.s0 == KIND_TYPE[kind]
    assert client.server_verified is True
    assert client.server_digest_base == 772 and server.scheme == 2
    assert client.warnings == []
    assert server.c2_valid is True
    ciphers = server.ciphers
    assert ciphers.encrypted
    assert ciphers.decrypt.update(leftover) == bytes.fromhex("02000000000004010000000000001000")
    reply = ciphers.encrypt.update(b"server says hello")
    assert reply != b"server says hello"
    assert client.decrypt(reply) == b"server says hello"


@pytest.mark.parametrize("padding", ["left", "right"])
def test_both_secret_layouts_work_for_many_keys(padding: str) -> None:
    """GnuTLS-style and OpenSSL-style clients agree with the server, whatever the keys."""
    for seed in range(40):
        server, client, leftover = rtmpe_handshake("librtmp_rtmpe", seed=seed, padding=padding)
        assert client.secret is not None and client.secret[0] != 0
        assert server.ciphers.decrypt.update(leftover)[:1] == b"\x02"


def test_server_key_sits_at_the_scheme_2_offset_before_the_digest() -> None:
    """S1 carries our public key at scheme 2's key offset; S0 echoes C0."""
    server, client, _ = rtmpe_handshake("librtmp_rtmpe")
    assert client.s1 is not None and client.server_public_key is not None
    at = dh_key_offset(client.s1, 2)
    assert client.s1[at : at + DH_KEY_SIZE] == client.server_public_key
    validate_public_key(int.from_bytes(client.server_public_key, "big"))


def test_plain_handshake_has_plain_ciphers() -> None:
    """C0 = 3 keeps the identity ciphers and is not reported as encrypted."""
    server = ServerHandshake(random_bytes=seeded(1))
    client = ClientHandshake("ffmpeg", seeded(2))
    server.receive_data(client.initial_bytes())
    c2 = client.receive_data(server.data_to_send())
    assert c2 is not None
    assert server.receive_data(c2) == b""
    assert server.ciphers is PLAIN and not server.encrypted


def test_client_oracle_rejects_an_unwrapped_signature_for_type_8() -> None:
    """The RTMPE client catches a server that answers S0 = 8 with an unwrapped S2."""
    server = ServerHandshake(random_bytes=seeded(3))
    client = ClientHandshake("rtmpe_xtea", seeded(4))
    server.receive_data(client.initial_bytes())
    reply = bytearray(server.data_to_send())
    reply[0] = 6  # claims type 6 while S2 is wrapped for 8
    with pytest.raises(ServerNotGenuine):
        ClientHandshake("rtmpe_xtea", seeded(4)).receive_data(bytes(reply))


def rtmpe_c1(public_value: int, *, scheme: int = 2) -> bytes:
    """An RTMPE C1 with a valid digest carrying ``public_value`` as its DH key."""
    return build_handshake_packet(
        time_ms=0,
        version=bytes([128, 0, 3, 2]),
        random_part=bytes(range(256)) * 5 + bytes(248),
        scheme=scheme,
        digest_key=FP_KEY[:30],
        dh_public_key=public_value.to_bytes(DH_KEY_SIZE, "big"),
    )


@pytest.mark.parametrize(
    "value", [0, 1, P - 1, P, 2**1024 - 1], ids=["0", "1", "p-1", "p", "2^1024-1"]
)
@pytest.mark.parametrize("one_by_one", [False, True], ids=["whole", "bytewise"])
def test_rtmpe_c1_with_an_invalid_key_is_refused(value: int, one_by_one: bool) -> None:
    """C0 = 6 with a DH key of 0, 1, p-1 or >= p: HandshakeError, nothing sent, then dead."""
    server = ServerHandshake(random_bytes=seeded(5))
    with pytest.raises(HandshakeError, match="RTMPE client Diffie-Hellman public key"):
        feed(server, b"\x06" + rtmpe_c1(value), one_by_one)
    assert server.data_to_send() == b""
    with pytest.raises(LocalProtocolError, match="failed"):
        server.receive_data(b"\x00")


def test_rtmpe_c1_with_a_valid_key_in_scheme_1_is_served() -> None:
    """The key is read at the offset of the scheme C1's digest validated in (1 here)."""
    client_pair = DHKeyPair.from_private(12345)
    c1 = rtmpe_c1(int.from_bytes(client_pair.public, "big"), scheme=1)
    server = ServerHandshake(random_bytes=seeded(6))
    assert server.receive_data(b"\x06" + c1) is None
    reply = server.data_to_send()
    assert reply[0] == 6 and server.scheme == 1
    s1 = reply[1 : 1 + PACKET_SIZE]
    at = dh_key_offset(s1, 1)
    server_public = s1[at : at + DH_KEY_SIZE]
    secret = shared_secret(client_pair.private, server_public).to_bytes(DH_KEY_SIZE, "big")
    c2s, _ = rc4_keys(secret, client_pair.public, server_public)
    assert server.receive_data(bytes(PACKET_SIZE) + RC4Cipher(c2s).update(b"abc")) is not None
    assert server.c2_valid is False  # an all-zero C2 is not signed, and not rejected


@pytest.mark.parametrize("c0", [6, 8, 9])
def test_rtmpe_without_a_digest_is_refused(c0: int) -> None:
    """RTMPE needs the digest handshake: a version-zero C1 gets a clear HandshakeError."""
    server = ServerHandshake(random_bytes=seeded(7))
    with pytest.raises(
        HandshakeError, match=f"RTMPE client \\(C0=0x0{c0}\\).*without a valid digest"
    ):
        server.receive_data(bytes([c0]) + bytes(PACKET_SIZE))


# -- the connection ---------------------------------------------------------------------


@pytest.mark.parametrize("byte_at_a_time", [False, True], ids=["whole", "bytewise"])
def test_encrypted_publish_and_play(byte_at_a_time: bool) -> None:
    """
    An RTMPE publisher's media reaches the server decrypted, and an RTMPE
    (type 8) player decrypts what the server sends; nothing readable crosses
    the wire after the handshake.
    """
    publisher = ConnectionPair("librtmp_rtmpe", byte_at_a_time=byte_at_a_time, seed=10)
    publisher.connect("live")
    assert publisher.events[0] == HandshakeCompleted(6, 2, encrypted=True)
    stream_id = publisher.create_stream()
    publisher.client.publish(stream_id, "key")
    wire = publisher.client.data_to_send()
    assert b"publish" not in wire
    pieces = [wire[i : i + 1] for i in range(len(wire))] if byte_at_a_time else [wire]
    events = [event for piece in pieces for event in publisher.server.receive_data(piece)]
    assert [(type(e), getattr(e, "name", None)) for e in events] == [(PublishRequested, "key")]
    publisher.server.accept_publish(stream_id, "key")
    out = publisher.server.data_to_send()
    assert b"NetStream.Publish.Start" not in out
    publisher.client.receive(out)
    assert "NetStream.Publish.Start" in publisher.client.status_codes()
    publisher.client.video(stream_id, 0, AVC_KEYFRAME)
    publisher.client.audio(stream_id, 10, AAC_FRAME)
    media = [e for e in publisher.to_server() if isinstance(e, MediaReceived)]
    assert [e.message.payload for e in media] == [AVC_KEYFRAME, AAC_FRAME]

    player = ConnectionPair(
        client=FlashClient("rtmpe_xtea", seeded_random(21)),
        byte_at_a_time=byte_at_a_time,
        seed=20,
    )
    player.connect("live")
    assert player.events[0] == HandshakeCompleted(8, 2, encrypted=True)
    play_id = player.create_stream()
    player.client.play(play_id, "key")
    player.to_server()
    player.server.start_play(play_id, "key", reset=False, recorded=False)
    for event in media:
        player.server.send_media(
            play_id, event.message.type_id, event.message.timestamp, event.message.payload
        )
    out = player.server.data_to_send()
    assert AVC_KEYFRAME not in out and b"Play.Start" not in out
    player.client.receive(out)
    assert "NetStream.Play.Start" in player.client.status_codes(play_id)
    assert [(m.type_id, m.payload) for m in player.client.media(play_id)] == [
        (MessageType.VIDEO, AVC_KEYFRAME),
        (MessageType.AUDIO, AAC_FRAME),
    ]


def test_plain_connection_reports_not_encrypted() -> None:
    """A plain RTMP handshake event says encrypted=False."""
    pair = ConnectionPair("ffmpeg")
    assert pair.handshake() == [HandshakeCompleted(3, 1, encrypted=False)]
