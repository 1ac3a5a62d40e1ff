"""dtls.record and the C record layer: masks, sealing, opening, splitting (RFC 9147 §4).

Expected values come from outside the code under test: RFC 9001 Appendix A for the masks,
and records rebuilt from the `cryptography` package's AEADs and ciphers.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from dtls._native import ffi, lib
from dtls.errors import ConfigurationError
from dtls.iana import CipherSuite
from dtls.keyschedule import hkdf_expand_label
from dtls.record import (
    PLAINTEXT_HEADER_LEN,
    OpenedRecord,
    OpenError,
    RecordCipher,
    RecordKind,
    RecordSpan,
    ReplayWindow,
    TrafficKeys,
    derive_traffic_keys,
    next_traffic_secret,
    seal_plaintext,
    split_datagram,
)

SUITES = list(CipherSuite)
KEY_LEN: dict[int, int] = {
    CipherSuite.TLS_AES_128_GCM_SHA256: 16,
    CipherSuite.TLS_AES_256_GCM_SHA384: 32,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256: 32,
    CipherSuite.TLS_AES_128_CCM_SHA256: 16,
    CipherSuite.TLS_AES_128_CCM_8_SHA256: 16,
}
TAG_LEN: dict[int, int] = {
    suite: 8 if suite == CipherSuite.TLS_AES_128_CCM_8_SHA256 else 16 for suite in SUITES
}
HEADER = Path(__file__).parent.parent / "csrc" / "dtls_native.h"


def keys_for(suite: int, seed: bytes = b"seed") -> TrafficKeys:
    n = KEY_LEN[suite]
    digest = hashlib.sha512(seed).digest()
    return TrafficKeys(digest[:n], digest[32:44], hashlib.sha256(seed).digest()[:n])


# ---- an independent model of RFC 9147 §4 built from `cryptography` ----


def reference_mask(suite: int, sn_key: bytes, sample: bytes) -> bytes:
    """RFC 9147 §4.2.3."""
    if suite == CipherSuite.TLS_CHACHA20_POLY1305_SHA256:
        # cryptography's ChaCha20 nonce is counter (4 bytes, little-endian) || nonce (12)
        enc = Cipher(algorithms.ChaCha20(sn_key, sample[:16]), None).encryptor()
        return enc.update(bytes(16))
    enc = Cipher(algorithms.AES(sn_key), modes.ECB()).encryptor()
    return enc.update(sample[:16]) + enc.finalize()


def reference_aead(suite: int, key: bytes) -> AESGCM | AESCCM | ChaCha20Poly1305:
    if suite == CipherSuite.TLS_CHACHA20_POLY1305_SHA256:
        return ChaCha20Poly1305(key)
    if suite == CipherSuite.TLS_AES_128_CCM_SHA256:
        return AESCCM(key, 16)
    if suite == CipherSuite.TLS_AES_128_CCM_8_SHA256:
        return AESCCM(key, 8)
    return AESGCM(key)


def reference_record(
    suite: int,
    keys: TrafficKeys,
    epoch: int,
    seq: int,
    inner: bytes,
    cid: bytes | None,
    seq16: bool,
    with_length: bool,
) -> bytes:
    """A DTLSCiphertext record for the DTLSInnerPlaintext `inner` (RFC 9147 §4)."""
    ct_len = len(inner) + TAG_LEN[suite]
    first = 0x20 | (0x10 if cid else 0) | (0x08 if seq16 else 0) | (0x04 if with_length else 0)
    header = bytes([first | (epoch & 3)]) + (cid or b"")
    seq_pos = len(header)
    header += (seq & 0xFFFF).to_bytes(2, "big") if seq16 else bytes([seq & 0xFF])
    if with_length:
        header += ct_len.to_bytes(2, "big")
    nonce = bytes(a ^ b for a, b in zip(keys.iv, seq.to_bytes(12, "big"), strict=True))
    ct = reference_aead(suite, keys.key).encrypt(nonce, inner, header)
    mask = reference_mask(suite, keys.sn_key, ct)
    masked = bytearray(header)
    for i in range(2 if seq16 else 1):
        masked[seq_pos + i] ^= mask[i]
    return bytes(masked) + ct


# ---- the header is the cdef ----


def test_cdef_matches_header() -> None:
    """Every function, constant and struct field in csrc/dtls_native.h is in the built
    module, with the header's values and shapes (a stale build fails here)."""
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    defines = dict(re.findall(r"^#define[ \t]+(DTLS_\w+)[ \t]+(\S.*?)[ \t]*$", text, flags=re.M))
    assert len(defines) > 15
    for name, value in defines.items():
        assert getattr(lib, name) == int(value.strip("()"), 0), name
    functions = re.findall(r"^[\w \t*]*?\b(dtls_\w+)\s*\(([^;{]*)\)\s*;", text, flags=re.M)
    assert len(functions) > 30
    for name, params in functions:
        ctype = ffi.typeof(getattr(lib, name))
        n_params = 0 if params.strip() == "void" else params.count(",") + 1
        assert len(ctype.args) == n_params, name
    for body, name in re.findall(r"typedef struct \{(.*?)\}\s*(\w+);", text, flags=re.S):
        fields = [
            re.sub(r"\[.*\]", "", decl.split()[-1]).lstrip("*")
            for decl in body.split(";")
            if decl.strip()
        ]
        assert [f for f, _ in ffi.typeof(name).fields] == fields, name
    assert ffi.string(lib.dtls_openssl_version()).startswith(b"OpenSSL")
    # and the type stub declares the same functions and constants
    stub = (HEADER.parent.parent / "dtls" / "_native.pyi").read_text()
    assert set(re.findall(r"def (dtls_\w+)\(", stub)) == {name for name, _ in functions}
    assert set(re.findall(r"^    (DTLS_\w+): int$", stub, flags=re.M)) == set(defines)


