"""Handshake cryptography: key exchange groups, signatures and certificate checks.

Everything here is a thin, explicit layer over the `cryptography` package:

- key exchange (RFC 9846 §4.2.8, §7.4; draft-ietf-tls-ecdhe-mlkem for the hybrids):
  `generate_key_share()` on the client, `server_key_share()` on the server;
- CertificateVerify signatures (RFC 9846 §4.2.3, §4.4.3): `sign()`, `verify_signature()`,
  `choose_signature_scheme()`;
- certificates: loading chains, keys and trust stores, and `verify_certificate_chain()`,
  which maps each failure to the alert RFC 9846 §6.2 asks for.

No secret (private key, shared secret) ever appears in a repr or an exception message.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import re
import ssl
import warnings
from collections.abc import Callable, Sequence
from typing import Any, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import (
    ec,
    ed448,
    ed25519,
    mlkem,
    padding,
    rsa,
    x448,
    x25519,
)
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, PublicKeyAlgorithmOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from .errors import (
    BadCertificate,
    CertificateExpired,
    CertificateRequired,
    ConfigurationError,
    DecodeError,
    DecryptError,
    HandshakeFailure,
    IllegalParameter,
    InternalError,
    UnknownCA,
    UnsupportedCertificate,
)
from .iana import NamedGroup, SignatureScheme

PrivateKey = (
    ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | rsa.RSAPrivateKey
)
PublicKey = (
    ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey | rsa.RSAPublicKey
)

# ---------------------------------------------------------------------------------------
# Key exchange (RFC 9846 §4.2.8.2, §7.4)
# ---------------------------------------------------------------------------------------

# NIST curves: uncompressed point 0x04 || X || Y (RFC 9846 §4.2.8.2)
_NIST_CURVES: dict[int, tuple[type[ec.EllipticCurve], int]] = {
    NamedGroup.SECP256R1: (ec.SECP256R1, 65),
    NamedGroup.SECP384R1: (ec.SECP384R1, 97),
    NamedGroup.SECP521R1: (ec.SECP521R1, 133),
}
_MONTGOMERY_LENGTH = {NamedGroup.X25519: 32, NamedGroup.X448: 56}
_X25519 = int(NamedGroup.X25519)
_GROUPS = {int(g): g for g in NamedGroup}

# X25519 key generation and peer keys straight from cryptography's Rust binding, which
# `X25519PrivateKey.generate` and `X25519PublicKey.from_public_bytes` call after an import
# and an OpenSSL capability check on every call (two of each per handshake); the public
# wrappers where the binding is not there.
_x25519_generate: Callable[[], x25519.X25519PrivateKey]
_x25519_public: Callable[[bytes], x25519.X25519PublicKey]
try:
    from cryptography.hazmat.bindings._rust import openssl as _rust_openssl

    _x25519_generate = _rust_openssl.x25519.generate_key
    _x25519_public = _rust_openssl.x25519.from_public_bytes
except (ImportError, AttributeError):  # pragma: no cover - other cryptography versions
    _x25519_generate = x25519.X25519PrivateKey.generate
    _x25519_public = x25519.X25519PublicKey.from_public_bytes


class KeyShare:
    """One ephemeral key pair of a named group: `public_bytes` goes into the
    KeyShareEntry, `agree()` takes the peer's key_exchange and returns the shared secret."""

    __slots__ = ()

    group: NamedGroup
    public_bytes: bytes

    def agree(self, peer_key_exchange: bytes) -> bytes:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.group.name}>"


class EcdhKeyShare(KeyShare):
    """X25519, X448 (RFC 7748) or a NIST curve (ECDH, uncompressed points)."""

    __slots__ = ("_private", "group", "public_bytes")

    def __init__(self, group: int) -> None:
        named = _GROUPS.get(group)
        self.group = named if named is not None else NamedGroup(group)
        private: x25519.X25519PrivateKey | x448.X448PrivateKey | ec.EllipticCurvePrivateKey
        if group == _X25519:
            private = _x25519_generate()
            self.public_bytes = private.public_key().public_bytes_raw()
        elif group == NamedGroup.X448:
            private = x448.X448PrivateKey.generate()
            self.public_bytes = private.public_key().public_bytes_raw()
        elif group in _NIST_CURVES:
            private = ec.generate_private_key(_NIST_CURVES[group][0]())
            self.public_bytes = private.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        else:
            raise ConfigurationError(f"not an ECDH group: {group:#06x}")
        self._private = private

    def agree(self, peer_key_exchange: bytes) -> bytes:
        """The ECDH shared secret (RFC 9846 §7.4.2); IllegalParameter for a bad share."""
        group = self.group
        data = bytes(peer_key_exchange)
        private = self._private
        try:
            if group == _X25519:  # no ABC isinstance on the common path
                if len(data) != 32:
                    raise IllegalParameter("X25519 key share has the wrong length")
                shared = cast(x25519.X25519PrivateKey, private).exchange(_x25519_public(data))
            elif isinstance(private, x448.X448PrivateKey):
                if len(data) != 56:
                    raise IllegalParameter("X448 key share has the wrong length")
                shared = private.exchange(x448.X448PublicKey.from_public_bytes(data))
            else:
                curve, length = _NIST_CURVES[group]
                # RFC 9846 §4.2.8.2: only the uncompressed form, and the point must be valid
                if len(data) != length or data[0] != 4:
                    raise IllegalParameter(f"{group.name} key share is not an uncompressed point")
                peer = ec.EllipticCurvePublicKey.from_encoded_point(curve(), data)
                assert isinstance(private, ec.EllipticCurvePrivateKey)
                shared = private.exchange(ec.ECDH(), peer)
        except ValueError:
            # not on the curve, or (X25519/X448) a small-order point
            raise IllegalParameter(f"invalid {group.name} key share") from None
        # RFC 9846 §7.4.2: abort on an all-zero X25519/X448 result (RFC 7748 §6)
        if not any(shared):
            raise IllegalParameter(f"{group.name} shared secret is all zeros")
        return shared


