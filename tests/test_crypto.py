"""Tests of dtls.crypto: key exchange groups, CertificateVerify signatures, loading
credentials and certificate chain verification (with the test PKI of tests/pki.py and
the wolfSSL interop credentials)."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mlkem, rsa, x25519

from dtls import crypto
from dtls.crypto import (
    CERTIFICATE_SIGNATURE_SCHEMES,
    DEFAULT_SIGNATURE_SCHEMES,
    SUPPORTED_GROUPS,
    TrustStore,
    certificate_der,
    certificate_verify_content,
    choose_signature_scheme,
    generate_key_share,
    key_matches_certificate,
    load_certificate_chain,
    load_private_key,
    matches_server_name,
    parse_certificates,
    schemes_for_private_key,
    server_key_share,
    sign,
    verify_certificate_chain,
    verify_signature,
)
from dtls.errors import (
    BadCertificate,
    CertificateExpired,
    CertificateRequired,
    ConfigurationError,
    DecodeError,
    DecryptError,
    HandshakeFailure,
    IllegalParameter,
    UnknownCA,
    UnsupportedCertificate,
)
from dtls.iana import AlertDescription, NamedGroup, SignatureScheme

try:
    import pki as test_pki
except ImportError:
    from tests import pki as test_pki

S = SignatureScheme
G = NamedGroup
UTC = datetime.timezone.utc

# ---------------------------------------------------------------------------------------
# Key exchange
# ---------------------------------------------------------------------------------------

# (client share, server share, shared secret) lengths; hybrids per draft-ietf-tls-ecdhe-mlkem
SIZES = {
    G.X25519: (32, 32, 32),
    G.X448: (56, 56, 56),
    G.SECP256R1: (65, 65, 32),
    G.SECP384R1: (97, 97, 48),
    G.SECP521R1: (133, 133, 66),
    G.X25519MLKEM768: (1216, 1120, 64),
    G.SECP256R1MLKEM768: (1249, 1153, 64),
    G.SECP384R1MLKEM1024: (1665, 1665, 80),
}


def test_supported_groups() -> None:
    assert SUPPORTED_GROUPS[0] == G.X25519
    assert set(SUPPORTED_GROUPS) <= set(SIZES)
    assert len(set(SUPPORTED_GROUPS)) == len(SUPPORTED_GROUPS)
    if crypto.MLKEM_AVAILABLE:
        assert G.X25519MLKEM768 in SUPPORTED_GROUPS


@pytest.mark.parametrize("group", SUPPORTED_GROUPS, ids=lambda g: g.name)
def test_key_exchange_agrees(group: NamedGroup) -> None:
    client = generate_key_share(group)
    assert client.group == group
    assert repr(client) == f"<{type(client).__name__} {group.name}>"
    server_public, server_secret = server_key_share(group, client.public_bytes)
    client_secret = client.agree(server_public)
    assert client_secret == server_secret
    assert (len(client.public_bytes), len(server_public), len(client_secret)) == SIZES[group]
    # fresh keys every time
    assert generate_key_share(group).public_bytes != client.public_bytes
    assert server_key_share(group, client.public_bytes)[1] != server_secret


@pytest.mark.parametrize("group", [g for g in SUPPORTED_GROUPS if g < 0x100], ids=lambda g: g.name)
def test_ecdh_agrees_both_ways(group: NamedGroup) -> None:
    a, b = generate_key_share(group), generate_key_share(group)
    assert a.agree(b.public_bytes) == b.agree(a.public_bytes)


def _mlkem_required() -> None:
    if not crypto.MLKEM_AVAILABLE:
        pytest.skip("ML-KEM not available in this OpenSSL")


def test_x25519mlkem768_layout() -> None:
    """KEM part first for X25519MLKEM768, checked with independently made keys."""
    _mlkem_required()
    kem = mlkem.MLKEM768PrivateKey.generate()
    ecdh = x25519.X25519PrivateKey.generate()
    share = kem.public_key().public_bytes_raw() + ecdh.public_key().public_bytes_raw()
    server_public, secret = server_key_share(G.X25519MLKEM768, share)
    ciphertext, server_x25519 = server_public[:1088], server_public[1088:]
    expected = kem.decapsulate(ciphertext) + ecdh.exchange(
        x25519.X25519PublicKey.from_public_bytes(server_x25519)
    )
    assert secret == expected


def test_secp256r1mlkem768_layout() -> None:
    """ECDH part first for SecP256r1MLKEM768, checked with independently made keys."""
    _mlkem_required()
    kem = mlkem.MLKEM768PrivateKey.generate()
    ecdh = ec.generate_private_key(ec.SECP256R1())
    point = ecdh.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    server_public, secret = server_key_share(
        G.SECP256R1MLKEM768, point + kem.public_key().public_bytes_raw()
    )
    server_point, ciphertext = server_public[:65], server_public[65:]
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), server_point)
    assert secret == ecdh.exchange(ec.ECDH(), peer) + kem.decapsulate(ciphertext)


def _not_on_curve(group: NamedGroup) -> bytes:
    size = (SIZES[group][0] - 1) // 2
    return b"\x04" + b"\x01" * size + b"\x02" * size


@pytest.mark.parametrize("group", SUPPORTED_GROUPS, ids=lambda g: g.name)
def test_wrong_length_shares_are_rejected(group: NamedGroup) -> None:
    client = generate_key_share(group)
    server_public, _ = server_key_share(group, client.public_bytes)
    for bad in (b"", client.public_bytes[:-1], client.public_bytes + b"\x00"):
        with pytest.raises(IllegalParameter) as info:
            server_key_share(group, bad)
        assert info.value.alert == AlertDescription.ILLEGAL_PARAMETER
    for bad in (b"", server_public[:-1], server_public + b"\x00"):
        with pytest.raises(IllegalParameter):
            client.agree(bad)


@pytest.mark.parametrize("group", [G.SECP256R1, G.SECP384R1, G.SECP521R1], ids=lambda g: g.name)
def test_invalid_nist_points_are_rejected(group: NamedGroup) -> None:
    client = generate_key_share(group)
    good = generate_key_share(group).public_bytes
    compressed = bytes([2 + (good[-1] & 1)]) + good[1 : 1 + (len(good) - 1) // 2]
    for bad in (
        _not_on_curve(group),
        b"\x04" + bytes(len(good) - 1),  # the point at "zero" is not on the curve
        b"\x05" + good[1:],  # not the uncompressed form
        compressed + bytes(len(good) - len(compressed)),  # compressed form, padded
    ):
        with pytest.raises(IllegalParameter):
            client.agree(bad)
        with pytest.raises(IllegalParameter):
            server_key_share(group, bad)


# RFC 7748 small-order points: the X25519 result is all zeros
X25519_SMALL_ORDER = [
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
]


@pytest.mark.parametrize("point", X25519_SMALL_ORDER, ids=["zero", "one", "order8"])
def test_x25519_all_zero_result_is_rejected(point: bytes) -> None:
    with pytest.raises(IllegalParameter):
        generate_key_share(G.X25519).agree(point)
    with pytest.raises(IllegalParameter):
        server_key_share(G.X25519, point)


def test_hybrid_invalid_parts_are_rejected() -> None:
    _mlkem_required()
    client = generate_key_share(G.X25519MLKEM768)
    good = client.public_bytes
    # an encapsulation key failing the FIPS 203 §7.2 modulus check
    with pytest.raises(IllegalParameter):
        server_key_share(G.X25519MLKEM768, b"\xff" * 1184 + good[1184:])
    # an all-zero X25519 part
    with pytest.raises(IllegalParameter):
        server_key_share(G.X25519MLKEM768, good[:1184] + bytes(32))
    server_public, _ = server_key_share(G.X25519MLKEM768, good)
    with pytest.raises(IllegalParameter):
        client.agree(server_public[:1088] + bytes(32))
    # a P-256 hybrid with an off-curve point
    p256 = generate_key_share(G.SECP256R1MLKEM768)
    with pytest.raises(IllegalParameter):
        server_key_share(G.SECP256R1MLKEM768, _not_on_curve(G.SECP256R1) + p256.public_bytes[65:])


def test_unknown_group_is_a_configuration_error() -> None:
    for group in (G.FFDHE2048, 0x1234):
        with pytest.raises(ConfigurationError):
            generate_key_share(group)
        with pytest.raises(ConfigurationError):
            server_key_share(group, b"\x00" * 32)


# ---------------------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------------------

EXPECTED_SCHEMES = {
    "server": [S.ECDSA_SECP256R1_SHA256],
    "server_p384": [S.ECDSA_SECP384R1_SHA384],
    "server_ed25519": [S.ED25519],
    "server_rsa": [S.RSA_PSS_RSAE_SHA256, S.RSA_PSS_RSAE_SHA384, S.RSA_PSS_RSAE_SHA512],
}


def test_default_schemes_exclude_pkcs1_and_sha1() -> None:
    assert DEFAULT_SIGNATURE_SCHEMES[0] == S.ECDSA_SECP256R1_SHA256
    for scheme in (S.RSA_PKCS1_SHA256, S.RSA_PKCS1_SHA384, S.RSA_PKCS1_SHA512, 0x0201, 0x0203):
        assert scheme not in DEFAULT_SIGNATURE_SCHEMES
    assert set(DEFAULT_SIGNATURE_SCHEMES) < set(CERTIFICATE_SIGNATURE_SCHEMES)
    assert S.RSA_PKCS1_SHA256 in CERTIFICATE_SIGNATURE_SCHEMES


def test_certificate_verify_content_rfc_example() -> None:
    # RFC 9846 §4.4.3: a transcript hash of 32 bytes of 01, server side
    expected = bytes.fromhex(
        "20" * 64 + "544c5320312e332c207365727665722043657274696669636174655665726966" + "79"
        "00" + "01" * 32
    )
    assert certificate_verify_content(True, b"\x01" * 32) == expected
    client = certificate_verify_content(False, b"\x01" * 32)
    assert client == b" " * 64 + b"TLS 1.3, client CertificateVerify\x00" + b"\x01" * 32


def _other_public_key(pki: test_pki.PKI, name: str) -> crypto.PublicKey:
    """Another public key of the same type."""
    if name == "server":
        return pki.client.cert.public_key()  # type: ignore[return-value]
    if name == "server_p384":
        return ec.generate_private_key(ec.SECP384R1()).public_key()
    if name == "server_ed25519":
        return ed25519.Ed25519PrivateKey.generate().public_key()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()


@pytest.mark.parametrize("name", sorted(EXPECTED_SCHEMES))
def test_sign_and_verify(pki: test_pki.PKI, name: str) -> None:
    cred = pki[name]
    schemes = schemes_for_private_key(cred.key)
    assert schemes == EXPECTED_SCHEMES[name]
    assert schemes_for_private_key(cred.key, cred.cert) == schemes
    other = _other_public_key(pki, name)
    data = certificate_verify_content(True, b"\x02" * 32)
    for scheme in schemes:
        signature = sign(cred.key, scheme, data)
        verify_signature(cred.cert, scheme, signature, data)
        verify_signature(cred.cert.public_key(), scheme, signature, data)  # type: ignore[arg-type]
        tampered = bytearray(signature)
        tampered[len(tampered) // 2] ^= 0x40
        with pytest.raises(DecryptError) as info:
            verify_signature(cred.cert, scheme, bytes(tampered), data)
        assert info.value.alert == AlertDescription.DECRYPT_ERROR
        with pytest.raises(DecryptError):
            verify_signature(cred.cert, scheme, signature, data + b"x")
        with pytest.raises(DecryptError):
            verify_signature(cred.cert, scheme, b"", data)
        with pytest.raises(DecryptError):
            verify_signature(other, scheme, signature, data)


def test_wrong_scheme_for_key(pki: test_pki.PKI) -> None:
    data = b"content"
    cases = [
        (pki.server, S.ECDSA_SECP384R1_SHA384),  # ECDSA is bound to its curve
        (pki.server, S.ED25519),
        (pki.server, S.RSA_PSS_RSAE_SHA256),
        (pki.server_p384, S.ECDSA_SECP256R1_SHA256),
        (pki.server_ed25519, S.ECDSA_SECP256R1_SHA256),
        (pki.server_ed25519, S.ED448),
        (pki.server_rsa, S.ED25519),
        (pki.server_rsa, S.RSA_PSS_PSS_SHA256),  # rsaEncryption certificate: rsae only
    ]
    for cred, scheme in cases:
        with pytest.raises(IllegalParameter):
            verify_signature(cred.cert, scheme, b"\x30" * 64, data)
        if scheme != S.RSA_PSS_PSS_SHA256:  # a bare RSA key may sign either family
            with pytest.raises(ConfigurationError):
                sign(cred.key, scheme, data)
    # schemes never allowed in CertificateVerify (RFC 9846 §4.4.3)
    rsa_signature = sign(pki.server_rsa.key, S.RSA_PSS_RSAE_SHA256, data)
    for never in (S.RSA_PKCS1_SHA256, 0x0201, 0x0203, 0xFE00):
        with pytest.raises(IllegalParameter):
            verify_signature(pki.server_rsa.cert, never, rsa_signature, data)
        with pytest.raises(ConfigurationError):
            sign(pki.server_rsa.key, never, data)


def test_rsa_pss_oid_certificate(tmp_path: Path) -> None:
    """rsa_pss_pss_* needs a certificate with the RSASSA-PSS OID (RFC 9846 §4.2.3)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make an RSASSA-PSS certificate")
    key_path, cert_path = tmp_path / "pss.key", tmp_path / "pss.crt"
    result = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048",
         "-keyout", str(key_path), "-out", str(cert_path), "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        capture_output=True,
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.skip("this openssl cannot make an RSASSA-PSS certificate")
    key = load_private_key(key_path)
    cert = load_certificate_chain(cert_path)[0]
    assert key_matches_certificate(key, cert)
    assert schemes_for_private_key(key, cert) == [
        S.RSA_PSS_PSS_SHA256,
        S.RSA_PSS_PSS_SHA384,
        S.RSA_PSS_PSS_SHA512,
    ]
    assert choose_signature_scheme(key, [S.RSA_PSS_RSAE_SHA256, S.RSA_PSS_PSS_SHA384], cert) == (
        S.RSA_PSS_PSS_SHA384
    )
    data = b"content"
    verify_signature(cert, S.RSA_PSS_PSS_SHA256, sign(key, S.RSA_PSS_PSS_SHA256, data), data)
    with pytest.raises(IllegalParameter):
        verify_signature(cert, S.RSA_PSS_RSAE_SHA256, sign(key, S.RSA_PSS_RSAE_SHA256, data), data)
    now = datetime.datetime.now(UTC)
    path = verify_certificate_chain(
        [certificate_der(cert)],
        TrustStore(cafile=cert_path),
        server_name="localhost",
        is_server_cert=True,
        when=now,
    )
    assert path == [cert]


