"""The processing-time model: what each operation of an endpoint costs its CPU.

Costs are per operation, looked up by name: AEAD per record and per byte for each cipher
suite (by IANA name), key-pair generation and shared-secret computation for each group,
signing and verifying for each signature algorithm ("ecdsa-p256", "ed25519"; certificate
chains are priced as ECDSA P-256 verifications, the simulated CA's algorithm), and a
per-handshake-message protocol cost (parsing, encoding, transcript hash, key schedule).

Presets:
- `DESIGN`: the original design's figures. AES-128-GCM 8 ns, AES-256-GCM 12 ns,
  ChaCha20-Poly1305 10 ns "per operation", read as per 16-byte block: per byte = figure/16,
  and per record two more blocks (the GCM tag block and the record-number mask, RFC 9147
  §4.2.3). ECDH P-256 500 us, charged when the shared secret is computed (key generation
  folded in), ECDSA P-256 sign 200 us / verify 300 us. The design has no protocol cost:
  `message` is 0 (set one with `with_message_cost`). AES-128-CCM(-8) are derived (CBC-MAC
  doubles the block cipher work); groups and algorithms the design does not give are absent.
- `ZERO`: everything free, for checking the network model alone.
- `ACCELERATOR`: `DESIGN` with an illustrative offload engine: public-key operations 10x,
  AEAD 8x faster (`accelerate` builds one from any model, e.g. a calibrated one).
- `dtls.sim.calibrate.calibrate()`: measured on this host, through this library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

CA_SIGNATURE = "ecdsa-p256"  # what certificates are signed with (dtls.sim.credentials)


@dataclass(slots=True)
class Work:
    """Operations one engine call performed, as observed (see `dtls.sim.work`)."""

    messages: int = 0  # handshake messages processed or built
    aead_records: int = 0  # records sealed or opened with an AEAD
    aead_bytes: int = 0
    key_generations: int = 0
    key_agreements: int = 0
    signatures: int = 0  # CertificateVerify signatures
    verifications: int = 0  # CertificateVerify checks
    chain_verifications: int = 0  # certificate signatures checked (by the ECDSA P-256 CA)

    def add(self, other: Work) -> None:
        self.messages += other.messages
        self.aead_records += other.aead_records
        self.aead_bytes += other.aead_bytes
        self.key_generations += other.key_generations
        self.key_agreements += other.key_agreements
        self.signatures += other.signatures
        self.verifications += other.verifications
        self.chain_verifications += other.chain_verifications


@dataclass(frozen=True)
class AeadCost:
    per_record: float
    per_byte: float


@dataclass(frozen=True)
class KeyExchangeCost:
    generate: float
    agree: float


@dataclass(frozen=True)
class SignatureCost:
    sign: float
    verify: float


@dataclass(frozen=True)
class Prices:
    """A model's costs for one suite, group and signature algorithm."""

    message: float
    aead_record: float
    aead_byte: float
    generate: float
    agree: float
    sign: float
    verify: float
    chain_verify: float

    def seconds(self, work: Work) -> float:
        return (
            work.messages * self.message
            + work.aead_records * self.aead_record
            + work.aead_bytes * self.aead_byte
            + work.key_generations * self.generate
            + work.key_agreements * self.agree
            + work.signatures * self.sign
            + work.verifications * self.verify
            + work.chain_verifications * self.chain_verify
        )