# ML-KEM hybrids (draft-ietf-tls-ecdhe-mlkem §3.1): (ECDH group, ML-KEM kind, KEM part first)
_HYBRIDS: dict[int, tuple[NamedGroup, int, bool]] = {
    NamedGroup.X25519MLKEM768: (NamedGroup.X25519, 768, True),
    NamedGroup.SECP256R1MLKEM768: (NamedGroup.SECP256R1, 768, False),
    NamedGroup.SECP384R1MLKEM1024: (NamedGroup.SECP384R1, 1024, False),
}
# (encapsulation key length, ciphertext length) of FIPS 203
_MLKEM_SIZES = {768: (1184, 1088), 1024: (1568, 1568)}


def _ecdh_share_length(group: NamedGroup) -> int:
    return _MONTGOMERY_LENGTH.get(group) or _NIST_CURVES[group][1]


class HybridKeyShare(KeyShare):
    """A client's ECDHE-MLKEM share (draft-ietf-tls-ecdhe-mlkem §3.1.1).

    X25519MLKEM768 sends the ML-KEM encapsulation key first; SecP256r1MLKEM768 and
    SecP384r1MLKEM1024 send the ECDH point first. The shared secret keeps the same order.
    """

    __slots__ = ("_ecdh", "_kem", "_kem_first", "group", "public_bytes")

    def __init__(self, group: int) -> None:
        self.group = NamedGroup(group)
        ecdh_group, kem, self._kem_first = _HYBRIDS[group]
        self._ecdh = EcdhKeyShare(ecdh_group)
        self._kem: mlkem.MLKEM768PrivateKey | mlkem.MLKEM1024PrivateKey = (
            mlkem.MLKEM768PrivateKey.generate()
            if kem == 768
            else mlkem.MLKEM1024PrivateKey.generate()
        )
        ek = self._kem.public_key().public_bytes_raw()
        ecdh_public = self._ecdh.public_bytes
        self.public_bytes = ek + ecdh_public if self._kem_first else ecdh_public + ek

    def agree(self, peer_key_exchange: bytes) -> bytes:
        """Decapsulate the server's ciphertext and do the ECDH half."""
        ecdh_group, kem, kem_first = _HYBRIDS[self.group]
        ct_len = _MLKEM_SIZES[kem][1]
        ecdh_len = _ecdh_share_length(ecdh_group)
        data = bytes(peer_key_exchange)
        # the client MUST check the ciphertext length (illegal_parameter)
        if len(data) != ct_len + ecdh_len:
            raise IllegalParameter(f"{self.group.name} key share has the wrong length")
        if kem_first:
            ct, ecdh_part = data[:ct_len], data[ct_len:]
        else:
            ecdh_part, ct = data[:ecdh_len], data[ecdh_len:]
        ecdh_secret = self._ecdh.agree(ecdh_part)
        try:
            kem_secret = self._kem.decapsulate(ct)
        except ValueError:
            # any other decapsulation failure is internal_error
            raise InternalError("ML-KEM decapsulation failed") from None
        return kem_secret + ecdh_secret if kem_first else ecdh_secret + kem_secret


def _mlkem_available() -> bool:
    try:
        mlkem.MLKEM768PrivateKey.generate()
    except UnsupportedAlgorithm:
        return False
    return True


MLKEM_AVAILABLE = _mlkem_available()

# Groups this library implements, in its order of preference. Classic X25519 comes first:
# its 32-byte share keeps the ClientHello inside one datagram. The hybrids are offered
# right after it and a server that prefers them can pick them.
SUPPORTED_GROUPS: tuple[NamedGroup, ...] = tuple(
    g
    for g in (
        NamedGroup.X25519,
        NamedGroup.SECP256R1,
        NamedGroup.X25519MLKEM768,
        NamedGroup.SECP384R1,
        NamedGroup.SECP256R1MLKEM768,
        NamedGroup.SECP384R1MLKEM1024,
        NamedGroup.X448,
        NamedGroup.SECP521R1,
    )
    if MLKEM_AVAILABLE or g not in _HYBRIDS
)


def generate_key_share(group: int) -> KeyShare:
    """A fresh ephemeral key share of `group` (a client's KeyShareEntry)."""
    if group in _HYBRIDS:
        if not MLKEM_AVAILABLE:
            raise ConfigurationError("ML-KEM is not available in this OpenSSL")
        return HybridKeyShare(group)
    if group in _MONTGOMERY_LENGTH or group in _NIST_CURVES:
        return EcdhKeyShare(group)
    raise ConfigurationError(f"unsupported key exchange group {group:#06x}")


