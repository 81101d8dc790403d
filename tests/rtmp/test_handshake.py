# -*- test-case-name: tests.rtmp.test_handshake -*-
"""Tests for :mod:`flashstream.rtmp.handshake`, checked by real-client-style verifiers."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flashstream.rtmp.errors import HandshakeError, LocalProtocolError
from flashstream.rtmp.handshake import (
    DH_KEY_SIZE,
    FMS_KEY,
    FP_KEY,
    PACKET_SIZE,
    SERVER_VERSION,
    ServerHandshake,
    build_handshake_packet,
    compute_digest,
    dh_key_offset,
    digest_offset,
    find_digest,
)
from tests.handshake_client import (
    CLIENT_KINDS,
    RTMPE_KINDS,
    S1_FAILED,
    S2_FAILED,
    ClientHandshake,
    ServerNotGenuine,
)

#: Plain RTMP kinds (the RTMPE ones are tested in test_rtmpe.py).
PLAIN_KINDS = tuple(kind for kind in CLIENT_KINDS if kind not in RTMPE_KINDS)
#: Kinds that do the digest handshake and verify the server.
DIGEST_KINDS = ("ffmpeg", "librtmp_swf", "flash")
#: The C1 digest scheme each kind uses (None: simple handshake).
KIND_SCHEME = {
    "ffmpeg": 1,
    "ffmpeg_publish": 1,
    "librtmp_plain": None,
    "librtmp_swf": 1,
    "flash": 2,
}
#: A chunk the client might send in the same segment as C2 (SetChunkSize 4096).
FIRST_CHUNK = bytes.fromhex("02000000000004010000000000001000")


def seeded(seed: int) -> Callable[[int], bytes]:
    """A reproducible ``random_bytes``."""
    return random.Random(seed).randbytes


def constant(value: int) -> Callable[[int], bytes]:
    """A ``random_bytes`` that returns ``value`` repeated."""
    return lambda size: bytes([value]) * size


def sum_bytes(total: int) -> bytes:
    """Four bytes whose plain sum is ``total`` (0..1020): what the offsets are made of."""
    return bytes(min(max(total - 255 * i, 0), 255) for i in range(4))


def feed(
    receiver: ServerHandshake | ClientHandshake, data: bytes, one_by_one: bool
) -> list[bytes | None]:
    """Feed ``data`` whole or one byte at a time; return what each call returned."""
    if not one_by_one:
        return [receiver.receive_data(data)]
    return [receiver.receive_data(data[i : i + 1]) for i in range(len(data))]


def run(
    kind: str, *, one_by_one: bool = False, extra: bytes = b""
) -> tuple[ServerHandshake, ClientHandshake, bytes | None]:
    """
    Run a whole handshake between a server and a ``kind`` client.

    Returns the server, the client and what the server returned for the input
    ending C2, which carries ``extra`` too.  ``one_by_one`` feeds every byte
    separately in both directions, up to that last piece.
    """
    server = ServerHandshake(random_bytes=seeded(2), time_ms=1234)
    client = ClientHandshake(kind, seeded(1), time_ms=99)
    results = feed(server, client.initial_bytes(), one_by_one)
    assert results == [None] * len(results)
    reply = server.data_to_send()
    assert len(reply) == 1 + 2 * PACKET_SIZE
    results = feed(client, reply, one_by_one)
    c2 = results.pop()
    assert c2 is not None and len(c2) == PACKET_SIZE
    assert results == [None] * len(results)
    results = feed(server, c2[:-1], one_by_one)
    assert results == [None] * len(results)
    return server, client, server.receive_data(c2[-1:] + extra)


@pytest.mark.parametrize("one_by_one", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("kind", PLAIN_KINDS)
def test_every_client_kind_completes(kind: str, one_by_one: bool) -> None:
    """Each client completes, and the digest clients' own checks of S1 and S2 pass."""
    server, client, leftover = run(kind, one_by_one=one_by_one)
    assert leftover == b""
    assert server.complete
    assert server.client_version == 3
    assert server.client_flash_version == client.c1[4:8]
    assert server.scheme == KIND_SCHEME[kind]
    assert client.server_verified is (kind in DIGEST_KINDS)
    assert client.warnings == []
    assert server.data_to_send() == b""


@pytest.mark.parametrize("kind", DIGEST_KINDS)
def test_digest_clients_c2_signature_checks_out(kind: str) -> None:
    """A genuine client's signed C2 is recognised: c2_valid is True."""
    server, _, _ = run(kind)
    assert server.c2_valid is True