@dataclass(frozen=True)
class TimingModel:
    """Per-operation CPU costs in seconds."""

    name: str
    aead: Mapping[str, AeadCost] = field(default_factory=dict)
    key_exchange: Mapping[str, KeyExchangeCost] = field(default_factory=dict)
    signature: Mapping[str, SignatureCost] = field(default_factory=dict)
    message: float = 0.0

    def prices(self, suite: str, group: str, signature: str) -> Prices:
        """The costs a scenario with this suite, group and algorithm needs; KeyError naming
        what the model lacks."""
        aead = _need(self, "aead", suite)
        kex = _need(self, "key_exchange", group)
        sig = _need(self, "signature", signature)
        ca = _need(self, "signature", CA_SIGNATURE)
        return Prices(
            self.message, aead.per_record, aead.per_byte, kex.generate, kex.agree,
            sig.sign, sig.verify, ca.verify,
        )

    def with_message_cost(self, seconds: float) -> TimingModel:
        return replace(self, message=seconds)

    # ---- JSON (seconds throughout) ----
    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "message": self.message,
            "aead": {k: [v.per_record, v.per_byte] for k, v in self.aead.items()},
            "key_exchange": {k: [v.generate, v.agree] for k, v in self.key_exchange.items()},
            "signature": {k: [v.sign, v.verify] for k, v in self.signature.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TimingModel:
        return cls(
            name=str(data.get("name", "custom")),
            message=float(data.get("message", 0.0)),
            aead={k: AeadCost(*map(float, v)) for k, v in data.get("aead", {}).items()},
            key_exchange={
                k: KeyExchangeCost(*map(float, v)) for k, v in data.get("key_exchange", {}).items()
            },
            signature={
                k: SignatureCost(*map(float, v)) for k, v in data.get("signature", {}).items()
            },
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TimingModel:
        return cls.from_json(json.loads(Path(path).read_text()))


def _need(model: TimingModel, table: str, key: str) -> Any:
    entries: Mapping[str, Any] = getattr(model, table)
    try:
        return entries[key]
    except KeyError:
        known = ", ".join(sorted(entries)) or "none"
        raise KeyError(
            f"timing model {model.name!r} has no {table} cost for {key!r} (it has: {known}); "
            "calibrate, or load a timing file that has one"
        ) from None


def _per_block(ns: float) -> AeadCost:
    block = ns * 1e-9
    return AeadCost(per_record=2 * block, per_byte=block / 16)


DESIGN = TimingModel(
    name="design",
    aead={
        "TLS_AES_128_GCM_SHA256": _per_block(8),
        "TLS_AES_256_GCM_SHA384": _per_block(12),
        "TLS_CHACHA20_POLY1305_SHA256": _per_block(10),
        "TLS_AES_128_CCM_SHA256": _per_block(16),
        "TLS_AES_128_CCM_8_SHA256": _per_block(16),
    },
    key_exchange={"secp256r1": KeyExchangeCost(generate=0.0, agree=500e-6)},
    signature={"ecdsa-p256": SignatureCost(sign=200e-6, verify=300e-6)},
    message=0.0,
)

ZERO = TimingModel(
    name="zero",
    aead={suite: AeadCost(0.0, 0.0) for suite in DESIGN.aead},
    key_exchange={
        g: KeyExchangeCost(0.0, 0.0)
        for g in ("secp256r1", "secp384r1", "secp521r1", "x25519", "x448")
    },
    signature={s: SignatureCost(0.0, 0.0) for s in ("ecdsa-p256", "ed25519")},
)


def accelerate(model: TimingModel, public_key: float = 10.0, aead: float = 8.0) -> TimingModel:
    """`model` with public-key operations `public_key` times and AEAD `aead` times faster,
    as a crypto offload engine would make them (the protocol cost stays on the CPU)."""
    return TimingModel(
        name=f"{model.name}+accelerator",
        aead={k: AeadCost(v.per_record / aead, v.per_byte / aead) for k, v in model.aead.items()},
        key_exchange={
            k: KeyExchangeCost(v.generate / public_key, v.agree / public_key)
            for k, v in model.key_exchange.items()
        },
        signature={
            k: SignatureCost(v.sign / public_key, v.verify / public_key)
            for k, v in model.signature.items()
        },
        message=model.message,
    )


ACCELERATOR = replace(accelerate(DESIGN), name="accelerator")

PRESETS: dict[str, TimingModel] = {m.name: m for m in (DESIGN, ZERO, ACCELERATOR)}
