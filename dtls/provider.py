"""Crypto providers: who protects records, chosen by name (design §6).

A provider supplies the record layer's primitives (RFC 9147 §4): the per-epoch record
cipher (AEAD seal/open and record-number encryption), the replay window, the datagram
splitter and DTLSPlaintext framing, and the traffic key derivation. Two are built in:

- "openssl": the C hot path (`dtls.record` over `dtls._native`, cffi and libcrypto EVP);
- "python": `dtls.record_py`, the same records in pure Python over `cryptography`,
  byte-identical on the wire and several times slower per record.

The handshake's crypto (HKDF, signatures, key exchange, random) is `cryptography` under
either provider. Selection: `Context(provider=...)` names one; without a name the
environment variable DTLS13_PROVIDER does (for running a test suite under each), else
"openssl" when the C extension loads, else "python", with one RuntimeWarning.
`register_provider` adds another (hardware offload, another library) under a new name.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import crypto, keyschedule
from .errors import ConfigurationError
from .iana import CipherSuite

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "ProviderInfo",
    "RecordCipherLike",
    "RecordProvider",
    "ReplayWindowLike",
    "default_provider_name",
    "get_provider",
    "providers",
    "register_provider",
]

ENVIRONMENT_VARIABLE = "DTLS13_PROVIDER"
Buffer = bytes | bytearray | memoryview


class ReplayWindowLike(Protocol):
    """The anti-replay window of one epoch (RFC 9147 §4.5.1)."""

    @property
    def size(self) -> int: ...
    @property
    def next_seq(self) -> int: ...
    def check(self, seq: int) -> bool: ...
    def mark(self, seq: int) -> None: ...
    def reset(self) -> None: ...


class ApplicationSenderLike(Protocol):
    """Application data of one epoch and CID sealed one record per call (RFC 9147 §4)."""

    def seal(self, seq: int, payload: Buffer) -> bytes: ...
    def seal_run(self, seq: int, payloads: list[Buffer]) -> list[bytes]: ...
    def take_counts(self) -> tuple[int, int]: ...


class ApplicationReceiverLike(Protocol):
    """A datagram of one application-data record of one epoch and CID opened in one call:
    the plaintext (bytes), the record (other content), an OpenError, or None (the
    general path takes it)."""

    def open(self, datagram: Buffer, max_plaintext: int) -> Any: ...
    def take_counts(self) -> tuple[int, int]: ...


class RecordCipherLike(Protocol):
    """The record protection of one epoch in one direction (RFC 9147 §4.2.3)."""

    suite: int
    tag_len: int

    def sealed_len(
        self, payload_len: int, *, cid_len: int | None = None, seq16: bool = True,
        with_length: bool = True, padding: int = 0,
    ) -> int: ...  # fmt: skip
    def seal(
        self, epoch: int, seq: int, content_type: int, payload: Buffer, *,
        cid: bytes | None = None, seq16: bool = True, with_length: bool = True,
        padding: int = 0,
    ) -> bytes: ...  # fmt: skip
    def open(
        self, record: Buffer, window: Any = None, *, cid_len: int = 0, next_seq: int = 0
    ) -> Any: ...
    def mask(self, sample: bytes) -> bytes: ...
    def seal_batch(
        self, epoch: int, items: Sequence[tuple[int, int, Buffer]], *,
        cid: bytes | None = None, seq16: bool = True, with_length: bool = True,
        padding: int = 0,
    ) -> list[bytes]: ...  # fmt: skip
    def seal_run(
        self, epoch: int, seq: int, content_type: int, payloads: Sequence[Buffer], *,
        cid: bytes | None = None, seq16: bool = True, with_length: bool = True,
        padding: int = 0,
    ) -> list[bytes]: ...  # fmt: skip
    def open_batch(
        self, records: Sequence[Buffer], window: Any = None, *, cid_len: int = 0
    ) -> list[Any]: ...
    def open_run(
        self, data: bytearray | memoryview, lengths: Sequence[int], window: Any, *,
        epoch_bits: int, cid: bytes | None = None, content_type: int = 23,
        max_plaintext: int = 1 << 14,
    ) -> Any: ...  # fmt: skip
    def application_sender(self, epoch: int, cid: bytes | None = None) -> ApplicationSenderLike: ...
    def application_receiver(
        self, window: Any, epoch_bits: int, cid: bytes | None = None
    ) -> ApplicationReceiverLike: ...
    def seal_segments(
        self, epoch: int, seq: int, content_type: int, data: Buffer, payload_len: int,
        out: bytearray | memoryview | None = None, *, cid: bytes | None = None,
        seq16: bool = True, with_length: bool = True, padding: int = 0,
    ) -> tuple[memoryview, int]: ...  # fmt: skip


def _random(n: int) -> bytes:
    return os.urandom(n)  # what secrets.token_bytes returns, one call less


@dataclass(frozen=True)
class HandshakeCrypto:
    """The handshake's public-key operations and randomness (design §6): key exchange
    (RFC 9846 §4.2.8), CertificateVerify signatures (§4.4.3), random values, and the
    HKDF of the key schedule (§7.1). The built-in providers use `cryptography` and
    hashlib; a registered provider may put any of them on an accelerator or a token. The
    transcript hash stays on hashlib."""

    random: Callable[[int], bytes] = _random
    generate_key_share: Callable[[int], Any] = crypto.generate_key_share
    server_key_share: Callable[[int, bytes], tuple[bytes, bytes]] = crypto.server_key_share
    sign: Callable[[Any, int, bytes], bytes] = crypto.sign
    verify_signature: Callable[[Any, int, bytes, bytes], None] = crypto.verify_signature
    #: HKDF-Extract and HKDF-Expand (RFC 5869) under the key schedule (RFC 9846 §7.1)
    hkdf_extract: keyschedule.Extract = keyschedule.hkdf_extract
    hkdf_expand: keyschedule.Expand = keyschedule.hkdf_expand
    #: a whole stage of the key schedule in one call, on the same HKDF as the two above;
    #: None: the schedule calls them per secret
    key_stage: keyschedule.KeyStage | None = None

    def key_schedule(self, suite: int) -> keyschedule.KeySchedule:
        """A key schedule for `suite` on this provider's HKDF."""
        return keyschedule.KeySchedule(
            suite, extract=self.hkdf_extract, expand=self.hkdf_expand, key_stage=self.key_stage
        )