def server_key_share(group: int, client_key_exchange: bytes) -> tuple[bytes, bytes]:
    """The server's side: (server key_exchange, shared secret) for the client's share.

    For the hybrids the server encapsulates to the client's ML-KEM key
    (draft-ietf-tls-ecdhe-mlkem §3.1.2). IllegalParameter for an invalid client share.
    """
    hybrid = _HYBRIDS.get(group)
    if hybrid is None:
        share = generate_key_share(group)
        return share.public_bytes, share.agree(client_key_exchange)
    if not MLKEM_AVAILABLE:
        raise ConfigurationError("ML-KEM is not available in this OpenSSL")
    ecdh_group, kem, kem_first = hybrid
    ek_len = _MLKEM_SIZES[kem][0]
    ecdh_len = _ecdh_share_length(ecdh_group)
    data = bytes(client_key_exchange)
    if len(data) != ek_len + ecdh_len:
        raise IllegalParameter(f"{NamedGroup(group).name} key share has the wrong length")
    if kem_first:
        ek_bytes, ecdh_part = data[:ek_len], data[ek_len:]
    else:
        ecdh_part, ek_bytes = data[:ecdh_len], data[ecdh_len:]
    try:
        # from_public_bytes runs the encapsulation key check of FIPS 203 §7.2
        ek = (
            mlkem.MLKEM768PublicKey.from_public_bytes(ek_bytes)
            if kem == 768
            else mlkem.MLKEM1024PublicKey.from_public_bytes(ek_bytes)
        )
    except ValueError:
        raise IllegalParameter("invalid ML-KEM encapsulation key") from None
    ecdh = EcdhKeyShare(ecdh_group)
    ecdh_secret = ecdh.agree(ecdh_part)
    kem_secret, ciphertext = ek.encapsulate()
    if kem_first:
        return ciphertext + ecdh.public_bytes, kem_secret + ecdh_secret
    return ecdh.public_bytes + ciphertext, ecdh_secret + kem_secret


# ---------------------------------------------------------------------------------------
# Signatures (RFC 9846 §4.2.3, §4.4.3)
# ---------------------------------------------------------------------------------------

_SHA256 = hashes.SHA256()
_SHA384 = hashes.SHA384()
_SHA512 = hashes.SHA512()

# scheme -> (key kind, hash); key kinds: "secp256r1" ... (ECDSA curve), "ed25519",
# "ed448", "rsae" (RSA key, rsaEncryption OID), "pss" (RSA key, RSASSA-PSS OID)
_SCHEMES: dict[int, tuple[str, hashes.HashAlgorithm | None]] = {
    SignatureScheme.ECDSA_SECP256R1_SHA256: ("secp256r1", _SHA256),
    SignatureScheme.ECDSA_SECP384R1_SHA384: ("secp384r1", _SHA384),
    SignatureScheme.ECDSA_SECP521R1_SHA512: ("secp521r1", _SHA512),
    SignatureScheme.ED25519: ("ed25519", None),
    SignatureScheme.ED448: ("ed448", None),
    SignatureScheme.RSA_PSS_RSAE_SHA256: ("rsae", _SHA256),
    SignatureScheme.RSA_PSS_RSAE_SHA384: ("rsae", _SHA384),
    SignatureScheme.RSA_PSS_RSAE_SHA512: ("rsae", _SHA512),
    SignatureScheme.RSA_PSS_PSS_SHA256: ("pss", _SHA256),
    SignatureScheme.RSA_PSS_PSS_SHA384: ("pss", _SHA384),
    SignatureScheme.RSA_PSS_PSS_SHA512: ("pss", _SHA512),
}
# key kind -> its schemes, in _SCHEMES order
_SCHEMES_OF_KIND: dict[str, tuple[SignatureScheme, ...]] = {
    kind: tuple(SignatureScheme(s) for s, (k, _) in _SCHEMES.items() if k == kind)
    for kind, _ in _SCHEMES.values()
}
# the ECDSA signature algorithm objects of the ECDSA schemes, made once
_ECDSA = {
    scheme: ec.ECDSA(algorithm)
    for scheme, (kind, algorithm) in _SCHEMES.items()
    if kind.startswith("secp") and algorithm is not None
}

# What we sign and accept in CertificateVerify, in preference order: no RSASSA-PKCS1-v1_5
# and no SHA-1 (RFC 9846 §4.2.3, §4.4.3).
DEFAULT_SIGNATURE_SCHEMES: tuple[SignatureScheme, ...] = tuple(SignatureScheme(s) for s in _SCHEMES)

# What a client may also list for signatures in certificates (signature_algorithms_cert, or
# signature_algorithms when that is absent): PKCS#1 v1.5 is allowed there (RFC 9846 §4.2.3).
CERTIFICATE_SIGNATURE_SCHEMES: tuple[SignatureScheme, ...] = (
    *DEFAULT_SIGNATURE_SCHEMES,
    SignatureScheme.RSA_PKCS1_SHA256,
    SignatureScheme.RSA_PKCS1_SHA384,
    SignatureScheme.RSA_PKCS1_SHA512,
)