def test_choose_signature_scheme(pki: test_pki.PKI) -> None:
    offered = [S.RSA_PSS_RSAE_SHA512, S.ED25519, S.ECDSA_SECP256R1_SHA256]
    assert choose_signature_scheme(pki.server.key, offered) == S.ECDSA_SECP256R1_SHA256
    assert choose_signature_scheme(pki.server_ed25519.key, offered) == S.ED25519
    assert choose_signature_scheme(pki.server_rsa.key, offered) == S.RSA_PSS_RSAE_SHA512
    assert (
        choose_signature_scheme(pki.server_rsa.key, DEFAULT_SIGNATURE_SCHEMES)
        == S.RSA_PSS_RSAE_SHA256
    )
    for key, peer in (
        (pki.server_p384.key, offered),
        (pki.server.key, [S.ECDSA_SECP384R1_SHA384, S.RSA_PKCS1_SHA256]),
        (pki.server.key, []),
    ):
        with pytest.raises(HandshakeFailure) as info:
            choose_signature_scheme(key, peer)
        assert info.value.alert == AlertDescription.HANDSHAKE_FAILURE


def test_small_rsa_key_skips_sha512() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    # RFC 8017 §9.1.1: a 1024-bit key is too short for PSS with SHA-512 and a 64-byte salt
    assert schemes_for_private_key(key) == [S.RSA_PSS_RSAE_SHA256, S.RSA_PSS_RSAE_SHA384]