# ---- record number masks: RFC 9001 Appendix A (same construction, RFC 9147 §4.2.3) ----

QUIC_V1_SALT = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")  # RFC 9001 §5.2


def quic_initial_hp(label: bytes) -> bytes:
    """RFC 9001 Appendix A.1: the hp key of an Initial secret, DCID 0x8394c8f03e515708."""
    initial = hmac.digest(QUIC_V1_SALT, bytes.fromhex("8394c8f03e515708"), "sha256")
    secret = hkdf_expand_label("sha256", initial, label, b"", 32, prefix=b"tls13 ")
    return hkdf_expand_label("sha256", secret, b"quic hp", b"", 16, prefix=b"tls13 ")


@pytest.mark.parametrize(
    ("label", "hp", "sample", "mask"),
    [
        # A.2 client Initial
        (b"client in", "9f50449e04a0e810283a1e9933adedd2", "d1b1c98dd7689fb8ec11d242b123dc9b",
         "437b9aec36"),
        # A.3 server Initial
        (b"server in", "c206b8d9b9f0f37644430b490eeaa314", "2cd0991cd25b0aac406a5816b6394100",
         "2ec0d8356a"),
    ],
)  # fmt: skip
def test_aes_mask_rfc9001(label: bytes, hp: str, sample: str, mask: str) -> None:
    key = quic_initial_hp(label)
    assert key.hex() == hp
    cipher = RecordCipher(CipherSuite.TLS_AES_128_GCM_SHA256, TrafficKeys(key, bytes(12), key))
    assert cipher.mask(bytes.fromhex(sample))[:5].hex() == mask


def test_chacha20_mask_rfc9001() -> None:
    # A.5: the hp key of the ChaCha20 short-header example, and its mask
    secret = bytes.fromhex("9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b")
    hp = hkdf_expand_label("sha256", secret, b"quic hp", b"", 32, prefix=b"tls13 ")
    assert hp.hex() == "25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4"
    cipher = RecordCipher(CipherSuite.TLS_CHACHA20_POLY1305_SHA256, TrafficKeys(hp, bytes(12), hp))
    assert cipher.mask(bytes.fromhex("5e5cd55c41f69080575d7999c25a5bfb"))[:5].hex() == "aefefe7d03"


@settings(max_examples=60, deadline=None)
@given(suite=st.sampled_from(SUITES), sn_key=st.binary(min_size=32, max_size=32),
       sample=st.binary(min_size=16, max_size=40))  # fmt: skip
def test_mask_matches_cryptography(suite: int, sn_key: bytes, sample: bytes) -> None:
    n = KEY_LEN[suite]
    cipher = RecordCipher(suite, TrafficKeys(bytes(n), bytes(12), sn_key[:n]))
    assert cipher.mask(sample) == reference_mask(suite, sn_key[:n], sample)