_RSA_SCHEMES = {
    "rsae": (
        SignatureScheme.RSA_PSS_RSAE_SHA256,
        SignatureScheme.RSA_PSS_RSAE_SHA384,
        SignatureScheme.RSA_PSS_RSAE_SHA512,
    ),
    "pss": (
        SignatureScheme.RSA_PSS_PSS_SHA256,
        SignatureScheme.RSA_PSS_PSS_SHA384,
        SignatureScheme.RSA_PSS_PSS_SHA512,
    ),
}
_ECDSA_SCHEMES = {
    "secp256r1": SignatureScheme.ECDSA_SECP256R1_SHA256,
    "secp384r1": SignatureScheme.ECDSA_SECP384R1_SHA384,
    "secp521r1": SignatureScheme.ECDSA_SECP521R1_SHA512,
}

_SERVER_CONTEXT = b" " * 64 + b"TLS 1.3, server CertificateVerify\x00"
_CLIENT_CONTEXT = b" " * 64 + b"TLS 1.3, client CertificateVerify\x00"


def certificate_verify_content(is_server: bool, transcript_hash: bytes) -> bytes:
    """What a CertificateVerify signs (RFC 9846 §4.4.3): 64 spaces, the context string,
    a zero byte and Transcript-Hash(Handshake Context, Certificate). DTLS 1.3 keeps the
    TLS 1.3 context strings."""
    return (_SERVER_CONTEXT if is_server else _CLIENT_CONTEXT) + transcript_hash


def _key_family(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ec"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    if isinstance(key, (ed448.Ed448PrivateKey, ed448.Ed448PublicKey)):
        return "ed448"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "rsa"
    return ""


# key class -> _key_family: the isinstance checks against cryptography's ABCs, once per class
_FAMILIES: dict[type, str] = {}


def _family(key: PrivateKey | PublicKey) -> str:
    family = _FAMILIES.get(type(key))
    if family is None:
        family = _FAMILIES[type(key)] = _key_family(key)
    return family


def _key_kinds(
    key: PrivateKey | PublicKey, spki_oid: x509.ObjectIdentifier | None
) -> tuple[str, ...]:
    """The `_SCHEMES` key kinds a key can sign or verify for."""
    family = _family(key)
    if family == "ec":
        name = key.curve.name  # type: ignore[union-attr]
        return (name,) if name in _ECDSA_SCHEMES else ()
    if family in ("ed25519", "ed448"):
        return (family,)
    if family == "rsa":
        # RFC 9846 §4.2.3: rsae needs the rsaEncryption OID, pss the RSASSA-PSS OID. A bare
        # key (no certificate) does not say which, so it may do both.
        if spki_oid == PublicKeyAlgorithmOID.RSASSA_PSS:
            return ("pss",)
        if spki_oid == PublicKeyAlgorithmOID.RSAES_PKCS1_v1_5:
            return ("rsae",)
        return ("rsae", "pss")
    return ()


def _rsa_pss_fits(
    key: rsa.RSAPrivateKey | rsa.RSAPublicKey, algorithm: hashes.HashAlgorithm
) -> bool:
    # RFC 8017 §9.1.1: emLen >= hLen + sLen + 2, with the salt as long as the hash
    return (key.key_size + 6) // 8 >= 2 * algorithm.digest_size + 2


def schemes_for_private_key(
    key: PrivateKey, certificate: x509.Certificate | None = None
) -> list[SignatureScheme]:
    """The CertificateVerify schemes `key` can sign with, in our preference order.

    ECDSA is bound to its curve; RSA keys give rsa_pss_rsae_* unless `certificate`
    carries the RSASSA-PSS OID, which gives rsa_pss_pss_* (RFC 9846 §4.2.3).
    """
    spki_oid = certificate.public_key_algorithm_oid if certificate is not None else None
    kinds = _key_kinds(key, spki_oid)
    if isinstance(key, rsa.RSAPrivateKey):
        kind = "pss" if spki_oid == PublicKeyAlgorithmOID.RSASSA_PSS else "rsae"
        return [s for s in _RSA_SCHEMES[kind] if _rsa_pss_fits(key, _SCHEMES[s][1])]  # type: ignore[arg-type]
    if len(kinds) == 1:
        return list(_SCHEMES_OF_KIND.get(kinds[0], ()))
    return [SignatureScheme(s) for s, (kind, _) in _SCHEMES.items() if kind in kinds]


# (key, certificate) -> their `schemes_for_private_key`, by identity: a server chooses
# for its one key per ClientHello. The entries hold the key and certificate, so no other
# object takes their ids while kept; a few are kept (a server's contexts, by SNI).
_KEY_SCHEMES: dict[tuple[int, int], tuple[Any, Any, tuple[SignatureScheme, ...]]] = {}
_KEY_SCHEMES_MAX = 16


def choose_signature_scheme(
    key: PrivateKey,
    peer_offered: Sequence[int],
    certificate: x509.Certificate | None = None,
) -> SignatureScheme:
    """The first of our schemes for `key` that the peer offered; HandshakeFailure if none."""
    offered = set(peer_offered)
    ours = _KEY_SCHEMES.get((id(key), id(certificate)))
    if ours is None:
        if len(_KEY_SCHEMES) >= _KEY_SCHEMES_MAX:
            _KEY_SCHEMES.clear()
        ours = _KEY_SCHEMES[id(key), id(certificate)] = (
            key,
            certificate,
            tuple(schemes_for_private_key(key, certificate)),
        )
    for scheme in ours[2]:
        if scheme in offered:
            return scheme
    raise HandshakeFailure("no signature scheme in common for the certificate's key")


def sign(private_key: PrivateKey, scheme: int, data: bytes) -> bytes:
    """Sign `data` (e.g. certificate_verify_content()) with `scheme`."""
    params = _SCHEMES.get(scheme)
    if params is None or params[0] not in _key_kinds(private_key, None):
        raise ConfigurationError(f"signature scheme {scheme:#06x} does not fit the private key")
    algorithm = params[1]
    if _family(private_key) == "ec":  # the class's family, not an ABC isinstance per call
        return cast(ec.EllipticCurvePrivateKey, private_key).sign(data, _ECDSA[scheme])
    if isinstance(private_key, rsa.RSAPrivateKey):
        assert algorithm is not None
        return private_key.sign(data, _pss_padding(algorithm), algorithm)
    assert isinstance(private_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey))
    return private_key.sign(data)