# ---------------------------------------------------------------------------------------
# Loading certificates, keys and trust stores
# ---------------------------------------------------------------------------------------


def test_load_certificate_chain(pki: test_pki.PKI, pki_paths: test_pki.PKIPaths) -> None:
    chain = load_certificate_chain(pki_paths.certfile)
    assert [certificate_der(c) for c in chain] == pki.server.chain_der
    assert load_certificate_chain(certdata=pki.chain_pem) == chain
    assert load_certificate_chain(certdata=pki.chain_pem.decode()) == chain
    assert load_certificate_chain(certdata=pki.server.cert_der) == chain[:1]
    assert load_certificate_chain(certfile=str(pki_paths["server"].leaf_certfile)) == chain[:1]
    for bad in (b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"):
        with pytest.raises(ConfigurationError):
            load_certificate_chain(certdata=bad)
    with pytest.raises(ConfigurationError):
        load_certificate_chain()
    with pytest.raises(ConfigurationError):
        load_certificate_chain(pki_paths.certfile, pki.chain_pem)
    with pytest.raises(ConfigurationError):
        load_certificate_chain(pki_paths.directory / "missing.pem")


def test_load_private_key(pki: test_pki.PKI, pki_paths: test_pki.PKIPaths, tmp_path: Path) -> None:
    key = load_private_key(pki_paths.keyfile)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key_matches_certificate(key, pki.server.cert)
    assert not key_matches_certificate(key, pki.server_p384.cert)
    for name in ("server_p384", "server_ed25519", "server_rsa", "client"):
        assert key_matches_certificate(load_private_key(keydata=pki[name].key_pem), pki[name].cert)
    der = pki.server.key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert key_matches_certificate(load_private_key(keydata=der), pki.server.cert)
    # one PEM file with the chain and the key, as some servers keep them
    combined = tmp_path / "combined.pem"
    combined.write_bytes(pki.chain_pem + pki.key_pem)
    assert key_matches_certificate(load_private_key(combined), pki.server.cert)
    assert len(load_certificate_chain(combined)) == 2
    with pytest.raises(ConfigurationError):
        load_private_key(keydata=pki.chain_pem)
    with pytest.raises(ConfigurationError):
        load_private_key(keydata=b"\x30\x03\x02\x01\x00")


def test_load_encrypted_private_key(pki: test_pki.PKI) -> None:
    password = "correct horse"
    pem = pki.server.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode()),
    )
    key = load_private_key(keydata=pem, password=password)
    assert key_matches_certificate(key, pki.server.cert)
    assert key_matches_certificate(
        load_private_key(keydata=pem, password=password.encode()), pki.server.cert
    )
    for wrong in (None, "not the password"):
        with pytest.raises(ConfigurationError) as info:
            load_private_key(keydata=pem, password=wrong)
        assert password not in str(info.value)
        assert "not the password" not in str(info.value)