def test_mask_needs_16_bytes() -> None:
    cipher = RecordCipher.from_secret(CipherSuite.TLS_AES_128_GCM_SHA256, bytes(32))
    with pytest.raises(ValueError):
        cipher.mask(bytes(15))


# ---- sealing and opening ----


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: CipherSuite(s).name)
@pytest.mark.parametrize("cid_len", [0, 1, 8, 255])
@pytest.mark.parametrize("seq16", [True, False])
@pytest.mark.parametrize("with_length", [True, False])
def test_round_trip_every_header_form(
    suite: int, cid_len: int, seq16: bool, with_length: bool
) -> None:
    keys = keys_for(suite)
    sender, receiver = RecordCipher(suite, keys), RecordCipher(suite, keys)
    window = ReplayWindow()
    cid = bytes(range(1, cid_len + 1)) if cid_len else None
    for seq, (payload, padding) in enumerate(
        [(b"", 0), (b"x", 0), (b"hello", 3), (bytes(range(256)) * 5, 0), (b"y" * 100, 200)]
    ):
        record = sender.seal(
            5, seq, 23, payload, cid=cid, seq16=seq16, with_length=with_length, padding=padding
        )
        expected_len = sender.sealed_len(
            len(payload), cid_len=cid_len, seq16=seq16, with_length=with_length, padding=padding
        )
        assert len(record) == expected_len
        inner_len = len(record) - (1 + cid_len + (2 if seq16 else 1) + (2 if with_length else 0))
        assert inner_len - TAG_LEN[suite] >= max(len(payload) + 1 + padding, 16 - TAG_LEN[suite])
        assert (
            record[0]
            == 0x20 | (0x10 if cid else 0) | (8 if seq16 else 0) | (4 if with_length else 0) | 1
        )
        if cid:
            assert record[1 : 1 + cid_len] == cid
        spans, dropped = split_datagram(record, cid_len)
        assert dropped == 0
        assert spans == [RecordSpan(0, len(record), RecordKind.CIPHERTEXT, record[0], 1, 0)]
        result = receiver.open(record, window, cid_len=cid_len)
        assert isinstance(result, OpenedRecord)
        assert (result.content_type, result.seq, bytes(result.plaintext)) == (23, seq, payload)
        assert receiver.open(record, window, cid_len=cid_len) == OpenError.REPLAYED