def _pss_padding(algorithm: hashes.HashAlgorithm) -> padding.PSS:
    # RFC 9846 §4.2.3: MGF1 with the same hash, salt as long as the hash
    return padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)


def verify_signature(
    public_key: PublicKey | x509.Certificate, scheme: int, signature: bytes, data: bytes
) -> None:
    """Check a CertificateVerify signature (RFC 9846 §4.4.3).

    Pass the end-entity certificate rather than its key to also check the RSA key's OID
    against rsae/pss. IllegalParameter if the scheme is not one we accept for
    CertificateVerify or does not fit the key; DecryptError if the signature is wrong.
    """
    spki_oid = None
    if isinstance(public_key, x509.Certificate):
        spki_oid = public_key.public_key_algorithm_oid
        key = public_key.public_key()
    else:
        key = public_key
    params = _SCHEMES.get(scheme)
    if params is None:
        raise IllegalParameter(
            f"signature scheme {scheme:#06x} is not allowed in CertificateVerify"
        )
    kind, algorithm = params
    if kind not in _key_kinds(key, spki_oid):  # type: ignore[arg-type]
        raise IllegalParameter(f"signature scheme {scheme:#06x} does not fit the peer's key")
    try:
        if _family(key) == "ec":  # type: ignore[arg-type]
            cast(ec.EllipticCurvePublicKey, key).verify(bytes(signature), data, _ECDSA[scheme])
        elif isinstance(key, rsa.RSAPublicKey):
            assert algorithm is not None
            key.verify(bytes(signature), data, _pss_padding(algorithm), algorithm)
        else:
            assert isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey))
            key.verify(bytes(signature), data)
    except (InvalidSignature, ValueError):
        raise DecryptError("CertificateVerify signature does not verify") from None


# ---------------------------------------------------------------------------------------
# Loading certificates, keys and trust anchors
# ---------------------------------------------------------------------------------------

_PEM_CERT = re.compile(
    rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----.+?"
    rb"-----END (?:X509 |TRUSTED )?CERTIFICATE-----",
    re.DOTALL,
)
_PEM_KEY = re.compile(rb"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----.+?-----END \1-----", re.DOTALL)


def _read(path: str | os.PathLike[str] | None, data: bytes | str | None, what: str) -> bytes:
    if (path is None) == (data is None):
        raise ConfigurationError(f"give exactly one of {what}file and {what}data")
    if path is not None:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {os.fspath(path)!r}: {exc.strerror}") from None
    assert data is not None
    return data.encode("ascii") if isinstance(data, str) else bytes(data)


def _split_der(data: bytes) -> list[bytes]:
    """Split concatenated DER certificates (as ssl's cadata accepts them)."""
    out = []
    pos = 0
    while pos < len(data):
        if data[pos] != 0x30 or pos + 2 > len(data):
            raise ValueError("not DER")
        first = data[pos + 1]
        if first < 0x80:
            length, header = first, 2
        else:
            n = first & 0x7F
            if n == 0 or n > 4 or pos + 2 + n > len(data):
                raise ValueError("not DER")
            length, header = int.from_bytes(data[pos + 2 : pos + 2 + n], "big"), 2 + n
        end = pos + header + length
        if end > len(data):
            raise ValueError("truncated DER")
        out.append(data[pos:end])
        pos = end
    return out


def _parse_certificates(data: bytes, source: str) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    try:
        if b"-----BEGIN" in data:
            for block in _PEM_CERT.findall(data):
                certs.append(x509.load_pem_x509_certificate(block))
        else:
            for der in _split_der(data):
                certs.append(x509.load_der_x509_certificate(der))
    except ValueError:
        raise ConfigurationError(f"cannot parse the certificates in {source}") from None
    if not certs:
        raise ConfigurationError(f"no certificate found in {source}")
    return certs