def test_unsupported_private_key_type() -> None:
    from cryptography.hazmat.primitives.asymmetric import dsa

    pem = dsa.generate_private_key(2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigurationError):
        load_private_key(keydata=pem)


def test_trust_store_sources(
    pki: test_pki.PKI, pki_paths: test_pki.PKIPaths, tmp_path: Path
) -> None:
    from_file = TrustStore(cafile=pki_paths.cafile)
    assert [certificate_der(c) for c in from_file.certificates] == [pki.ca_der]
    assert pki.ca_der in from_file
    assert pki.server.cert_der not in from_file
    assert repr(from_file) == "<TrustStore 1 certificates>"
    assert TrustStore(cadata=pki.ca_pem).certificates == from_file.certificates
    assert TrustStore(cadata=pki.ca_pem.decode()).certificates == from_file.certificates
    assert TrustStore(cadata=pki.ca_der).certificates == from_file.certificates
    both = TrustStore(cadata=pki.ca_der + pki.other_root.cert_der)  # concatenated DER
    assert len(both.certificates) == 2
    directory = tmp_path / "capath"
    directory.mkdir()
    (directory / "a.pem").write_bytes(pki.ca_pem)
    (directory / "b.pem").write_bytes(pki.other_root.cert_pem + pki.ca_pem)
    (directory / "notes.txt").write_text("not a certificate")
    assert len(TrustStore(capath=directory).certificates) == 2
    assert len(TrustStore.from_certificates([pki.root.cert]).certificates) == 1
    for bad in ({"cadata": b""}, {"cadata": b"junk"}, {"capath": tmp_path / "nothing"}):
        with pytest.raises(ConfigurationError):
            TrustStore(**bad)  # type: ignore[arg-type]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigurationError):
        TrustStore(capath=empty)