@dataclass(frozen=True)
class RecordProvider:
    """The record-layer primitives of one provider (the API of `dtls.record`)."""

    name: str
    description: str
    suites: tuple[CipherSuite, ...]
    #: RecordCipher(suite, TrafficKeys), with .from_secret(suite, secret)
    cipher: Any = field(repr=False)
    #: ReplayWindow(size)
    replay_window: Callable[[int], ReplayWindowLike] = field(repr=False)
    split_datagram: Callable[..., tuple[list[Any], int]] = field(repr=False)
    seal_plaintext: Callable[..., bytes] = field(repr=False)
    derive_traffic_keys: Callable[[int, bytes], Any] = field(repr=False)
    next_traffic_secret: Callable[[int, bytes], bytes] = field(repr=False)
    #: the class of a successful `open` result (anything else is an OpenError)
    opened_type: type = field(repr=False)
    #: the handshake's key exchange, signatures and randomness
    handshake: HandshakeCrypto = field(default_factory=HandshakeCrypto, repr=False)

    def cipher_from_secret(self, suite: int, secret: bytes) -> RecordCipherLike:
        return self.cipher.from_secret(suite, secret)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ProviderInfo:
    """What `dtls.providers()` lists for each registered provider."""

    name: str
    description: str
    #: the suites it protects records with (empty when not available)
    suites: tuple[str, ...]
    available: bool
    #: why it is not available (the import error), else ""
    reason: str = ""
    default: bool = False


def _supported(cipher: Any, derive: Callable[[int, bytes], Any]) -> tuple[CipherSuite, ...]:
    """The suites whose record cipher keys and seals here (a libcrypto or `cryptography`
    build may lack CCM or ChaCha20-Poly1305)."""
    suites = []
    for suite in CipherSuite:
        try:
            cipher(suite, derive(suite, bytes(48))).seal(0, 0, 23, b"")
        except Exception:  # UnsupportedAlgorithm, ValueError, ...: not here
            continue
        suites.append(suite)
    return tuple(suites)


