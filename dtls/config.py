"""Configuration: `Context`, shaped like `ssl.SSLContext` where that makes sense.

One `Context` configures many connections. Clients verify the server's certificate chain
and host name by default (RFC 9846 §4.4.2.4, RFC 6125); servers need a certificate and key.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

from .errors import ConfigurationError
from .iana import CipherSuite, NamedGroup, SignatureScheme

if TYPE_CHECKING:
    from .provider import RecordProvider

# RFC 9846 §9.1: AES-128-GCM is mandatory; CCM suites are for constrained devices and
# must be asked for by name (as in OpenSSL).
DEFAULT_CIPHER_SUITES: tuple[CipherSuite, ...] = (
    CipherSuite.TLS_AES_128_GCM_SHA256,
    CipherSuite.TLS_AES_256_GCM_SHA384,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256,
)
# The client's key share goes to the first group; the hybrid post-quantum group is
# accepted and offered, but its 1.2 KB share is sent only when asked for by name or by a
# HelloRetryRequest.
DEFAULT_GROUPS: tuple[NamedGroup, ...] = (
    NamedGroup.X25519,
    NamedGroup.SECP256R1,
    NamedGroup.SECP384R1,
    NamedGroup.X25519MLKEM768,
)
DEFAULT_SIGNATURE_ALGORITHMS: tuple[SignatureScheme, ...] = (
    SignatureScheme.ECDSA_SECP256R1_SHA256,
    SignatureScheme.ED25519,
    SignatureScheme.ECDSA_SECP384R1_SHA384,
    SignatureScheme.RSA_PSS_RSAE_SHA256,
    SignatureScheme.RSA_PSS_PSS_SHA256,
    SignatureScheme.RSA_PSS_RSAE_SHA384,
    SignatureScheme.RSA_PSS_PSS_SHA384,
    SignatureScheme.RSA_PSS_RSAE_SHA512,
    SignatureScheme.RSA_PSS_PSS_SHA512,
    SignatureScheme.ECDSA_SECP521R1_SHA512,
)


#: the smallest max_datagram_size: a ClientHello fragment must leave room for its headers
MIN_DATAGRAM_SIZE = 256
#: messages a context keeps encoded (`Context.kept_message`): its Certificate and the few
#: EncryptedExtensions its settings give; more (e.g. SRTP MKIs clients chose) are built
MAX_KEPT_MESSAGES = 16


class CookieMode:
    """When a server answers a ClientHello with a stateless cookie HRR (RFC 9147 §5.1)."""

    ALWAYS = "always"
    NEVER = "never"
    AUTO = "auto"  # only while the endpoint is under load


def open_keylog_file(filename: str | os.PathLike[str]) -> TextIO:
    """`filename` opened to append key log lines, line-buffered; a new file is created
    with mode 0600, as it holds the traffic secrets."""
    fd = os.open(filename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return open(fd, "a", buffering=1, encoding="ascii")


class KeyLogFile:
    """Appends NSS key log lines (for Wireshark) to a file, flushed line by line."""

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def __call__(self, line: str) -> None:
        with open_keylog_file(self.filename) as f:
            f.write(line + "\n")


def parse_cipher_suites(names: str | Sequence[str | int]) -> tuple[CipherSuite, ...]:
    """IANA names (comma or colon separated) or code points, in preference order."""
    items = names.replace(":", ",").split(",") if isinstance(names, str) else list(names)
    suites = []
    for item in items:
        if isinstance(item, int):
            suites.append(CipherSuite(item))
            continue
        name = item.strip().upper()
        if not name:
            continue
        try:
            suites.append(CipherSuite[name])
        except KeyError:
            raise ConfigurationError(f"unknown DTLS 1.3 cipher suite {item!r}") from None
    if not suites:
        raise ConfigurationError("no cipher suites")
    return tuple(suites)


_GROUP_ALIASES = {"P-256": "SECP256R1", "P-384": "SECP384R1", "P-521": "SECP521R1"}


def parse_groups(names: str | Sequence[str | int]) -> tuple[NamedGroup, ...]:
    """Group names (x25519, secp256r1, ...; comma or colon separated) or code points."""
    items = names.replace(":", ",").split(",") if isinstance(names, str) else list(names)
    groups = []
    for item in items:
        if isinstance(item, int):
            groups.append(NamedGroup(item))
            continue
        name = _GROUP_ALIASES.get(item.strip().upper(), item.strip().upper())
        if not name:
            continue
        try:
            group = NamedGroup[name]
        except KeyError:
            raise ConfigurationError(f"unknown group {item!r}") from None
        from .crypto import SUPPORTED_GROUPS

        if group not in SUPPORTED_GROUPS:
            known = ", ".join(g.name.lower() for g in SUPPORTED_GROUPS)
            raise ConfigurationError(f"unknown group {item!r} (groups known here: {known})")
        groups.append(group)
    if not groups:
        raise ConfigurationError("no groups")
    return tuple(groups)


@dataclass
class Context:
    """Settings shared by connections; make one with `Context.client()` or `Context.server()`."""

    is_client: bool
    cipher_suites: tuple[CipherSuite, ...] = DEFAULT_CIPHER_SUITES
    groups: tuple[NamedGroup, ...] = DEFAULT_GROUPS
    #: groups the client sends key shares for in its first ClientHello (RFC 9846 §4.2.8)
    key_share_groups: tuple[NamedGroup, ...] | None = None
    #: client: keep those key shares (an X25519MLKEM768 share is 1,216 bytes) in the first
    #: ClientHello even when it then needs more than one datagram (fragmented, RFC 9147
    #: §4.4), which saves the HelloRetryRequest for the group; the server must reassemble
    #: a fragmented first ClientHello (ours does). False: such a ClientHello goes without
    #: key shares, and the server's HelloRetryRequest picks the group.
    fragment_first_client_hello: bool = False
    signature_algorithms: tuple[SignatureScheme, ...] = DEFAULT_SIGNATURE_ALGORITHMS
    verify_mode: ssl.VerifyMode = ssl.CERT_REQUIRED
    check_hostname: bool = True
    alpn_protocols: tuple[str, ...] = ()
    #: server: send a CertificateRequest (RFC 9846 §4.3.2); verify_mode says if one is required
    request_client_certificate: bool = False
    #: largest UDP payload sent; handshake messages are fragmented to fit (RFC 9147 §4.4)
    max_datagram_size: int = 1200
    #: retransmission timer (RFC 9147 §5.8.2): initial value, cap, and retransmissions allowed
    initial_retransmit_timeout: float = 1.0
    max_retransmit_timeout: float = 60.0
    max_retransmissions: int = 10
    #: the handshake fails if not complete this many seconds after it started
    handshake_timeout: float = 120.0
    #: after this many idle seconds send the smallest record (keeps NAT bindings open)
    keepalive_interval: float | None = None
    #: close a connection that received nothing authentic for this many seconds
    idle_timeout: float | None = None
    #: replay window size in records (RFC 9147 §4.5.1)
    replay_window: int = 128
    #: how long a previous receiving epoch stays readable (RFC 9147 §4.2.1, §5.8.1: 2 x MSL)
    epoch_retention: float = 240.0
    #: server: stateless cookie HRR (RFC 9147 §5.1)
    cookie_mode: str = CookieMode.ALWAYS
    cookie_lifetime: float = 60.0
    #: reassembly bounds (RFC 9147 §5.5): largest handshake message, bytes buffered in all
    max_handshake_message_size: int = 65536
    max_handshake_buffer: int = 262144
    #: connection ID this endpoint wants to receive (RFC 9147 §9): bytes (b"" = offer CIDs but
    #: receive none), a callable making one per connection (servers: e.g. to encode a worker
    #: id for a load balancer), or None to not negotiate CIDs
    connection_id: bytes | Callable[[], bytes] | None = None
    #: with CIDs, move to a peer's new address only after a return routability check
    #: (draft-ietf-tls-dtls-rrc); without it a connection stays on its address
    return_routability_check: bool = True
    #: client: an external PSK to offer (RFC 9846 §2.2), or a callable choosing one from
    #: the server name (None: no PSK); server: look an identity up
    psk: Any = field(default=None, repr=False)
    psk_lookup: Callable[[bytes], Any] | None = field(default=None, repr=False)
    #: psk_dhe_ke (1) keeps forward secrecy; psk_ke (0) must be allowed explicitly
    psk_key_exchange_modes: tuple[int, ...] = (1,)
    #: server: NewSessionTickets sent after the handshake, their lifetime in seconds, and
    #: how much 0-RTT data a ticket admits (0: no early data; RFC 9846 §4.6.1)
    session_tickets: int = 1
    ticket_lifetime: int = 7200
    #: a ticket key seals for this many seconds, then the next one does (the previous
    #: one still opens: tickets stay valid through one rotation)
    ticket_key_rotation: float = 3600.0
    max_early_data_size: int = 0
    #: client: send data queued before the handshake as 0-RTT when the session allows it;
    #: early data may be replayed by an attacker (RFC 9846 §8), so this is opt-in
    early_data: bool = False
    #: server: the secret cookie and ticket keys are derived from by time period
    #: (`dtls.server_secret.ServerSecret`); workers and hosts sharing it accept each
    #: other's cookies and tickets. None: a random one, made on first use
    shared_secret: Any = field(default=None, repr=False)
    #: wall-clock seconds, for ticket lifetimes and ages
    wall_clock: Callable[[], float] = field(default=time.time, repr=False)
    #: RFC 7250: send our key as a raw public key when the peer accepts one, and the
    #: peers' keys (SubjectPublicKeyInfo DER) we accept as raw public keys
    raw_public_key: bool = False
    pinned_public_keys: tuple[bytes, ...] = field(default=(), repr=False)
    #: DTLS-SRTP protection profiles in preference order (RFC 5764; `dtls.srtp.SrtpProfile`)
    srtp_profiles: tuple[int, ...] = ()
    #: RFC 8449: the largest record plaintext we accept (64..16384; None: not sent)
    record_size_limit: int | None = None
    #: AEAD limits (RFC 9147 §4.5.3): records sealed per key before a KeyUpdate, and
    #: records failing authentication per key before closing. None: the suite's limit.
    confidentiality_limit: int | None = None
    integrity_limit: int | None = None
    #: NSS key log lines (SSLKEYLOGFILE format) are passed here when set; see also
    #: `keylog_filename` and the SSLKEYLOGFILE environment variable
    keylog: Callable[[str], None] | None = None
    #: wall-clock time for certificate validity; the engine never reads a clock itself
    certificate_time: Callable[[], datetime] = field(
        default=lambda: datetime.now(timezone.utc), repr=False
    )
    #: extra verification after (or, with verify_mode CERT_NONE, instead of) the built-in one
    verify_callback: Callable[[Sequence[Any], str | None], None] | None = None
    #: server: sni_callback(server_name) picks the context serving a ClientHello's name
    #: (None without SNI; RFC 6066 §3), as `ssl.SSLContext.sni_callback` does: a Context
    #: (its certificate and key, ALPN, client authentication, PSKs, tickets, early data),
    #: or None for this one. Raise `dtls.errors.ProtocolError(alert=UNRECOGNIZED_NAME)`
    #: to refuse the name. The cookie, cipher suite and key share group stay this
    #: context's (a stateless HelloRetryRequest chooses them), and so do the settings a
    #: connection reads when it is made (timers, replay window, connection IDs).
    sni_callback: Callable[[str | None], Context | None] | None = field(
        default=None, repr=False
    )
    #: the crypto provider protecting records (`dtls.providers()`: "openssl", "python");
    #: None: $DTLS13_PROVIDER, else "openssl" when its C extension loads, else "python"
    provider: str | None = None
    certificate_chain: list[Any] = field(default_factory=list, repr=False)
    private_key: Any = field(default=None, repr=False)
    trust: Any = field(default=None, repr=False)
    _ticket_keys: Any = field(default=None, repr=False)
    _replay_filter: Any = field(default=None, repr=False)
    _chain_der: Any = field(default=None, repr=False, compare=False)
    _record_provider: Any = field(default=None, repr=False, compare=False)
    _kept_messages: dict[Hashable, Any] = field(default_factory=dict, repr=False, compare=False)
    #: client: (the settings a first ClientHello follows from, {(server_name, local CID):
    #: its `ClientHelloTemplate`}), kept by `ClientHandshake`
    _client_hello_templates: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Names or code points, as a string or a sequence (e.g. groups=("x25519",)).
        self.cipher_suites = parse_cipher_suites(self.cipher_suites)
        self.groups = parse_groups(self.groups)
        if self.key_share_groups is not None:
            self.key_share_groups = parse_groups(self.key_share_groups)
        if self.provider is not None:
            from .provider import get_provider

            get_provider(self.provider)  # ConfigurationError: unknown, or cannot load here

    # ---- factories ----
    @classmethod
    def client(
        cls,
        *,
        cafile: str | os.PathLike[str] | None = None,
        cadata: bytes | str | None = None,
        verify: bool = True,
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
        **settings: Any,
    ) -> Context:
        """A client context. Without cafile/cadata the system's trust anchors are used."""
        ctx = cls(is_client=True, **settings)
        ctx._keylog_from_environment()
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif cafile is not None or cadata is not None:
            ctx.load_verify_locations(cafile=cafile, cadata=cadata)
        if certfile is not None:
            ctx.load_cert_chain(certfile, keyfile)
        return ctx

    @classmethod
    def server(
        cls,
        *,
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
        cafile: str | os.PathLike[str] | None = None,
        cadata: bytes | str | None = None,
        require_client_certificate: bool = False,
        **settings: Any,
    ) -> Context:
        """A server context. With cafile/cadata and require_client_certificate it asks
        for and verifies client certificates (mutual authentication)."""
        settings.setdefault("check_hostname", False)
        settings.setdefault("verify_mode", ssl.CERT_NONE)
        ctx = cls(is_client=False, **settings)
        ctx._keylog_from_environment()
        if certfile is not None:
            ctx.load_cert_chain(certfile, keyfile)
        if cafile is not None or cadata is not None:
            ctx.load_verify_locations(cafile=cafile, cadata=cadata)
        if require_client_certificate:
            ctx.request_client_certificate = True
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    # ---- ssl.SSLContext-like setters ----
    def load_cert_chain(
        self,
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
        password: bytes | None = None,
        *,
        certdata: bytes | None = None,
        keydata: bytes | None = None,
    ) -> None:
        """Our certificate chain (leaf first) and its private key, PEM or DER.
        ConfigurationError if the key is not the certificate's (as `ssl` raises)."""
        from .crypto import key_matches_certificate, load_certificate_chain, load_private_key

        chain = load_certificate_chain(certfile=certfile, certdata=certdata)
        if keyfile is None and keydata is None:
            keyfile = certfile
        key = load_private_key(keyfile=keyfile, keydata=keydata, password=password)
        if chain and not key_matches_certificate(key, chain[0]):
            raise ConfigurationError("the private key does not match the certificate")
        self.certificate_chain, self.private_key = chain, key

    def load_verify_locations(
        self,
        cafile: str | os.PathLike[str] | None = None,
        cadata: bytes | str | None = None,
    ) -> None:
        """Trust anchors for verifying the peer (PEM or DER)."""
        from .crypto import TrustStore

        if isinstance(cadata, str):
            cadata = cadata.encode()
        self.trust = TrustStore(cafile=cafile, cadata=cadata)

    def load_default_certs(self) -> None:
        """The system's trust anchors."""
        from .crypto import TrustStore

        self.trust = TrustStore()

    def pin_public_key(self, key: bytes) -> None:
        """Accept the peer holding this public key (PEM or DER) as a raw public key."""
        from cryptography.hazmat.primitives import serialization

        from .crypto import load_public_key

        der = load_public_key(key).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.pinned_public_keys = (*self.pinned_public_keys, der)

    def set_ciphers(self, names: str | Sequence[str | int]) -> None:
        self.cipher_suites = parse_cipher_suites(names)

    def set_groups(self, names: str | Sequence[str | int]) -> None:
        self.groups = parse_groups(names)

    def set_alpn_protocols(self, protocols: Sequence[str]) -> None:
        self.alpn_protocols = tuple(protocols)

    @property
    def keylog_filename(self) -> str | None:
        """A file NSS key log lines are appended to (as `ssl.SSLContext.keylog_filename`)."""
        return getattr(self.keylog, "filename", None)

    @keylog_filename.setter
    def keylog_filename(self, path: str | None) -> None:
        self.keylog = None if path is None else KeyLogFile(path)

    def _keylog_from_environment(self) -> None:
        # Like ssl.create_default_context(): SSLKEYLOGFILE turns key logging on.
        path = os.environ.get("SSLKEYLOGFILE")
        if path and self.keylog is None:
            self.keylog_filename = path

    # ---- derived ----
    def trust_store(self) -> Any:
        """The trust anchors, loading the system's on first use."""
        if self.trust is None:
            self.load_default_certs()
        return self.trust

    def certificate_chain_der(self) -> tuple[bytes, ...]:
        """The DER of `certificate_chain`, leaf first, as our Certificate message carries
        it (RFC 9846 §4.4.2); encoded once per chain."""
        chain = tuple(self.certificate_chain)
        cached = self._chain_der
        # a tuple compares its items by identity first: the same objects, no DER compared
        if cached is None or cached[0] != chain:
            from .crypto import certificate_der

            cached = self._chain_der = (chain, tuple(certificate_der(c) for c in chain))
        return cached[1]  # type: ignore[no-any-return]

    def kept_message(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """A handshake message every connection of this context sends alike (RFC 9846
        §4.3.1 EncryptedExtensions, §4.4.2 Certificate): `build()`'s, encoded once
        (`dtls.messages.keep_encoding`) and kept under `key` (what it was built from),
        at most MAX_KEPT_MESSAGES of them."""
        kept = self._kept_messages
        message = kept.get(key)
        if message is None:
            from .messages import keep_encoding

            message = keep_encoding(build())
            if len(kept) < MAX_KEPT_MESSAGES:
                kept[key] = message
        return message

    def record_provider(self) -> RecordProvider:
        """`get_provider(self.provider)`, resolved on this context's first connection and
        kept while `provider` stays the same (design §6): $DTLS13_PROVIDER is read then."""
        cached = self._record_provider
        if cached is None or cached[0] != self.provider:
            from .provider import get_provider

            cached = self._record_provider = (self.provider, get_provider(self.provider))
        return cached[1]  # type: ignore[no-any-return]

    def context_for(self, server_name: str | None) -> Context:
        """Server: the context serving `server_name`, `sni_callback`'s choice or this one."""
        if self.sni_callback is None:
            return self
        chosen = self.sni_callback(server_name)
        if chosen is None:
            return self
        if not isinstance(chosen, Context) or chosen.is_client:
            raise ConfigurationError("sni_callback must return a server Context or None")
        chosen.check()
        return chosen

    def server_secret(self) -> Any:
        """The secret cookie and ticket keys derive from (`dtls.server_secret.ServerSecret`):
        `shared_secret` when set (a fleet's), else one made on first use."""
        if self.shared_secret is None:
            from .server_secret import ServerSecret

            self.shared_secret = ServerSecret.generate()
        return self.shared_secret

    def cookie_secrets(self) -> list[bytes]:
        """Server cookie keys, newest first: this `cookie_lifetime` period's and the
        previous one's, derived from `server_secret()` (RFC 9147 §5.1: rotated)."""
        secret = self.server_secret()
        return secret.cookie_keys(self.wall_clock(), self.cookie_lifetime)  # type: ignore[no-any-return]

    def ticket_keys(self) -> Any:
        """The server's ticket-sealing keys (`dtls.session.TicketKeys`)."""
        if self._ticket_keys is None:
            from .session import TicketKeys

            self._ticket_keys = TicketKeys(
                self.ticket_key_rotation, self.server_secret(), self.wall_clock
            )
        return self._ticket_keys

    def replay_filter(self) -> Any:
        """The server's 0-RTT anti-replay filter (`dtls.session.EarlyDataReplayFilter`)."""
        if self._replay_filter is None:
            from .session import EarlyDataReplayFilter

            self._replay_filter = EarlyDataReplayFilter()
        return self._replay_filter

    def check(self) -> None:
        """Raise ConfigurationError if this context cannot make working connections."""
        if not self.cipher_suites:
            raise ConfigurationError("no cipher suites")
        if not self.groups:
            raise ConfigurationError("no groups")
        if not self.is_client and self.private_key is None and self.psk_lookup is None:
            raise ConfigurationError("a server needs a certificate and key, or a PSK lookup")
        if self.check_hostname and self.verify_mode == ssl.CERT_NONE:
            raise ConfigurationError("check_hostname needs verify_mode CERT_REQUIRED")
        if self.max_datagram_size < MIN_DATAGRAM_SIZE:
            raise ConfigurationError(f"max_datagram_size must be at least {MIN_DATAGRAM_SIZE}")
        # once per connection: each limit checked in line, no loop over getattr
        if self.confidentiality_limit is not None and self.confidentiality_limit < 1:
            raise ConfigurationError("confidentiality_limit must be at least 1 (RFC 9147 §4.5.3)")
        if self.integrity_limit is not None and self.integrity_limit < 1:
            raise ConfigurationError("integrity_limit must be at least 1 (RFC 9147 §4.5.3)")
        if self.max_early_data_size < 0:
            raise ConfigurationError("max_early_data_size must not be negative")
        if self.record_size_limit is not None and not 64 <= self.record_size_limit <= 16385:
            raise ConfigurationError("record_size_limit must be 64..16385 (RFC 8449 §4)")