def test_system_trust_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    crypto._system_trust_store.cache_clear()
    try:
        try:
            store = TrustStore()
        except ConfigurationError:
            pytest.skip("no system CA certificates here")
        assert len(store.certificates) > 0
        assert TrustStore.system() is TrustStore.system()
        assert TrustStore().store is store.store  # loaded once, shared
    finally:
        crypto._system_trust_store.cache_clear()

    nowhere = str(tmp_path / "none")
    monkeypatch.setenv("SSL_CERT_FILE", nowhere)
    monkeypatch.setenv("SSL_CERT_DIR", nowhere)
    monkeypatch.setattr(
        ssl,
        "get_default_verify_paths",
        lambda: ssl.DefaultVerifyPaths(  # type: ignore[call-arg]
            nowhere, nowhere, "SSL_CERT_FILE", nowhere, "SSL_CERT_DIR", nowhere
        ),
    )
    try:
        with pytest.raises(ConfigurationError, match="system CA"):
            TrustStore()
    finally:
        crypto._system_trust_store.cache_clear()


# ---------------------------------------------------------------------------------------
# Certificate chain verification
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trust(pki: test_pki.PKI) -> TrustStore:
    return TrustStore(cadata=pki.ca_pem)


def verify(
    chain: list[bytes],
    trust: TrustStore,
    server_name: str | None = "localhost",
    is_server_cert: bool = True,
    when: datetime.datetime | None = None,
) -> list[x509.Certificate]:
    return verify_certificate_chain(
        chain,
        trust,
        server_name=server_name,
        is_server_cert=is_server_cert,
        when=when or datetime.datetime.now(UTC),
    )