def load_certificate_chain(
    certfile: str | os.PathLike[str] | None = None,
    certdata: bytes | str | None = None,
) -> list[x509.Certificate]:
    """The certificates of a PEM bundle (leaf first) or of one DER certificate."""
    data = _read(certfile, certdata, "cert")
    return _parse_certificates(data, repr(os.fspath(certfile)) if certfile else "certdata")


def load_private_key(
    keyfile: str | os.PathLike[str] | None = None,
    keydata: bytes | str | None = None,
    password: bytes | str | None = None,
) -> PrivateKey:
    """A private key from PEM (PKCS#8, SEC1 or PKCS#1; other PEM blocks are skipped) or DER."""
    data = _read(keyfile, keydata, "key")
    if isinstance(password, str):
        password = password.encode("utf-8")
    if b"-----BEGIN" in data:
        match = _PEM_KEY.search(data)
        if match is None:
            raise ConfigurationError("no PEM private key found")
        data = match.group(0)
    try:
        if data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password)
        else:
            key = serialization.load_der_private_key(data, password)
    except (TypeError, ValueError, UnsupportedAlgorithm):
        # never echo the data or the password
        raise ConfigurationError(
            "cannot load the private key (corrupt, wrong password or unsupported)"
        ) from None
    if not isinstance(
        key,
        (
            ec.EllipticCurvePrivateKey,
            ed25519.Ed25519PrivateKey,
            ed448.Ed448PrivateKey,
            rsa.RSAPrivateKey,
        ),
    ) or not schemes_for_private_key(key):
        raise ConfigurationError(f"unsupported private key type: {type(key).__name__}")
    return key


def self_signed_certificate(
    names: Sequence[str] = ("localhost", "127.0.0.1", "::1"), days: int = 7
) -> tuple[bytes, bytes]:
    """A self-signed ECDSA P-256 certificate for `names` and its key (PEM), made in memory:
    for examples, tests and a server started without credentials."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def public_key_der(key: PrivateKey) -> bytes:
    """The SubjectPublicKeyInfo of a private key's public half: a raw public key (RFC 7250)."""
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(data: bytes) -> PublicKey:
    """A public key from SubjectPublicKeyInfo DER or PEM; BadCertificate if unparseable."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return serialization.load_pem_public_key(data)  # type: ignore[return-value]
        return serialization.load_der_public_key(data)  # type: ignore[return-value]
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadCertificate("not a usable public key") from exc


def certificate_der(certificate: x509.Certificate) -> bytes:
    """The DER encoding of a certificate, as a CertificateEntry carries it."""
    return certificate.public_bytes(serialization.Encoding.DER)


def parse_certificates(chain_der: Sequence[bytes]) -> list[x509.Certificate]:
    """Parse a peer's chain without verifying it (verification turned off).

    BadCertificate if one does not parse; UnsupportedCertificate if the leaf's key is of a
    type we cannot verify CertificateVerify with.
    """
    try:
        chain = [_parse_der(bytes(der)) for der in chain_der]
    except ValueError:
        raise BadCertificate("cannot parse the peer's certificate") from None
    if chain:
        _check_leaf_key(chain[0])
    return chain


def key_matches_certificate(key: PrivateKey, certificate: x509.Certificate) -> bool:
    """Whether `key` is the private half of the certificate's public key."""
    ours = key.public_key()
    theirs = certificate.public_key()
    if isinstance(ours, rsa.RSAPublicKey) and isinstance(theirs, rsa.RSAPublicKey):
        # an RSASSA-PSS certificate key and its private key differ only in the OID
        return ours.public_numbers() == theirs.public_numbers()
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return ours.public_bytes(der, fmt) == theirs.public_bytes(der, fmt)


class TrustStore:
    """Trust anchors, parsed once: from `cafile`, `cadata` (PEM, DER or concatenated DER)
    and/or `capath` (a directory of PEM files). With none of them, the system's trust store
    (loaded once per process and shared, as is `TrustStore.system()`).

    It also remembers the chains that verified against it (see verify_certificate_chain),
    so keep one TrustStore per configuration rather than one per connection.
    """

    __slots__ = ("_der", "_verified", "certificates", "store")

    def __init__(
        self,
        cafile: str | os.PathLike[str] | None = None,
        cadata: bytes | str | None = None,
        capath: str | os.PathLike[str] | None = None,
    ) -> None:
        if cafile is None and cadata is None and capath is None:
            system = _system_trust_store()
            self.certificates: tuple[x509.Certificate, ...] = system.certificates
            self.store: Store = system.store
            self._der: frozenset[bytes] = system._der
            self._verified: dict[tuple[bool, tuple[bytes, ...]], _VerifiedChain] = system._verified
            return
        certs: list[x509.Certificate] = []
        if cafile is not None:
            certs += load_certificate_chain(certfile=cafile)
        if cadata is not None:
            certs += load_certificate_chain(certdata=cadata)
        if capath is not None:
            certs += _load_directory(capath)
        self._set(certs)

    def _set(self, certs: Sequence[x509.Certificate]) -> None:
        if not certs:
            raise ConfigurationError("no CA certificate found")
        self.certificates = tuple(certs)
        self.store = Store(list(certs))
        self._der = frozenset(c.public_bytes(serialization.Encoding.DER) for c in certs)
        self._verified = {}

    @classmethod
    def from_certificates(cls, certificates: Sequence[x509.Certificate]) -> TrustStore:
        """A trust store of already parsed certificates."""
        store = cls.__new__(cls)
        store._set(certificates)
        return store

    @classmethod
    def system(cls) -> TrustStore:
        """The operating system's trust store, loaded once per process."""
        return _system_trust_store()

    def __repr__(self) -> str:
        return f"<TrustStore {len(self.certificates)} certificates>"

    def __contains__(self, certificate_der: bytes) -> bool:
        """Whether exactly this certificate (DER) is a trust anchor."""
        return certificate_der in self._der