@settings(max_examples=150, deadline=None)
@given(
    suite=st.sampled_from(SUITES),
    seed=st.binary(min_size=1, max_size=8),
    epoch=st.integers(0, 2**16),
    seq=st.integers(0, 2**48 - 1),
    content_type=st.integers(1, 255),
    payload=st.binary(max_size=300),
    padding=st.integers(0, 40),
    cid=st.one_of(st.none(), st.binary(min_size=1, max_size=20)),
    seq16=st.booleans(),
    with_length=st.booleans(),
)
def test_seal_equals_cryptography(
    suite: int,
    seed: bytes,
    epoch: int,
    seq: int,
    content_type: int,
    payload: bytes,
    padding: int,
    cid: bytes | None,
    seq16: bool,
    with_length: bool,
) -> None:
    """The record is exactly what RFC 9147 §4 builds from the primitives: header with the
    unmasked number as additional data, nonce = iv XOR seq (RFC 9846 §5.3), then the mask."""
    keys = keys_for(suite, seed)
    cipher = RecordCipher(suite, keys)
    # §4.2.3: short plaintexts are padded to give 16 bytes of ciphertext
    padding_used = max(padding, 16 - TAG_LEN[suite] - 1 - len(payload))
    inner = payload + bytes([content_type]) + bytes(padding_used)
    expected = reference_record(suite, keys, epoch, seq, inner, cid, seq16, with_length)
    got = cipher.seal(
        epoch, seq, content_type, payload, cid=cid, seq16=seq16, with_length=with_length,
        padding=padding,
    )  # fmt: skip
    assert got == expected
    # and the reference record opens, given a hint close enough for the short number
    hint = max(0, seq - 100) if seq16 else max(0, seq - 10)
    result = cipher.open(expected, None, cid_len=len(cid or b""), next_seq=hint)
    assert isinstance(result, OpenedRecord)
    assert (result.content_type, result.seq, bytes(result.plaintext)) == (
        content_type,
        seq,
        payload,
    )


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: CipherSuite(s).name)
def test_zero_inner_plaintext_is_auth(suite: int) -> None:
    """RFC 9846 §5.4: no non-zero byte, no content type: dropped like a forgery."""
    keys = keys_for(suite)
    cipher = RecordCipher(suite, keys)
    for inner in (bytes(16 - TAG_LEN[suite] or 1), bytes(40)):
        record = reference_record(suite, keys, 3, 7, inner, None, True, True)
        assert cipher.open(record, None, next_seq=7) == OpenError.AUTH
    if TAG_LEN[suite] == 16:  # 16 bytes of tag alone: an empty DTLSInnerPlaintext
        record = reference_record(suite, keys, 3, 7, b"", None, True, True)
        assert cipher.open(record, None, next_seq=7) == OpenError.AUTH


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: CipherSuite(s).name)
def test_truncations_and_bit_flips(suite: int) -> None:
    cipher = RecordCipher(suite, keys_for(suite))
    for with_length in (True, False):
        record = cipher.seal(2, 300, 22, b"handshake bytes", seq16=True, with_length=with_length)
        header_len = 5 if with_length else 3
        for cut in range(len(record)):
            got = cipher.open(record[:cut], None, next_seq=300)
            if with_length or cut - header_len < 16:
                assert got == OpenError.MALFORMED, cut
            else:
                assert got == OpenError.AUTH, cut  # L=0: a shorter record fails the tag
        for bit in range(8 * len(record)):
            damaged = bytearray(record)
            damaged[bit // 8] ^= 1 << (bit % 8)
            got = cipher.open(bytes(damaged), None, next_seq=300)
            first = damaged[0]
            if first & 0xE0 != 0x20 or first & 0x10:
                assert got == OpenError.MALFORMED, bit  # not DTLSCiphertext, or a CID
            else:
                assert got in (OpenError.MALFORMED, OpenError.AUTH), bit
                if bit // 8 >= header_len or (bit // 8 in (1, 2) and first == record[0]):
                    assert got == OpenError.AUTH, bit


def test_open_rejects_bad_headers() -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    cipher = RecordCipher(suite, keys_for(suite))
    with_cid = cipher.seal(3, 1, 23, b"data", cid=b"\x01\x02\x03\x04")
    assert cipher.open(with_cid, None, cid_len=0) == OpenError.MALFORMED  # C=1, no CID here
    assert cipher.open(with_cid, None, cid_len=4, next_seq=1).seq == 1  # type: ignore[union-attr]
    without = cipher.seal(3, 1, 23, b"data")
    assert cipher.open(without, None, cid_len=4) == OpenError.MALFORMED  # C=0, CID expected
    assert cipher.open(b"", None) == OpenError.MALFORMED
    assert cipher.open(b"\x16" + without[1:], None) == OpenError.MALFORMED  # plaintext type
    # ciphertext longer than 2^14 + 256 (RFC 9846 §5.2)
    big = bytes([0x2B]) + b"\x00\x01" + (2**14 + 257).to_bytes(2, "big") + bytes(2**14 + 257)
    assert cipher.open(big, None) == OpenError.MALFORMED
    # bytes after a record with a length are not part of it
    result = cipher.open(without + b"trailing", None, next_seq=1)
    assert isinstance(result, OpenedRecord) and bytes(result.plaintext) == b"data"


def test_open_in_place_and_into_new_buffer() -> None:
    suite = CipherSuite.TLS_CHACHA20_POLY1305_SHA256
    sender, receiver = RecordCipher(suite, keys_for(suite)), RecordCipher(suite, keys_for(suite))
    first = sender.seal(3, 0, 23, b"first record")
    second = sender.seal(3, 1, 21, b"\x01\x00")
    datagram = bytearray(first + second)
    spans, _ = split_datagram(datagram)
    view = memoryview(datagram)
    window = ReplayWindow()
    opened = [receiver.open(view[s.offset : s.offset + s.length], window) for s in spans]
    assert [(o.content_type, o.seq, bytes(o.plaintext)) for o in opened] == [  # type: ignore[union-attr]
        (23, 0, b"first record"),
        (21, 1, b"\x01\x00"),
    ]
    # in place: the plaintext lies in the datagram, right after the header
    assert datagram[5 : 5 + 12] == b"first record"
    assert opened[0].plaintext.obj is datagram  # type: ignore[union-attr]
    # read-only input: a fresh buffer, not disturbed by later calls
    window.reset()
    a = receiver.open(first, window)
    b = receiver.open(second, window)
    assert isinstance(a, OpenedRecord) and isinstance(b, OpenedRecord)
    assert bytes(a.plaintext) == b"first record" and bytes(b.plaintext) == b"\x01\x00"
    # a failed open in place leaves no plaintext behind
    forged = bytearray(first)
    forged[-1] ^= 1
    assert receiver.open(forged, None) == OpenError.AUTH
    assert forged[5:-16] == bytes(len(first) - 21)


def test_sequence_number_reconstruction() -> None:
    """RFC 9147 §4.2.2: the full number closest to the next expected one."""

    def closest(expected: int, low: int, bits: int) -> int:
        win = 1 << bits
        candidates = [
            c
            for c in ((expected & ~(win - 1)) + low + k * win for k in (-1, 0, 1))
            if 0 <= c < 2**48
        ]
        return min(candidates, key=lambda c: (abs(c - expected), -c))

    for bits in (8, 16):
        win = 1 << bits
        for expected in (0, 1, win // 2, win - 1, win, win + 1, 5 * win + 17, 2**48 - 1):
            for low in (0, 1, win // 2 - 1, win // 2, win // 2 + 1, win - 1):
                assert lib.dtls_reconstruct_seq(expected, low, bits) == closest(
                    expected, low, bits
                ), (bits, expected, low)

    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    cipher = RecordCipher(suite, keys_for(suite))
    for seq16, seq, hint in ((False, 256, 250), (False, 255, 260), (True, 65536, 65500),
                             (True, 3 * 65536 + 5, 3 * 65536 - 30000)):  # fmt: skip
        record = cipher.seal(3, seq, 23, b"x", seq16=seq16)
        result = cipher.open(record, None, next_seq=hint)
        assert isinstance(result, OpenedRecord) and result.seq == seq
        # the replay window supplies the hint
        window = ReplayWindow()
        window.mark(hint - 1)
        result = cipher.open(record, window)
        assert isinstance(result, OpenedRecord) and result.seq == seq
        assert window.next_seq == max(hint, seq + 1)


@settings(max_examples=200, deadline=None)
@given(expected=st.integers(0, 2**48 - 1), delta=st.integers(-127, 128), bits=st.just(8))
def test_reconstruction_recovers_nearby_numbers(expected: int, delta: int, bits: int) -> None:
    seq = expected + delta
    if 0 <= seq < 2**48 and not (expected >= 2**48 - 128):
        assert lib.dtls_reconstruct_seq(expected, seq & 0xFF, 8) == seq


def test_seal_arguments() -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    cipher = RecordCipher(suite, keys_for(suite))
    cipher.seal(3, 2**48 - 1, 23, b"")
    with pytest.raises(ValueError):
        cipher.seal(3, 2**48, 23, b"")  # RFC 9147 §4: 48-bit sequence numbers
    with pytest.raises(ValueError):
        cipher.seal(3, 0, 0, b"")  # content type 0 cannot be found again
    with pytest.raises(ValueError):
        cipher.seal(3, 0, 23, b"", cid=bytes(256))  # opaque cid<0..2^8-1>
    with pytest.raises(ValueError):
        cipher.seal(3, 0, 23, bytes(2**14 + 1))  # RFC 9846 §5.1
    with pytest.raises(ValueError):
        cipher.seal(3, 0, 23, bytes(2**14), padding=1)  # RFC 9846 §5.4: inner <= 2^14 + 1
    cipher.seal(3, 0, 23, bytes(2**14))
    assert cipher.seal(3, 0, 23, b"a", cid=b"") == cipher.seal(3, 0, 23, b"a")  # empty: C=0
    for padding in (2**14 + 2, 2**63, 2**64 - 1):  # no wrap-around in the length sums
        with pytest.raises(ValueError):
            cipher.seal(3, 0, 23, b"", padding=padding)
        with pytest.raises(ValueError):
            cipher.sealed_len(0, padding=padding)
    record = cipher.seal(3, 0, 23, b"a")
    for cid_len in (256, 2**40, 2**64 - 1):  # a CID is at most 255 bytes
        with pytest.raises(ValueError):
            cipher.open(record, None, cid_len=cid_len)
        with pytest.raises(ValueError):
            split_datagram(record, cid_len)
        with pytest.raises(ValueError):
            cipher.sealed_len(0, cid_len=cid_len)
    with pytest.raises(ValueError):
        RecordCipher(suite, TrafficKeys(bytes(32), bytes(12), bytes(32)))  # AES-128 wants 16
    with pytest.raises(ConfigurationError):
        RecordCipher(0x1306, keys_for(suite))
    assert lib.dtls_cipher_new(0x1301, ffi.NULL, 16, bytes(12), 12, bytes(16), 16) == ffi.NULL


def test_seal_into_and_in_place() -> None:
    suite = CipherSuite.TLS_AES_256_GCM_SHA384
    cipher = RecordCipher(suite, keys_for(suite))
    expected = cipher.seal(3, 9, 23, b"payload bytes", cid=b"ab")
    out = bytearray(200)
    n = cipher.seal_into(out, 7, 3, 9, 23, b"payload bytes", cid=b"ab")
    assert n == len(expected) and bytes(out[7 : 7 + n]) == expected
    # the payload already where the ciphertext goes (offset + header length): in place
    header_len = 1 + 2 + 2 + 2
    out = bytearray(200)
    out[7 + header_len : 7 + header_len + 13] = b"payload bytes"
    view = memoryview(out)
    n = cipher.seal_into(out, 7, 3, 9, 23, view[7 + header_len : 7 + header_len + 13], cid=b"ab")
    assert bytes(out[7 : 7 + n]) == expected
    with pytest.raises(BufferError):
        cipher.seal_into(bytearray(20), 0, 3, 9, 23, b"payload bytes")
    with pytest.raises(ValueError):  # overlapping the header: refused
        cipher.seal_into(out, 0, 3, 9, 23, view[2:20])
    with pytest.raises(BufferError):
        cipher.seal_into(b"read-only", 0, 3, 9, 23, b"")  # type: ignore[arg-type]


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: CipherSuite(s).name)
def test_sealed_len(suite: int) -> None:
    cipher = RecordCipher(suite, keys_for(suite))
    for n in (0, 1, 6, 7, 8, 15, 100, 2**14):
        for cid_len in (None, 0, 3):
            for seq16 in (True, False):
                for with_length in (True, False):
                    cid = bytes(cid_len) if cid_len else None
                    record = cipher.seal(0, 1, 23, bytes(n), cid=cid, seq16=seq16,
                                         with_length=with_length)  # fmt: skip
                    assert len(record) == cipher.sealed_len(
                        n, cid_len=cid_len, seq16=seq16, with_length=with_length
                    )
    # CCM_8: 1 + 8 < 16, so an empty payload is padded with 7 zeros (RFC 9147 §4.2.3)
    assert cipher.sealed_len(0) == 5 + max(1 + TAG_LEN[suite], 16)
    with pytest.raises(ValueError):
        cipher.sealed_len(2**14 + 1)


# ---- DTLSPlaintext and splitting datagrams (RFC 9147 §4, §4.1) ----


def test_seal_plaintext() -> None:
    record = seal_plaintext(22, 0x010203040506, b"abc", epoch=0x0708)
    assert record == bytes.fromhex("16fefd0708010203040506") + b"\x00\x03abc"
    assert len(seal_plaintext(21, 0, b"")) == PLAINTEXT_HEADER_LEN
    with pytest.raises(ValueError):
        seal_plaintext(22, 2**48, b"")
    with pytest.raises(ValueError):
        seal_plaintext(22, 0, bytes(2**14 + 1))


def test_split_datagram() -> None:
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    cipher = RecordCipher(suite, keys_for(suite))
    hs = seal_plaintext(22, 4, b"hello", epoch=0)
    ack = seal_plaintext(26, 5, b"\x00\x00", epoch=0)
    with_len = cipher.seal(2, 1, 22, b"encrypted", cid=b"\x09\x08")
    last = cipher.seal(3, 2, 23, b"to the end", cid=b"\x09\x08", with_length=False)
    data = hs + ack + with_len + last
    spans, dropped = split_datagram(data, cid_len=2)
    assert dropped == 0
    assert spans == [
        RecordSpan(0, len(hs), RecordKind.PLAINTEXT, 22, 0, 4),
        RecordSpan(len(hs), len(ack), RecordKind.PLAINTEXT, 26, 0, 5),
        RecordSpan(len(hs) + len(ack), len(with_len), RecordKind.CIPHERTEXT, with_len[0], 2, 0),
        RecordSpan(len(data) - len(last), len(last), RecordKind.CIPHERTEXT, last[0], 3, 0),
    ]
    # the same bytes as a bytearray and a memoryview
    assert split_datagram(bytearray(data), 2) == (spans, 0)
    assert split_datagram(memoryview(data), 2) == (spans, 0)
    # with the wrong CID length the ciphertext records do not parse: the rest is dropped
    spans, dropped = split_datagram(data, cid_len=0)
    assert len(spans) == 2 and dropped == len(data) - len(hs) - len(ack)
    # §4.1: first bytes that are neither 21/22/26 nor 001xxxxx stop the parse
    for bad in (0, 20, 23, 24, 25, 27, 0x40, 0x80, 0xFF):
        spans, dropped = split_datagram(hs + bytes([bad]) + bytes(20))
        assert len(spans) == 1 and dropped == 21, bad
    # a length beyond the datagram, a short header, a plaintext over 2^14
    assert split_datagram(hs[:-1]) == ([], len(hs) - 1)
    assert split_datagram(hs[:12]) == ([], 12)
    huge = bytes.fromhex("16fefd0000000000000000") + (2**14 + 1).to_bytes(2, "big")
    assert split_datagram(huge + bytes(2**14 + 1)) == ([], 13 + 2**14 + 1)
    assert split_datagram(b"") == ([], 0)
    assert split_datagram(b"\x2c\x00") == ([], 2)  # S=1 needs two sequence bytes


def test_split_many_records() -> None:
    """More records than one C call's span array holds."""
    records = [seal_plaintext(22, i, bytes([i]) * (i % 5)) for i in range(150)]
    data = b"".join(records)
    spans, dropped = split_datagram(data)
    assert dropped == 0
    assert [s.seq for s in spans] == list(range(150))
    offsets = [0]
    for r in records:
        offsets.append(offsets[-1] + len(r))
    assert [s.offset for s in spans] == offsets[:-1]
    spans, dropped = split_datagram(data + b"\x00junk")
    assert len(spans) == 150 and dropped == 5


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), cid_len=st.integers(0, 20))
def test_split_and_open_never_crash(data: bytes, cid_len: int) -> None:
    spans, dropped = split_datagram(data, cid_len)
    covered = sum(s.length for s in spans)
    assert covered + dropped == len(data)
    suite = CipherSuite.TLS_AES_128_CCM_8_SHA256
    cipher = RecordCipher(suite, keys_for(suite))
    assert cipher.open(data, ReplayWindow(), cid_len=cid_len) in (
        OpenError.MALFORMED,
        OpenError.AUTH,
    )