@pytest.mark.parametrize("name", ["server", "server_p384", "server_ed25519", "server_rsa"])
def test_good_chains(pki: test_pki.PKI, name: str) -> None:
    # a fresh store each time, so the result is not a cached one
    trust = TrustStore(cadata=pki.ca_pem)
    cred = pki[name]
    for server_name in ("localhost", "server.example", "127.0.0.1", "::1", "LocalHost."):
        path = verify(cred.chain_der, trust, server_name)
        assert path == [cred.cert, pki.intermediate.cert, pki.root.cert]
    # a server that also sends the root is fine
    assert len(verify([*cred.chain_der, pki.root.cert_der], trust)) == 3
    # naive datetimes are taken as UTC
    assert (
        len(verify(cred.chain_der, trust, when=datetime.datetime.now(UTC).replace(tzinfo=None)))
        == 3
    )


def test_wrong_name(pki: test_pki.PKI, trust: TrustStore) -> None:
    for server_name in ("other.example", "localhost.example", "10.0.0.1", "::2", "example"):
        with pytest.raises(BadCertificate) as info:
            verify(pki.server.chain_der, trust, server_name)
        assert info.value.alert == AlertDescription.BAD_CERTIFICATE  # as OpenSSL
    # no check at all when the application turned it off
    assert len(verify(pki.server.chain_der, trust, None)) == 3


def test_wildcard_name(pki: test_pki.PKI, trust: TrustStore) -> None:
    assert len(verify(pki.wildcard.chain_der, trust, "a.wild.example")) == 3
    assert len(verify(pki.wildcard.chain_der, trust, "B.Wild.Example")) == 3
    for server_name in ("wild.example", "a.b.wild.example", "awild.example", "127.0.0.1"):
        with pytest.raises(BadCertificate):
            verify(pki.wildcard.chain_der, trust, server_name)


def test_expired_and_not_yet_valid(pki: test_pki.PKI, trust: TrustStore) -> None:
    for cred in (pki.expired, pki.not_yet_valid):
        with pytest.raises(CertificateExpired) as info:
            verify(cred.chain_der, trust)
        assert info.value.alert == AlertDescription.CERTIFICATE_EXPIRED
    # the good server certificate outside its validity period
    for when in (pki.now - datetime.timedelta(days=2), pki.now + datetime.timedelta(days=400)):
        with pytest.raises(CertificateExpired):
            verify(pki.server.chain_der, trust, when=when)


def test_expired_intermediate(pki: test_pki.PKI, trust: TrustStore) -> None:
    day = datetime.timedelta(days=1)
    intermediate = test_pki._ca(
        "old", "Expired Intermediate", pki.root, pki.now - 10 * day, pki.now - day
    )
    leaf = test_pki._leaf(
        "leaf", pki.server.key, intermediate, pki.now - day, pki.now + day, server=True
    )
    with pytest.raises(CertificateExpired):
        verify([leaf.cert_der, intermediate.cert_der], trust)


def test_unknown_ca(pki: test_pki.PKI, trust: TrustStore) -> None:
    with pytest.raises(UnknownCA) as info:
        verify(pki.unknown_ca.chain_der, trust)
    assert info.value.alert == AlertDescription.UNKNOWN_CA
    # the intermediate left out
    with pytest.raises(UnknownCA):
        verify(pki.server.chain_der[:1], trust)
    # trusting only the other root
    with pytest.raises(UnknownCA):
        verify(pki.server.chain_der, TrustStore(cadata=pki.other_root.cert_pem))