def test_ffmpeg_validates_s1_at_the_scheme_it_was_sent_in() -> None:
    """ffmpeg (scheme 1) finds S1's digest at base 8, Flash (scheme 2) at base 772."""
    assert run("ffmpeg")[1].server_digest_base == 8
    assert run("flash")[1].server_digest_base == 772


def test_simple_handshake_c2_is_not_checked() -> None:
    """A version-zero client gets c2_valid None, and its time-stamped echo is accepted."""
    server, client, _ = run("librtmp_plain")
    assert server.c2_valid is None
    assert client.c2 is not None and client.s1 is not None
    assert client.c2 != client.s1  # librtmp writes its own time into C2[4:8]


def test_digest_c2_that_is_an_echo_is_accepted_but_flagged() -> None:
    """ffmpeg publishing echoes S1 instead of signing C2: not rejected, c2_valid False."""
    server, client, leftover = run("ffmpeg_publish")
    assert server.complete and leftover == b""
    assert server.scheme == 1
    assert server.c2_valid is False
    assert client.server_verified is False


@pytest.mark.parametrize("one_by_one", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("kind", ["ffmpeg", "librtmp_plain"])
def test_bytes_after_c2_are_returned(kind: str, one_by_one: bool) -> None:
    """The bytes following C2 in the same input come back exactly, once."""
    extra = FIRST_CHUNK * 3
    server, _, leftover = run(kind, extra=extra, one_by_one=one_by_one)
    assert server.complete
    assert leftover == extra
    with pytest.raises(LocalProtocolError):
        server.receive_data(FIRST_CHUNK)


def test_pipelined_c0_c1_c2_and_chunks_in_one_call() -> None:
    """C0+C1+C2+chunk in one segment: S0+S1+S2 queued, the chunk returned."""
    probe = ServerHandshake(random_bytes=seeded(2))
    client = ClientHandshake("librtmp_plain", seeded(1))
    probe.receive_data(client.initial_bytes())
    c2 = client.receive_data(probe.data_to_send())
    assert c2 is not None
    server = ServerHandshake(random_bytes=seeded(2))
    big = FIRST_CHUNK * 5000
    assert server.receive_data(client.initial_bytes() + c2 + big) == big
    assert server.complete
    assert len(server.data_to_send()) == 1 + 2 * PACKET_SIZE


def test_feeding_after_completion_raises() -> None:
    """Any receive_data after completion, even empty, is our bug: LocalProtocolError."""
    server, _, _ = run("ffmpeg")
    with pytest.raises(LocalProtocolError, match="already complete"):
        server.receive_data(b"")


def test_nothing_is_sent_before_c1_is_complete() -> None:
    """S0+S1+S2 appear only once all 1537 bytes of C0+C1 are in, and drain once."""
    server = ServerHandshake(random_bytes=seeded(2))
    c0c1 = ClientHandshake("ffmpeg", seeded(1)).initial_bytes()
    assert server.receive_data(c0c1[:-1]) is None
    assert server.data_to_send() == b""
    assert server.client_flash_version is None
    assert server.receive_data(c0c1[-1:]) is None
    assert len(server.data_to_send()) == 1 + 2 * PACKET_SIZE
    assert server.data_to_send() == b""
    assert not server.complete


@pytest.mark.parametrize(("kind", "scheme"), [("ffmpeg", 1), ("flash", 2)])
def test_golden_digest_s1_layout(kind: str, scheme: int) -> None:
    """With random bytes all 0x01, S1 is time, FMS 4.5.0.1, 0x01s, digest at a known offset."""
    server = ServerHandshake(random_bytes=constant(1), time_ms=0x01020304)
    server.receive_data(ClientHandshake(kind, seeded(7)).initial_bytes())
    out = server.data_to_send()
    s0, s1, s2 = out[0], out[1 : 1 + PACKET_SIZE], out[1 + PACKET_SIZE :]
    assert s0 == 3
    assert s1[0:4] == bytes([1, 2, 3, 4])
    assert s1[4:8] == SERVER_VERSION == bytes([4, 5, 0, 1])
    # The offset bytes are four 0x01: sum 4, so 4 % 728 + 12 or + 776.
    position = {1: 16, 2: 780}[scheme]
    assert digest_offset(s1, scheme) == position
    assert s1[8:position] == b"\x01" * (position - 8)
    assert s1[position + 32 :] == b"\x01" * (PACKET_SIZE - position - 32)
    assert s1[position : position + 32] == compute_digest(s1, position, FMS_KEY[:36])
    assert s2[:1504] == b"\x01" * 1504


def test_golden_simple_s1_layout() -> None:
    """Simple handshake: S1 = time, four zero bytes, the random bytes; S2 = C1."""
    server = ServerHandshake(random_bytes=constant(0xAB), time_ms=2**32 + 7)
    client = ClientHandshake("librtmp_plain", seeded(3))
    server.receive_data(client.initial_bytes())
    out = server.data_to_send()
    assert out[0] == 3
    assert out[1 : 1 + PACKET_SIZE] == bytes([0, 0, 0, 7, 0, 0, 0, 0]) + b"\xab" * 1528
    assert out[1 + PACKET_SIZE :] == client.c1
    assert server.scheme is None


@pytest.mark.parametrize(
    ("scheme", "total", "expected"),
    [
        (1, 0, 12),
        (1, 727, 739),  # last offset of scheme 1
        (1, 728, 12),  # wraps
        (1, 1020, 1020 % 728 + 12),  # largest possible sum
        (2, 0, 776),
        (2, 727, 1503),  # last offset: the digest ends at the packet's end
        (2, 728, 776),
    ],
)
def test_digest_offset_edges(scheme: int, total: int, expected: int) -> None:
    """Digest offsets at both ends of each scheme's range (12..739, 776..1503) and the wrap."""
    base = {1: 8, 2: 772}[scheme]
    packet = bytearray(random.Random(total).randbytes(PACKET_SIZE))
    packet[base : base + 4] = sum_bytes(total)
    assert digest_offset(bytes(packet), scheme) == expected


@pytest.mark.parametrize(
    ("scheme", "total", "expected"),
    [(1, 0, 772), (1, 631, 1403), (1, 632, 772), (2, 0, 8), (2, 631, 639), (2, 632, 8)],
)
def test_dh_key_offset_edges(scheme: int, total: int, expected: int) -> None:
    """RTMPE key offsets: 772..1403 (scheme 1) and 8..639 (scheme 2), wrapping at 632."""
    base = {1: 1532, 2: 768}[scheme]
    packet = bytearray(PACKET_SIZE)
    packet[base : base + 4] = sum_bytes(total)
    assert dh_key_offset(bytes(packet), scheme) == expected


@pytest.mark.parametrize(
    ("scheme", "total", "position"),
    [(1, 0, 12), (1, 727, 739), (2, 0, 776), (2, 727, 1503)],
)
def test_find_digest_at_range_edges(scheme: int, total: int, position: int) -> None:
    """A digest written at either end of either range is found, with its scheme."""
    base = {1: 8, 2: 772}[scheme]
    packet = bytearray(random.Random(total).randbytes(PACKET_SIZE))
    packet[base : base + 4] = sum_bytes(total)
    digest = compute_digest(bytes(packet), position, FP_KEY[:30])
    packet[position : position + 32] = digest
    assert find_digest(bytes(packet), FP_KEY[:30]) == (scheme, digest)
    assert find_digest(bytes(packet), FMS_KEY[:36]) is None


def test_helpers_reject_misuse() -> None:
    """Wrong packet sizes and unknown schemes are programming errors."""
    with pytest.raises(LocalProtocolError):
        digest_offset(b"\x00" * 100, 1)
    with pytest.raises(LocalProtocolError):
        dh_key_offset(bytes(PACKET_SIZE), 3)
    with pytest.raises(LocalProtocolError):
        compute_digest(bytes(PACKET_SIZE), 1505, FP_KEY)


def test_keys() -> None:
    """FP and FMS keys: the text parts from the reference plus the shared 32 bytes."""
    assert len(FP_KEY) == 62 and len(FMS_KEY) == 68
    assert FP_KEY[:30] == b"Genuine Adobe Flash Player 001"
    assert FMS_KEY[:36] == b"Genuine Adobe Flash Media Server 001"
    assert FP_KEY[30:] == FMS_KEY[36:]
    assert FP_KEY[30:32] == b"\xf0\xee" and FP_KEY[-2:] == b"\x31\xae"


def test_dh_key_is_written_before_the_digest() -> None:
    """The RTMPE hook: a public key lands at the key offset and the digest still validates."""
    public_key = bytes(range(DH_KEY_SIZE))
    for scheme in (1, 2):
        s1 = build_handshake_packet(
            time_ms=5,
            version=SERVER_VERSION,
            random_part=seeded(scheme)(PACKET_SIZE - 8),
            scheme=scheme,
            digest_key=FMS_KEY[:36],
            dh_public_key=public_key,
        )
        at = dh_key_offset(s1, scheme)
        assert s1[at : at + DH_KEY_SIZE] == public_key
        found = find_digest(s1, FMS_KEY[:36])
        assert found is not None and found[0] == scheme


def test_corrupted_c1_digest_falls_back_to_simple() -> None:
    """A version with a bad digest gets the simple answer (S2 == C1), which ffmpeg accepts."""
    client = ClientHandshake("ffmpeg", seeded(1))
    c1 = bytearray(client.c1)
    position = digest_offset(client.c1, 1)
    c1[position] ^= 0xFF
    server = ServerHandshake(random_bytes=seeded(2))
    server.receive_data(b"\x03" + bytes(c1))
    out = server.data_to_send()
    assert out[5:9] == bytes(4)
    assert out[1 + PACKET_SIZE :] == bytes(c1)
    assert server.scheme is None
    assert server.client_flash_version == bytes([9, 0, 124, 2])
    # ffmpeg sees S1[4] < 3, skips its checks and echoes S1.
    c2 = client.receive_data(out)
    assert c2 == out[1 : 1 + PACKET_SIZE]
    assert server.receive_data(c2) == b""
    assert server.c2_valid is None


def test_bad_c2_signature_is_reported_not_rejected() -> None:
    """A digest client whose C2 signature is wrong still completes, with c2_valid False."""
    server = ServerHandshake(random_bytes=seeded(2))
    client = ClientHandshake("flash", seeded(1))
    server.receive_data(client.initial_bytes())
    c2 = client.receive_data(server.data_to_send())
    assert c2 is not None
    assert server.receive_data(c2[:-1] + bytes([c2[-1] ^ 1]) + FIRST_CHUNK) == FIRST_CHUNK
    assert server.complete and server.c2_valid is False


def test_client_oracle_catches_a_bad_server() -> None:
    """The test clients really do reject a wrong S1 digest or S2 signature."""
    server = ServerHandshake(random_bytes=seeded(2))
    server.receive_data(ClientHandshake("ffmpeg", seeded(1)).initial_bytes())
    out = bytearray(server.data_to_send())
    bad_s2 = bytes(out[:-1]) + bytes([out[-1] ^ 1])
    with pytest.raises(ServerNotGenuine, match=S2_FAILED):
        ClientHandshake("ffmpeg", seeded(1)).receive_data(bad_s2)
    position = 1 + digest_offset(bytes(out[1 : 1 + PACKET_SIZE]), 1)
    out[position] ^= 1
    with pytest.raises(ServerNotGenuine, match=S1_FAILED):
        ClientHandshake("ffmpeg", seeded(1)).receive_data(bytes(out))


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        (b"\x16\x03\x01\x02\x00", "0x16"),
        (b"GET / HTTP/1.1\r\n", "0x47"),
        (b"\x00", "0x00"),
        (b"\x07", "0x07"),
        (b"\x0a", "0x0a"),
    ],
)
def test_non_rtmp_first_byte_is_refused(data: bytes, shown: str) -> None:
    """TLS, HTTP and other first bytes raise HandshakeError naming the byte."""
    server = ServerHandshake(random_bytes=seeded(2))
    with pytest.raises(HandshakeError, match=f"not RTMP: first byte {shown}"):
        server.receive_data(data)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(DIGEST_KINDS),
    client_random=st.binary(min_size=PACKET_SIZE, max_size=PACKET_SIZE),
    server_seed=st.integers(min_value=0, max_value=2**32),
    time_ms=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_any_valid_digest_c1_is_answered_verifiably(
    kind: str, client_random: bytes, server_seed: int, time_ms: int
) -> None:
    """For any C1 random bytes with a valid digest in either scheme, both sides verify."""
    server = ServerHandshake(random_bytes=seeded(server_seed), time_ms=time_ms)
    client = ClientHandshake(kind, lambda size: client_random[:size], time_ms=time_ms)
    assert server.receive_data(client.initial_bytes()) is None
    assert server.scheme == KIND_SCHEME[kind]
    c2 = client.receive_data(server.data_to_send())
    assert c2 is not None and client.server_verified is True
    assert server.receive_data(c2) == b""
    assert server.c2_valid is True
