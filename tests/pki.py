"""A throw-away test PKI, generated with `cryptography` once per process.

    root "dtls13 Test Root CA" (ECDSA P-256)
     └─ intermediate "dtls13 Test Intermediate CA" (ECDSA P-256)
         ├─ server          ECDSA P-256  ┐ DNS localhost, server.example;
         ├─ server_p384     ECDSA P-384  │ IP 127.0.0.1, ::1;
         ├─ server_ed25519  Ed25519      │ extendedKeyUsage serverAuth
         ├─ server_rsa      RSA 2048     ┘ (signs with rsa_pss_rsae_*)
         ├─ wildcard        ECDSA P-256, DNS *.wild.example
         ├─ expired         ECDSA P-256, localhost, validity ended a day ago
         ├─ not_yet_valid   ECDSA P-256, localhost, valid from tomorrow
         └─ client          ECDSA P-256, CN/DNS client.example, extendedKeyUsage clientAuth
    other_root "dtls13 Unknown Root CA" (ECDSA P-256), trusted by nobody
     └─ unknown_ca          ECDSA P-256, localhost

Each `Credential` has the key and certificate objects and their encodings: `cert_pem`,
`key_pem`, `chain_pem` (leaf + intermediate, what a server loads as certfile), `chain_der`
(what a Certificate message carries). `PKI` exposes the default server's `cert_pem`,
`key_pem`, `chain_pem`, plus `ca_pem` (the root). `PKI.write(directory)` writes everything
as PEM files and returns their paths.

In pytest use the session fixtures of tests/conftest.py: `pki` (a `PKI`) and `pki_paths`
(a `PKIPaths` in a session temporary directory). Outside pytest: `build_pki()`, cached.
The RSA key is generated once per process: it is the slow one.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

SERVER_DNS_NAMES = ("localhost", "server.example")
SERVER_IP_ADDRESSES = ("127.0.0.1", "::1")
CLIENT_NAME = "client.example"


@dataclass(frozen=True)
class Credential:
    """A private key, its certificate and the intermediates up to (not including) the root."""

    name: str
    key: PrivateKey = field(repr=False)
    cert: x509.Certificate
    intermediates: tuple[x509.Certificate, ...] = ()

    @functools.cached_property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @functools.cached_property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @functools.cached_property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @functools.cached_property
    def chain_pem(self) -> bytes:
        return self.cert_pem + b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in self.intermediates
        )

    @functools.cached_property
    def chain_der(self) -> list[bytes]:
        return [self.cert_der] + [
            c.public_bytes(serialization.Encoding.DER) for c in self.intermediates
        ]


@dataclass(frozen=True)
class CredentialPaths:
    certfile: Path  # leaf + intermediates, PEM
    keyfile: Path  # PKCS#8 PEM, unencrypted
    leaf_certfile: Path  # the leaf alone


@dataclass(frozen=True)
class PKIPaths:
    directory: Path
    cafile: Path  # the root CA
    credentials: dict[str, CredentialPaths]

    @property
    def certfile(self) -> Path:
        return self.credentials["server"].certfile

    @property
    def keyfile(self) -> Path:
        return self.credentials["server"].keyfile

    def __getitem__(self, name: str) -> CredentialPaths:
        return self.credentials[name]


class PKI:
    """The generated hierarchy (see the module docstring)."""

    def __init__(self, now: datetime.datetime | None = None) -> None:
        self.now = (now or datetime.datetime.now(datetime.timezone.utc)).replace(microsecond=0)
        day = datetime.timedelta(days=1)
        ca_from, ca_until = self.now - 2 * day, self.now + 3650 * day
        leaf_from, leaf_until = self.now - day, self.now + 365 * day

        self.root = _ca("root", "dtls13 Test Root CA", None, ca_from, ca_until)
        self.intermediate = _ca(
            "intermediate", "dtls13 Test Intermediate CA", self.root, ca_from, ca_until
        )
        self.other_root = _ca("other_root", "dtls13 Unknown Root CA", None, ca_from, ca_until)
        issuer = self.intermediate

        def server(name: str, key: PrivateKey) -> Credential:
            return _leaf(name, key, issuer, leaf_from, leaf_until, server=True)

        self.server = server("server", ec.generate_private_key(ec.SECP256R1()))
        self.server_p384 = server("server_p384", ec.generate_private_key(ec.SECP384R1()))
        self.server_ed25519 = server("server_ed25519", ed25519.Ed25519PrivateKey.generate())
        self.server_rsa = server("server_rsa", _rsa_key())
        self.wildcard = _leaf(
            "wildcard",
            ec.generate_private_key(ec.SECP256R1()),
            issuer,
            leaf_from,
            leaf_until,
            server=True,
            dns_names=("*.wild.example",),
            ip_addresses=(),
        )
        self.expired = _leaf(
            "expired",
            ec.generate_private_key(ec.SECP256R1()),
            issuer,
            self.now - 30 * day,
            self.now - day,
            server=True,
        )
        self.not_yet_valid = _leaf(
            "not_yet_valid",
            ec.generate_private_key(ec.SECP256R1()),
            issuer,
            self.now + day,
            self.now + 30 * day,
            server=True,
        )
        self.client = _leaf(
            "client",
            ec.generate_private_key(ec.SECP256R1()),
            issuer,
            leaf_from,
            leaf_until,
            server=False,
            dns_names=(CLIENT_NAME,),
            ip_addresses=(),
        )
        self.unknown_ca = _leaf(
            "unknown_ca",
            ec.generate_private_key(ec.SECP256R1()),
            self.other_root,
            leaf_from,
            leaf_until,
            server=True,
        )
        self.credentials: dict[str, Credential] = {
            c.name: c
            for c in (
                self.root,
                self.intermediate,
                self.other_root,
                self.server,
                self.server_p384,
                self.server_ed25519,
                self.server_rsa,
                self.wildcard,
                self.expired,
                self.not_yet_valid,
                self.client,
                self.unknown_ca,
            )
        }

    def __getitem__(self, name: str) -> Credential:
        return self.credentials[name]

    # the default server credential and the trust anchor, as bytes
    @property
    def ca_pem(self) -> bytes:
        return self.root.cert_pem

    @property
    def ca_der(self) -> bytes:
        return self.root.cert_der

    @property
    def cert_pem(self) -> bytes:
        return self.server.cert_pem

    @property
    def key_pem(self) -> bytes:
        return self.server.key_pem

    @property
    def chain_pem(self) -> bytes:
        return self.server.chain_pem

    def write(self, directory: str | os.PathLike[str]) -> PKIPaths:
        """Write every credential as PEM files under `directory`."""
        base = Path(directory)
        base.mkdir(parents=True, exist_ok=True)
        cafile = base / "ca.pem"
        cafile.write_bytes(self.ca_pem)
        paths = {}
        for name, cred in self.credentials.items():
            certfile = base / f"{name}-chain.pem"
            keyfile = base / f"{name}-key.pem"
            leaf_certfile = base / f"{name}-cert.pem"
            certfile.write_bytes(cred.chain_pem)
            keyfile.write_bytes(cred.key_pem)
            keyfile.chmod(0o600)
            leaf_certfile.write_bytes(cred.cert_pem)
            paths[name] = CredentialPaths(certfile, keyfile, leaf_certfile)
        return PKIPaths(base, cafile, paths)


@functools.lru_cache(maxsize=1)
def build_pki() -> PKI:
    """The process-wide test PKI."""
    return PKI()


@functools.lru_cache(maxsize=1)
def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dtls13 tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _ca(
    name: str,
    common_name: str,
    issuer: Credential | None,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> Credential:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(common_name)
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
            critical=False,
        )
    )
    return Credential(name, key, builder.sign(signer_key, _hash_for(signer_key)))


def _leaf(
    name: str,
    key: PrivateKey,
    issuer: Credential,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    *,
    server: bool,
    dns_names: tuple[str, ...] = SERVER_DNS_NAMES,
    ip_addresses: tuple[str, ...] = SERVER_IP_ADDRESSES,
) -> Credential:
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_names[0] if dns_names else name))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, _hash_for(issuer.key))
    )
    # a leaf of the intermediate carries the intermediate; a leaf of a root carries nothing
    intermediates = (issuer.cert,) if issuer.name == "intermediate" else ()
    return Credential(name, key, cert, intermediates)