def test_intermediate_or_leaf_as_trust_anchor(pki: test_pki.PKI) -> None:
    store = TrustStore(cadata=pki.intermediate.cert_pem)
    assert verify(pki.server.chain_der[:1], store) == [pki.server.cert, pki.intermediate.cert]
    pinned = TrustStore(cadata=pki.server.cert_pem)  # a CA-issued leaf, pinned on its own
    assert verify(pki.server.chain_der[:1], pinned) == [pki.server.cert]
    assert pki.server.cert_der in pinned
    with pytest.raises(UnknownCA):
        verify(pki.server_p384.chain_der[:1], pinned)


def test_bad_chains(pki: test_pki.PKI, trust: TrustStore) -> None:
    with pytest.raises(BadCertificate):
        verify([b"\x30\x03\x02\x01\x00"], trust)
    with pytest.raises(BadCertificate):
        verify([pki.server.cert_der, b"junk"], trust)
    with pytest.raises(BadCertificate):
        parse_certificates([b"junk"])
    assert parse_certificates(pki.server.chain_der) == [pki.server.cert, pki.intermediate.cert]
    with pytest.raises(DecodeError):
        verify([], trust)
    with pytest.raises(CertificateRequired) as info:
        verify([], trust, None, is_server_cert=False)
    assert info.value.alert == AlertDescription.CERTIFICATE_REQUIRED


def test_roles(pki: test_pki.PKI, trust: TrustStore) -> None:
    path = verify(pki.client.chain_der, trust, None, is_server_cert=False)
    assert path[0] == pki.client.cert
    # extendedKeyUsage: a client certificate is not a server certificate and vice versa
    with pytest.raises(UnsupportedCertificate) as info:
        verify(pki.client.chain_der, trust, "client.example", is_server_cert=True)
    assert info.value.alert == AlertDescription.UNSUPPORTED_CERTIFICATE
    with pytest.raises(UnsupportedCertificate):
        verify(pki.server.chain_der, trust, None, is_server_cert=False)


def test_small_rsa_leaf_is_rejected(pki: test_pki.PKI, trust: TrustStore) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    day = datetime.timedelta(days=1)
    leaf = test_pki._leaf(
        "rsa1024", key, pki.intermediate, pki.now - day, pki.now + day, server=True
    )
    with pytest.raises(BadCertificate):
        verify(leaf.chain_der, trust)


def test_verified_chains_are_cached_but_rechecked(pki: test_pki.PKI) -> None:
    trust = TrustStore(cadata=pki.ca_pem)
    first = verify(pki.server.chain_der, trust)
    assert len(trust._verified) == 1
    assert verify(pki.server.chain_der, trust) == first
    assert verify(pki.server.chain_der, trust, "127.0.0.1") == first
    # the name, the time and the role are checked again on a cached chain
    with pytest.raises(BadCertificate):
        verify(pki.server.chain_der, trust, "other.example")
    with pytest.raises(CertificateExpired):
        verify(pki.server.chain_der, trust, when=pki.now + datetime.timedelta(days=400))
    with pytest.raises(UnsupportedCertificate):
        verify(pki.server.chain_der, trust, None, is_server_cert=False)
    # a store does not answer for another store
    with pytest.raises(UnknownCA):
        verify(pki.server.chain_der, TrustStore(cadata=pki.other_root.cert_pem))


def test_directly_trusted_self_signed_leaf(pki: test_pki.PKI) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "device")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(pki.now - datetime.timedelta(days=1))
        .not_valid_after(pki.now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=False)
        .sign(key, None)
    )
    der = certificate_der(cert)
    store = TrustStore(cadata=der)
    assert verify([der], store, None, is_server_cert=False) == [cert]
    assert verify([der], store, "device") == [cert]  # CN fallback: no SAN at all
    with pytest.raises(BadCertificate):
        verify([der], store, "other")
    with pytest.raises(UnknownCA):
        verify([der], TrustStore(cadata=pki.ca_pem), None, is_server_cert=False)
    with pytest.raises(CertificateExpired):
        verify([der], store, None, False, pki.now + datetime.timedelta(days=2))