def _load_pem_leniently(data: bytes, seen: set[bytes], out: list[x509.Certificate]) -> None:
    # A system store may hold certificates that cryptography rejects or warns about
    # (e.g. a zero serial number): skip those quietly instead of failing the whole store.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        for block in _PEM_CERT.findall(data):
            try:
                cert = x509.load_pem_x509_certificate(block)
            except ValueError:
                continue
            der = cert.public_bytes(serialization.Encoding.DER)
            if der not in seen:
                seen.add(der)
                out.append(cert)


def _load_directory(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise ConfigurationError(f"cannot read {os.fspath(path)!r}: {exc.strerror}") from None
    certs: list[x509.Certificate] = []
    seen: set[bytes] = set()
    for name in names:
        full = os.path.join(path, name)
        try:
            if os.path.isfile(full):
                with open(full, "rb") as f:
                    _load_pem_leniently(f.read(), seen, certs)
        except OSError:
            continue
    return certs


@functools.lru_cache(maxsize=1)
def _system_trust_store() -> TrustStore:
    # the places OpenSSL (and so the ssl module) looks, environment first
    paths = ssl.get_default_verify_paths()
    for cafile in (os.environ.get(paths.openssl_cafile_env), paths.cafile, paths.openssl_cafile):
        if cafile and os.path.isfile(cafile):
            certs: list[x509.Certificate] = []
            try:
                with open(cafile, "rb") as f:
                    _load_pem_leniently(f.read(), set(), certs)
            except OSError:
                continue
            if certs:
                return TrustStore.from_certificates(certs)
    for capath in (os.environ.get(paths.openssl_capath_env), paths.capath, paths.openssl_capath):
        if capath and os.path.isdir(capath):
            certs = _load_directory(capath)
            if certs:
                return TrustStore.from_certificates(certs)
    raise ConfigurationError(
        "no system CA certificates found (install ca-certificates, or give cafile/cadata)"
    )


# ---------------------------------------------------------------------------------------
# Certificate chain verification (RFC 9846 §4.4.2.4, alerts of §6.2)
# ---------------------------------------------------------------------------------------

# End-entity policy: the WebPKI defaults, relaxed where OpenSSL is more lenient, since
# DTLS peers mostly live in private PKIs:
# - no subjectAltName needed (we match the name ourselves, with the CN fallback),
# - a leaf may say cA=TRUE (OpenSSL accepts it; a self-signed device certificate does),
# - extendedKeyUsage is checked by `_check_extended_key_usage` for the right role,
# - authorityKeyIdentifier is optional.
_EE_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
    .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
    .may_be_present(x509.AuthorityKeyIdentifier, Criticality.NON_CRITICAL, None)
)
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca()


@functools.lru_cache(maxsize=512)
def _parse_der(der: bytes) -> x509.Certificate:
    # the same chains come back again and again: parse each once
    return x509.load_der_x509_certificate(der)


def _check_leaf_key(cert: x509.Certificate) -> None:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise UnsupportedCertificate("the certificate's public key type is not supported") from None
    if not _key_kinds(key, cert.public_key_algorithm_oid):  # type: ignore[arg-type]
        raise UnsupportedCertificate("the certificate's public key type is not supported")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        # OpenSSL: X509_V_ERR_EE_KEY_TOO_SMALL -> bad_certificate
        raise BadCertificate("the certificate's RSA key is shorter than 2048 bits")


def _check_extended_key_usage(cert: x509.Certificate, is_server_cert: bool) -> None:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    except ValueError:
        raise BadCertificate("the certificate's extensions cannot be parsed") from None
    wanted = ExtendedKeyUsageOID.SERVER_AUTH if is_server_cert else ExtendedKeyUsageOID.CLIENT_AUTH
    if wanted not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
        # OpenSSL: X509_V_ERR_INVALID_PURPOSE -> unsupported_certificate
        role = "server" if is_server_cert else "client"
        raise UnsupportedCertificate(f"the certificate is not for TLS {role} authentication")


def _dns_name_matches(pattern: str, name: str) -> bool:
    # RFC 6125 §6.4: case-insensitive; a wildcard only as the whole leftmost label,
    # matching exactly one label, and not directly under a top-level label
    pattern = pattern.rstrip(".").lower()
    if pattern == name:
        return True
    if not pattern.startswith("*."):
        return False
    rest = pattern[2:]
    if "*" in rest or rest.count(".") < 1:
        return False
    head, sep, tail = name.partition(".")
    return bool(head) and bool(sep) and tail == rest


