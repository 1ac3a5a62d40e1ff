"""Ephemeral credentials for simulated endpoints, made once per process.

A self-signed ECDSA P-256 CA and, under it, a server and a client leaf (`SERVER_NAME`)
whose keys sign CertificateVerify with "ecdsa-p256" (the original design's) or "ed25519"
(the CA stays ECDSA: the Web PKI profile the engine verifies against has no Ed25519 CAs).

Every size on the wire is fixed, so that a run is reproducible bit for bit although the
keys are new each time: serial numbers and validity dates are constants, and an ECDSA
signature (DER, 70 to 72 bytes depending on the leading bits of r and s) is made again
until it is 71 bytes long - certificates at creation, and CertificateVerify signatures
through `FixedLengthEcdsaKey`, which the engine uses like any private key. Signing until
the length fits takes two tries on average; the model charges one signature.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAME = "server.sim.example"
SIGNATURES = ("ecdsa-p256", "ed25519")
ECDSA_P256_LENGTH = 71  # the most likely DER length (both r, s 32 bytes + one of 33)

_NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
_NOT_AFTER = datetime.datetime(2049, 12, 31, tzinfo=datetime.timezone.utc)


class FixedLengthEcdsaKey(ec.EllipticCurvePrivateKey):
    """An ECDSA private key whose DER signatures are always `length` bytes long."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, length: int = ECDSA_P256_LENGTH) -> None:
        self._key = key
        self._length = length

    def sign(self, data: Any, signature_algorithm: Any) -> bytes:
        while True:
            signature = self._key.sign(data, signature_algorithm)
            if len(signature) == self._length:
                return signature

    def exchange(self, algorithm: Any, peer_public_key: Any) -> bytes:
        return self._key.exchange(algorithm, peer_public_key)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._key.curve

    @property
    def key_size(self) -> int:
        return self._key.key_size

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        return self._key.private_numbers()

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:  # noqa: A002
        return self._key.private_bytes(encoding, format, encryption_algorithm)

    def __copy__(self) -> FixedLengthEcdsaKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FixedLengthEcdsaKey:
        return self


@dataclass(frozen=True)
class Credentials:
    signature: str
    ca: x509.Certificate
    server_chain: tuple[x509.Certificate, ...]
    server_key: Any
    client_chain: tuple[x509.Certificate, ...]
    client_key: Any


@functools.cache
def credentials(signature: str = "ecdsa-p256") -> Credentials:
    """The process-wide credentials for `signature` (see the module docstring)."""
    if signature not in SIGNATURES:
        raise ValueError(f"unknown signature algorithm {signature!r}; one of {SIGNATURES}")
    ca_key = _new_key("ecdsa-p256")
    ca_name = _name("dtls.sim CA")
    ca = _certificate(ca_name, ca_name, ca_key, ca_key, serial=1, ca=True)
    server_key = _new_key(signature)
    server = _certificate(
        _name(SERVER_NAME), ca_name, server_key, ca_key, serial=2, ca=False,
        usage=ExtendedKeyUsageOID.SERVER_AUTH, dns=SERVER_NAME,
    )
    client_key = _new_key(signature)
    client = _certificate(
        _name("client.sim.example"), ca_name, client_key, ca_key, serial=3, ca=False,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH, dns="client.sim.example",
    )
    return Credentials(
        signature, ca, (server,), _engine_key(server_key), (client,), _engine_key(client_key)
    )


def _new_key(signature: str) -> Any:
    if signature == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _engine_key(key: Any) -> Any:
    return FixedLengthEcdsaKey(key) if isinstance(key, ec.EllipticCurvePrivateKey) else key


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: x509.Name, issuer: x509.Name, key: Any, issuer_key: Any, *, serial: int, ca: bool,
    usage: x509.ObjectIdentifier | None = None, dns: str | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if dns is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False
        )
    ecdsa = isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    while True:
        cert = builder.sign(issuer_key, hashes.SHA256() if ecdsa else None)
        if not ecdsa or len(cert.signature) == ECDSA_P256_LENGTH:
            return cert