def _load_openssl() -> RecordProvider:
    from . import record
    from ._native import ffi, lib

    version = ffi.string(lib.dtls_openssl_version()).decode()
    return RecordProvider(
        name="openssl",
        description=f"C record layer (dtls._native, cffi) over {version} libcrypto",
        suites=_supported(record.RecordCipher, record.derive_traffic_keys),
        cipher=record.RecordCipher,
        replay_window=record.ReplayWindow,
        split_datagram=record.split_datagram,
        seal_plaintext=record.seal_plaintext,
        derive_traffic_keys=record.derive_traffic_keys,
        next_traffic_secret=record.next_traffic_secret,
        opened_type=record.OpenedRecord,
        handshake=HandshakeCrypto(
            hkdf_extract=record.hkdf_extract,
            hkdf_expand=record.hkdf_expand,
            key_stage=record.key_stage,
        ),
    )


def _load_python() -> RecordProvider:
    import cryptography
    from cryptography.hazmat.backends.openssl.backend import backend

    from . import record_py

    return RecordProvider(
        name="python",
        description=(
            f"pure-Python record layer over cryptography {cryptography.__version__} "
            f"({backend.openssl_version_text()})"
        ),
        suites=_supported(record_py.RecordCipher, record_py.derive_traffic_keys),
        cipher=record_py.RecordCipher,
        replay_window=record_py.ReplayWindow,
        split_datagram=record_py.split_datagram,
        seal_plaintext=record_py.seal_plaintext,
        derive_traffic_keys=record_py.derive_traffic_keys,
        next_traffic_secret=record_py.next_traffic_secret,
        opened_type=record_py.OpenedRecord,
    )


@dataclass
class _Entry:
    description: str
    load: Callable[[], RecordProvider]
    loaded: RecordProvider | None = None
    error: str = ""


_lock = threading.RLock()  # a loader may load another provider
_registry: dict[str, _Entry] = {
    "openssl": _Entry("C record layer over OpenSSL libcrypto (dtls._native)", _load_openssl),
    "python": _Entry("pure-Python record layer over cryptography", _load_python),
}
_warned = False


def register_provider(name: str, description: str, load: Callable[[], RecordProvider]) -> None:
    """Add a provider under a new `name`; `load()` returns its `RecordProvider` on first
    use, or raises ImportError when it cannot work here (listed as unavailable)."""
    with _lock:
        if name in _registry:
            raise ValueError(f"a provider named {name!r} is registered already")
        _registry[name] = _Entry(description, load)


def _load(name: str) -> RecordProvider | None:
    """The provider, loaded once; None (with the reason kept) when it cannot load."""
    entry = _registry.get(name)
    if entry is None:
        raise ConfigurationError(
            f"unknown crypto provider {name!r} (known: {', '.join(_registry)})"
        )
    if entry.loaded is not None:
        return entry.loaded
    with _lock:
        if entry.loaded is None and not entry.error:
            try:
                entry.loaded = entry.load()
            except ImportError as exc:
                entry.error = f"{type(exc).__name__}: {exc}"
        return entry.loaded


def default_provider_name() -> str:
    """The provider used when none is named: DTLS13_PROVIDER, else "openssl" when the C
    extension loads, else "python" (warning once that records go the slow way)."""
    global _warned
    named = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if named:
        return named
    if _load("openssl") is not None:
        return "openssl"
    if not _warned:
        _warned = True
        warnings.warn(
            "dtls: the C record layer (dtls._native) is not available "
            f"({_registry['openssl'].error}); using the pure-Python record layer, which is "
            "several times slower per record",
            RuntimeWarning,
            stacklevel=3,
        )
    return "python"


def get_provider(name: str | None = None) -> RecordProvider:
    """The provider called `name`, or the default one (`default_provider_name`).
    Raises ConfigurationError for an unknown name or one that cannot load here."""
    name = name or default_provider_name()
    provider = _load(name)
    if provider is None:
        raise ConfigurationError(
            f"crypto provider {name!r} is not available: {_registry[name].error}"
        )
    return provider


def providers(names: Sequence[str] | None = None) -> list[ProviderInfo]:
    """Every registered provider (or those named), whether it works here, and its suites."""
    try:
        default: str | None = default_provider_name()
    except ConfigurationError:
        default = None
    infos = []
    for name in names if names is not None else list(_registry):
        provider = _load(name)
        if provider is None:
            entry = _registry[name]
            infos.append(ProviderInfo(name, entry.description, (), False, entry.error))
        else:
            infos.append(ProviderInfo(
                name, provider.description, tuple(s.name for s in provider.suites), True,
                default=name == default,
            ))  # fmt: skip
    return infos