def matches_server_name(cert: x509.Certificate, server_name: str) -> bool:
    """Whether the certificate is for `server_name` (a DNS name or an IP literal).

    IP addresses match iPAddress SANs only. DNS names match dNSName SANs (RFC 6125 §6.4)
    and, like OpenSSL, the subject CN when the certificate has no dNSName SAN.
    """
    try:
        san: x509.SubjectAlternativeName | None = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        san = None
    except ValueError:
        return False
    try:
        address = ipaddress.ip_address(server_name.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return san is not None and address in san.get_values_for_type(x509.IPAddress)
    try:
        name = server_name.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return False
    patterns = san.get_values_for_type(x509.DNSName) if san is not None else []
    if not patterns:
        patterns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return any(_dns_name_matches(p, name) for p in patterns)


class _VerifiedChain:
    """A chain that verified, the time window in which that result holds, and the server
    names it was found to match."""

    __slots__ = ("names", "not_after", "not_before", "path")

    def __init__(self, path: list[x509.Certificate]) -> None:
        self.path = path
        self.not_before = max(c.not_valid_before_utc for c in path)
        self.not_after = min(c.not_valid_after_utc for c in path)
        self.names: set[str] = set()


_VERIFIED_CACHE_SIZE = 1024


def _as_utc(when: datetime.datetime) -> datetime.datetime:
    if when.tzinfo is datetime.timezone.utc:
        return when  # Context.certificate_time's default
    if when.tzinfo is None:
        return when.replace(tzinfo=datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc)


def verify_certificate_chain(
    chain_der: Sequence[bytes],
    trust: TrustStore,
    *,
    server_name: str | None,
    is_server_cert: bool,
    when: datetime.datetime,
) -> list[x509.Certificate]:
    """Verify a peer's certificate chain (leaf first) and return the path to its anchor.

    `server_name` None skips the name check: only when the application turned hostname
    checking off. Any certificate in `trust` is an anchor, so a leaf that is itself in
    `trust` (a pinned, maybe self-signed, device certificate) verifies on its own, as do
    chains to a trusted intermediate (OpenSSL's X509_V_FLAG_PARTIAL_CHAIN). Errors, each
    with its RFC 9846 §6.2 alert:

    - empty chain: DecodeError from a server, CertificateRequired from a client;
    - unparseable certificate: BadCertificate;
    - leaf key of a type we cannot use: UnsupportedCertificate;
    - leaf or CA outside its validity period: CertificateExpired;
    - leaf not for this role (extendedKeyUsage): UnsupportedCertificate;
    - no path to a trust anchor: UnknownCA;
    - name mismatch: BadCertificate (what OpenSSL sends for X509_V_ERR_HOSTNAME_MISMATCH).
    """
    if not chain_der:
        if is_server_cert:
            raise DecodeError("the server sent an empty Certificate message")
        raise CertificateRequired("the client sent no certificate")
    when = _as_utc(when)
    # The result depends only on the chain, the (immutable) store, the role and the time,
    # and verifying costs two or more signature checks: a chain seen before is looked up.
    key = (is_server_cert, tuple(map(bytes, chain_der)))
    cached = trust._verified.get(key)
    if cached is not None and cached.not_before <= when <= cached.not_after:
        if is_server_cert and server_name is not None and server_name not in cached.names:
            if not matches_server_name(cached.path[0], server_name):
                raise BadCertificate(
                    f"the certificate does not match the server name {server_name!r}"
                )
            cached.names.add(server_name)
        return list(cached.path)
    try:
        chain = [_parse_der(bytes(der)) for der in chain_der]
    except ValueError:
        raise BadCertificate("cannot parse the peer's certificate") from None
    leaf = chain[0]

    _check_leaf_key(leaf)
    if when < leaf.not_valid_before_utc:
        raise CertificateExpired("the peer's certificate is not valid yet")
    if when > leaf.not_valid_after_utc:
        raise CertificateExpired("the peer's certificate has expired")
    _check_extended_key_usage(leaf, is_server_cert)

    # a leaf that is itself in the store (a pinned, maybe self-signed, device certificate)
    # is a path of its own: cryptography treats every store certificate as an anchor
    verifier = (
        PolicyBuilder()
        .store(trust.store)
        .time(when)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    try:
        path = list(verifier.verify(leaf, chain[1:]).chain)
    except VerificationError as exc:
        raise _chain_error(str(exc)) from None

    entry = _VerifiedChain(path)
    if len(trust._verified) >= _VERIFIED_CACHE_SIZE:
        trust._verified.clear()
    trust._verified[key] = entry

    if is_server_cert and server_name is not None:
        if not matches_server_name(leaf, server_name):
            raise BadCertificate(f"the certificate does not match the server name {server_name!r}")
        entry.names.add(server_name)
    return list(path)


def _chain_error(message: str) -> Exception:
    # cryptography reports failures as strings; the leaf itself was checked beforehand,
    # so these are about the issuers
    lowered = message.lower()
    if "not valid at validation time" in lowered or "expired" in lowered:
        return CertificateExpired(f"a CA certificate in the chain is not valid now: {message}")
    if "forbidden public key algorithm" in lowered or "forbidden signature algorithm" in lowered:
        return UnsupportedCertificate(f"the chain uses an unsupported algorithm: {message}")
    return UnknownCA(f"the chain does not lead to a trusted CA: {message}")