# ---- keys (RFC 9846 §7.2, §7.3; RFC 9147 §4.2.3) ----


def expand_label(hash_name: str, secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label with the "dtls13" prefix, written out from RFC 5869 and RFC 9846."""
    full = b"dtls13" + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(secret, block + info + bytes([i]), hash_name)
        out, i = out + block, i + 1
    return out[:length]


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: CipherSuite(s).name)
def test_derive_traffic_keys(suite: int) -> None:
    hash_name = "sha384" if suite == CipherSuite.TLS_AES_256_GCM_SHA384 else "sha256"
    secret = hashlib.new(hash_name, b"traffic secret").digest()
    keys = derive_traffic_keys(suite, secret)
    n = KEY_LEN[suite]
    assert keys.key == expand_label(hash_name, secret, b"key", n)
    assert keys.iv == expand_label(hash_name, secret, b"iv", 12)
    assert keys.sn_key == expand_label(hash_name, secret, b"sn", n)
    nxt = next_traffic_secret(suite, secret)
    assert nxt == expand_label(hash_name, secret, b"traffic upd", len(secret))
    # no key material in a repr
    text = repr(keys)
    assert keys.key.hex() not in text and keys.iv.hex() not in text and str(n) in text
    assert secret.hex() not in repr(RecordCipher.from_secret(suite, secret))
    with pytest.raises(ConfigurationError):
        derive_traffic_keys(0x1399, secret)
