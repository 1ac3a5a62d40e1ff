"""HKDF and the record keys of a traffic secret in C (csrc/kdf.c, RFC 5869, RFC 9846 §7.1).

Expected values come from outside the code under test: the RFC 5869 Appendix A vectors,
RFC 8448's traffic keys, and `cryptography`'s HKDF.
"""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from hypothesis import given
from hypothesis import strategies as st

from dtls import keyschedule, provider, record, record_py
from dtls.iana import CipherSuite

HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}


def h(text: str) -> bytes:
    return bytes.fromhex(text)


@pytest.mark.parametrize(
    ("salt", "info", "prk", "okm"),
    [
        (  # RFC 5869 A.1
            "000102030405060708090a0b0c",
            "f0f1f2f3f4f5f6f7f8f9",
            "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        (  # RFC 5869 A.3: empty salt and info
            "",
            "",
            "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ],
)
def test_rfc5869_vectors(salt: str, info: str, prk: str, okm: str) -> None:
    assert record.hkdf_extract("sha256", h(salt), b"\x0b" * 22) == h(prk)
    assert record.hkdf_expand("sha256", h(prk), h(info), 42) == h(okm)


@given(
    hash_name=st.sampled_from(sorted(HASHES)),
    salt=st.binary(max_size=200),
    ikm=st.binary(max_size=200),
    info=st.binary(max_size=300),
    length=st.integers(min_value=1, max_value=700),
)
def test_hkdf_matches_cryptography(
    hash_name: str, salt: bytes, ikm: bytes, info: bytes, length: int
) -> None:
    algorithm = HASHES[hash_name]()
    prk = record.hkdf_extract(hash_name, salt, ikm)
    okm = HKDF(algorithm, length, salt or None, info).derive(ikm)
    assert record.hkdf_expand(hash_name, prk, info, length) == okm
    assert prk == keyschedule.hkdf_extract(hash_name, salt, ikm)
    # a long PRK (longer than the hash's block) is hashed first (RFC 2104 §3)
    assert record.hkdf_expand(hash_name, ikm + salt or b"k", info, length) == HKDFExpand(
        HASHES[hash_name](), length, info
    ).derive(ikm + salt or b"k")


def test_expand_rejects_what_rfc5869_forbids() -> None:
    with pytest.raises(ValueError):
        record.hkdf_expand("sha256", b"k" * 32, b"", 255 * 32 + 1)
    with pytest.raises(ValueError):
        record.hkdf_expand("sha256", b"", b"", 32)
    assert len(record.hkdf_expand("sha256", b"k" * 32, b"", 255 * 32)) == 255 * 32
    # other hashes are not in C: the hashlib path answers
    assert record.hkdf_expand("sha512", b"k", b"i", 10) == keyschedule.hkdf_expand(
        "sha512", b"k", b"i", 10
    )


def test_rfc8448_traffic_keys_in_c() -> None:
    # RFC 8448 §3 server handshake traffic key and iv, with the TLS 1.3 prefix "tls13 "
    secret = h("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
    expand = keyschedule.hkdf_expand_label
    key = expand("sha256", secret, b"key", b"", 16, b"tls13 ", expand=record.hkdf_expand)
    iv = expand("sha256", secret, b"iv", b"", 12, b"tls13 ", expand=record.hkdf_expand)
    assert key == h("3fce516009c21727d0f2e4e86ee403bc")
    assert iv == h("5d313eb2671276ee13000b30")


@pytest.mark.parametrize("suite", list(CipherSuite))
def test_traffic_keys_and_cipher_from_secret(suite: int) -> None:
    size = 48 if suite == CipherSuite.TLS_AES_256_GCM_SHA384 else 32
    for _ in range(20):
        secret = os.urandom(size)
        keys = record.derive_traffic_keys(suite, secret)
        assert keys == record_py.derive_traffic_keys(suite, secret)  # "dtls13" labels
        assert record.next_traffic_secret(suite, secret) == record_py.next_traffic_secret(
            suite, secret
        )
        # the cipher keyed in C seals exactly as the one keyed from Python-derived keys
        from_c = record.RecordCipher.from_secret(suite, secret)
        reference = record_py.RecordCipher(suite, keys)
        payload = os.urandom(100)
        assert from_c.seal(3, 7, 23, payload) == reference.seal(3, 7, 23, payload)
    with pytest.raises(ValueError):
        record.RecordCipher.from_secret(suite, b"")
    with pytest.raises(ValueError):
        record.RecordCipher.from_secret(0x1399, bytes(size))


def test_openssl_provider_key_schedule_runs_in_c() -> None:
    crypto = provider.get_provider("openssl").handshake
    assert crypto.hkdf_expand is record.hkdf_expand
    assert crypto.hkdf_extract is record.hkdf_extract
    assert provider.get_provider("python").handshake.hkdf_expand is keyschedule.hkdf_expand

    assert crypto.key_stage is record.key_stage  # a whole stage in one C call
    assert provider.get_provider("python").handshake.key_stage is None


def test_key_stage_rejects_bad_arguments() -> None:
    """dtls_key_stage checks every length (csrc/kdf.c) rather than reading past a buffer."""
    labels = (b"c hs traffic",)
    assert len(record.key_stage("sha256", b"dtls13", None, bytes(32), bytes(32), labels, 1)) == 3
    for prev, ikm, context, labels_, n_finished in [
        (bytes(31), bytes(32), bytes(32), labels, 0),  # previous secret not HashLen
        (None, b"", bytes(32), labels, 0),  # no ikm
        (None, bytes(32), bytes(256), labels, 0),  # context<0..255>
        (None, bytes(32), bytes(32), labels, 2),  # more finished keys than labels
        (None, bytes(32), bytes(32), (b"",), 0),  # empty label
        (None, bytes(32), bytes(32), (b"x" * 250,), 0),  # prefix + label > 255
        (None, bytes(32), bytes(32), (b"l",) * 9, 0),  # more than 8 labels
    ]:
        with pytest.raises(ValueError):
            record.key_stage("sha256", b"dtls13", prev, ikm, context, labels_, n_finished)