def _named_cert(common_name: str, sans: list[x509.GeneralName]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_matches_server_name(pki: test_pki.PKI) -> None:
    cert = pki.server.cert
    assert matches_server_name(cert, "localhost")
    assert matches_server_name(cert, "localhost.")  # a trailing dot is the same name
    assert matches_server_name(cert, "SERVER.example")
    assert matches_server_name(cert, "[::1]")
    assert matches_server_name(cert, "0:0:0:0:0:0:0:1")
    for name in ("", ".", "server.example.com", "bücher.example", "127.0.0.2", "*.example"):
        assert not matches_server_name(cert, name)
    assert not matches_server_name(pki.wildcard.cert, "*.wild.example.evil")
    # IP addresses only match iPAddress entries, never DNS names or the CN
    ip_in_dns = _named_cert("127.0.0.1", [x509.DNSName("127.0.0.1")])
    assert not matches_server_name(ip_in_dns, "127.0.0.1")
    # the CN counts only when there is no dNSName at all (as OpenSSL)
    only_ip = _named_cert("device.example", [x509.IPAddress(ipaddress.ip_address("10.1.1.1"))])
    assert matches_server_name(only_ip, "device.example")
    assert matches_server_name(only_ip, "10.1.1.1")
    with_dns = _named_cert("device.example", [x509.DNSName("other.example")])
    assert not matches_server_name(with_dns, "device.example")
    # internationalized names compare as A-labels
    idn = _named_cert("x", [x509.DNSName("xn--bcher-kva.example")])
    assert matches_server_name(idn, "bücher.example")
    assert matches_server_name(idn, "xn--bcher-kva.example")
    # wildcards: the whole leftmost label only, and not right under a top-level label
    wild = _named_cert("x", [x509.DNSName("*.example"), x509.DNSName("f*.other.example")])
    assert not matches_server_name(wild, "a.example")
    assert not matches_server_name(wild, "foo.other.example")


# ---------------------------------------------------------------------------------------
# The wolfSSL interop credentials (tests/vectors/wolfssl/creds)
# ---------------------------------------------------------------------------------------

WOLFSSL_TIME = datetime.datetime(2026, 1, 1, tzinfo=UTC)


def test_wolfssl_server_chain(wolfssl_creds: Path) -> None:
    chain = load_certificate_chain(wolfssl_creds / "server-ecc.pem")  # text before the PEM
    trust = TrustStore(cafile=wolfssl_creds / "ca-ecc-cert.pem")
    ders = [certificate_der(c) for c in chain]
    # no subjectAltName: the name is in the subject CN, which OpenSSL falls back to
    path = verify(ders, trust, "www.wolfssl.com", when=WOLFSSL_TIME)
    assert [c.subject for c in path] == [chain[0].subject, trust.certificates[0].subject]
    with pytest.raises(BadCertificate):
        verify(ders, trust, "example.com", when=WOLFSSL_TIME)
    with pytest.raises(CertificateExpired):
        verify(ders, trust, "www.wolfssl.com", when=datetime.datetime(2029, 1, 1, tzinfo=UTC))
    key = load_private_key(wolfssl_creds / "ecc-key.pem")  # EC PARAMETERS block first
    assert key_matches_certificate(key, chain[0])
    assert schemes_for_private_key(key) == [S.ECDSA_SECP256R1_SHA256]


def test_wolfssl_self_signed_client_trusted_directly(wolfssl_creds: Path) -> None:
    chain = load_certificate_chain(wolfssl_creds / "client-ecc-cert.pem")
    der = [certificate_der(chain[0])]
    trust = TrustStore(cafile=wolfssl_creds / "client-ecc-cert.pem")
    # cA=TRUE and self-signed, as wolfSSL's mtls scenario has it: accepted as pinned
    assert verify(der, trust, None, is_server_cert=False, when=WOLFSSL_TIME) == chain
    with pytest.raises(UnknownCA):
        verify(
            der,
            TrustStore(cafile=wolfssl_creds / "ca-ecc-cert.pem"),
            None,
            is_server_cert=False,
            when=WOLFSSL_TIME,
        )
    key = load_private_key(wolfssl_creds / "ecc-client-key.pem")
    assert key_matches_certificate(key, chain[0])
    # its SAN has DNS example.com and IP 127.0.0.1
    assert verify(der, trust, "127.0.0.1", when=WOLFSSL_TIME) == chain
    assert verify(der, trust, "example.com", when=WOLFSSL_TIME) == chain
    with pytest.raises(BadCertificate):
        verify(der, trust, "www.wolfssl.com", when=WOLFSSL_TIME)  # SAN present: no CN fallback


def test_wolfssl_signature(wolfssl_creds: Path) -> None:
    key = load_private_key(wolfssl_creds / "ecc-key.pem")
    cert = load_certificate_chain(wolfssl_creds / "server-ecc.pem")[0]
    data = certificate_verify_content(True, hashes.Hash(hashes.SHA256()).finalize())
    verify_signature(
        cert, S.ECDSA_SECP256R1_SHA256, sign(key, S.ECDSA_SECP256R1_SHA256, data), data
    )
