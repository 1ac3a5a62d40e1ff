"""The DTLS 1.3 key schedule (RFC 9846 §7.1, with the "dtls13" label prefix of RFC 9147 §5.9).

`Transcript` keeps the running handshake hash (RFC 9846 §4.4.1), `KeySchedule` walks the
Early -> Handshake -> Main secret chain and the module functions derive everything that hangs
off a traffic secret (Finished, KeyUpdate, exporters, resumption PSKs, binders).

Every function takes `prefix` so that the TLS 1.3 test vectors of RFC 8448 (prefix
b"tls13 ") run through the same code as DTLS 1.3 (prefix b"dtls13").
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from .errors import DecryptError
from .iana import CipherSuite, HandshakeType

LABEL_PREFIX = b"dtls13"  # RFC 9147 §5.9; TLS 1.3 uses b"tls13 "

_EMPTY_HASH: dict[str, bytes] = {}


# hashlib's named constructors: hashlib.new(name) looks the digest up by name every time
# (an OpenSSL 3 fetch), these use one fetched once
_CONSTRUCTORS: dict[str, Callable[[], hashlib._Hash]] = {
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
}


def new_hash(hash_name: str) -> hashlib._Hash:
    """A fresh hash object of `hash_name` (hashlib.new's, faster for the suites' hashes)."""
    constructor = _CONSTRUCTORS.get(hash_name)
    return constructor() if constructor is not None else hashlib.new(hash_name)


_SHA384_SUITE = int(CipherSuite.TLS_AES_256_GCM_SHA384)


def suite_hash_name(suite: CipherSuite | int) -> str:
    """The hash of a cipher suite, as a hashlib name (RFC 9846 Appendix B.4)."""
    return "sha384" if suite == _SHA384_SUITE else "sha256"


def hkdf_extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869 §2.2)."""
    if not salt:
        salt = bytes(hashlib.new(hash_name).digest_size)
    return hmac.digest(salt, ikm, hash_name)


def hkdf_expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869 §2.3)."""
    block = hmac.digest(prk, info + b"\x01", hash_name)
    if length <= len(block):  # every TLS secret, key and IV: one HMAC
        return block if length == len(block) else block[:length]
    out = block
    counter = 2
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), hash_name)
        out += block
        counter += 1
    return out[:length]


Extract = Callable[[str, bytes, bytes], bytes]  # (hash name, salt, ikm) -> PRK
Expand = Callable[[str, bytes, bytes, int], bytes]  # (hash name, PRK, info, length) -> OKM
#: One stage of the schedule in one call (csrc/kdf.c's dtls_key_stage): (hash name, prefix,
#: previous stage secret or None for the Early Secret without a PSK, ikm, context, labels,
#: n_finished) -> [secret, Derive-Secret(secret, label, context) per label, the finished_key
#: of the first n_finished of those]
KeyStage = Callable[[str, bytes, bytes | None, bytes, bytes, tuple[bytes, ...], int], list[bytes]]

# HkdfLabel up to the context: uint16 length || opaque label<7..255>, per (length, prefix, label)
_LABEL_HEADERS: dict[tuple[int, bytes, bytes], bytes] = {}
_UINT8 = tuple(bytes([n]) for n in range(256))  # the opaque<..255> length prefixes


def hkdf_expand_label(
    hash_name: str,
    secret: bytes,
    label: bytes,
    context: bytes,
    length: int,
    prefix: bytes = LABEL_PREFIX,
    *,
    expand: Expand | None = None,
) -> bytes:
    """HKDF-Expand-Label (RFC 9846 §7.1) with the DTLS 1.3 prefix (RFC 9147 §5.9);
    `expand` replaces HKDF-Expand (a provider's, design §6)."""
    key = (length, prefix, label)
    header = _LABEL_HEADERS.get(key)
    if header is None:
        full_label = prefix + label
        header = length.to_bytes(2, "big") + bytes([len(full_label)]) + full_label
        if len(_LABEL_HEADERS) < 256:  # the labels of the protocol, not exporter labels
            _LABEL_HEADERS[key] = header
    if len(context) > 255:
        raise ValueError("HkdfLabel context is opaque<0..255>")
    info = b"".join((header, _UINT8[len(context)], context))
    return (expand or hkdf_expand)(hash_name, secret, info, length)


def empty_hash(hash_name: str) -> bytes:
    """Hash(""), the context of Derive-Secret(., label, "") (RFC 9846 §7.1)."""
    value = _EMPTY_HASH.get(hash_name)
    if value is None:
        value = _EMPTY_HASH[hash_name] = hashlib.new(hash_name).digest()
    return value


class Transcript:
    """The running transcript hash (RFC 9846 §4.4.1).

    DTLS hashes each handshake message with the TLS 1.3 header, msg_type and a uint24
    length, and without message_seq and the fragment fields (RFC 9147 §5.2). The hash may
    not be known when the first ClientHello is added: until `set_hash()` the messages are
    buffered.
    """

    __slots__ = ("_buffer", "_digest", "_hash", "hash_name")

    def __init__(self, hash_name: str | None = None) -> None:
        self.hash_name: str | None = None
        self._hash: hashlib._Hash | None = None
        self._buffer: list[bytes] = []
        # the last digest(), until a message is added: a Finished and the application
        # secrets are over the same messages (RFC 9846 §4.4.4, §7.1)
        self._digest: bytes | None = None
        if hash_name is not None:
            self.set_hash(hash_name)

    def set_hash(self, hash_name: str) -> None:
        """Fix the hash (the cipher suite's, RFC 9846 §4.4.1) and hash what was buffered."""
        if self._hash is not None:
            if hash_name != self.hash_name:
                raise ValueError("the transcript hash is already set to another algorithm")
            return
        h = new_hash(hash_name)
        for data in self._buffer:
            h.update(data)
        self._buffer.clear()
        self.hash_name = hash_name
        self._hash = h

    def add(self, data: bytes) -> None:
        """Add one whole handshake message: msg_type(1) || uint24 length || body."""
        self._digest = None
        if self._hash is not None:
            self._hash.update(data)
        else:
            self._buffer.append(bytes(data))

    def add_message(self, msg_type: int, body: bytes) -> None:
        """`add` of msg_type(1) || uint24 length || body (RFC 9147 §5.2: no message_seq
        or fragment fields), without joining them first."""
        header = ((msg_type << 24) | len(body)).to_bytes(4, "big")
        self._digest = None
        h = self._hash
        if h is not None:
            h.update(header)
            h.update(body)
        else:
            self._buffer.append(header + bytes(body))

    def digest(self) -> bytes:
        """Transcript-Hash of everything added so far; the transcript goes on."""
        digest = self._digest
        if digest is None:
            if self._hash is None:
                raise ValueError("the transcript hash is not known yet (call set_hash)")
            digest = self._digest = self._hash.copy().digest()
        return digest

    def digest_with(self, data: bytes, hash_name: str | None = None) -> bytes:
        """Transcript-Hash of everything so far followed by `data`, without adding it
        (a PSK binder's truncated ClientHello, RFC 9846 §4.2.11.2). Before set_hash(),
        `hash_name` says which hash to use."""
        if self._hash is not None:
            h = self._hash.copy()
        else:
            h = new_hash(hash_name or "sha256")
            for chunk in self._buffer:
                h.update(chunk)
        h.update(data)
        return h.digest()

    def copy(self) -> Transcript:
        """An independent copy, e.g. for post-handshake authentication (RFC 9846 §4.6.2)."""
        other = Transcript()
        other.hash_name = self.hash_name
        other._hash = self._hash.copy() if self._hash is not None else None
        other._buffer = list(self._buffer)
        other._digest = self._digest
        return other

    def restart_after_hello_retry(self, client_hello1_hash: bytes | None = None) -> None:
        """Replace ClientHello1 by the synthetic message_hash message (RFC 9846 §4.4.1).

        Call after adding ClientHello1 and before adding the HelloRetryRequest. A stateless
        server that kept only Hash(ClientHello1) in its cookie passes it as
        `client_hello1_hash` on a fresh transcript instead.
        """
        if self._hash is None or self.hash_name is None:
            raise ValueError("the transcript hash is not known yet (call set_hash)")
        if client_hello1_hash is None:
            client_hello1_hash = self._hash.digest()
        h = new_hash(self.hash_name)
        h.update(message_hash(client_hello1_hash))
        self._hash = h
        self._digest = None


def message_hash(client_hello1_hash: bytes) -> bytes:
    """The synthetic message_hash handshake message (RFC 9846 §4.4.1)."""
    return bytes([HandshakeType.MESSAGE_HASH, 0, 0, len(client_hello1_hash)]) + client_hello1_hash


class KeySchedule:
    """The secrets of RFC 9846 §7.1, one stage after the other.

    `early_secret()`, `handshake_secret()` and `master_secret()` advance the stage; the other
    methods derive the secrets of the current stage from a transcript hash.
    `handshake_stage()` and `application_stage()` advance a stage and derive what the
    handshake needs of it together (in one call with a provider's `key_stage`). The current
    stage secret is kept privately and never shown in a repr.
    """

    __slots__ = (
        "_expand", "_extract", "_finished_keys", "_key_stage", "_secret", "_stage", "hash_len",
        "hash_name", "prefix",
    )  # fmt: skip

    _EARLY = 1
    _HANDSHAKE = 2
    _MAIN = 3

    def __init__(
        self,
        suite: CipherSuite | int,
        prefix: bytes = LABEL_PREFIX,
        *,
        extract: Extract | None = None,
        expand: Expand | None = None,
        key_stage: KeyStage | None = None,
    ) -> None:
        # HKDF-Extract and -Expand: a provider's (design §6), else hashlib's HMAC; key_stage:
        # a whole stage in one call, in place of them for handshake_stage/application_stage
        self._extract = extract or hkdf_extract
        self._expand = expand or hkdf_expand
        self._key_stage = key_stage
        self._finished_keys: dict[bytes, bytes] = {}  # traffic secret -> its finished_key
        self.hash_name = suite_hash_name(suite)
        self.hash_len = len(empty_hash(self.hash_name))
        self.prefix = prefix
        self._secret = b""
        self._stage = 0

    def __repr__(self) -> str:
        return f"<KeySchedule {self.hash_name} stage={self._stage}>"

    def _derive(self, stage: int, label: bytes, transcript_hash: bytes) -> bytes:
        # Derive-Secret (RFC 9846 §7.1)
        if self._stage != stage:
            raise ValueError("secret requested at the wrong key schedule stage")
        return hkdf_expand_label(
            self.hash_name,
            self._secret,
            label,
            transcript_hash,
            self.hash_len,
            self.prefix,
            expand=self._expand,
        )

    def _next_salt(self) -> bytes:
        return hkdf_expand_label(
            self.hash_name,
            self._secret,
            b"derived",
            empty_hash(self.hash_name),
            self.hash_len,
            self.prefix,
            expand=self._expand,
        )

    # -- Early Secret
    def early_secret(self, psk: bytes | None = None) -> None:
        """Early Secret = HKDF-Extract(0, PSK or 0)."""
        zeros = bytes(self.hash_len)
        self._secret = self._extract(self.hash_name, zeros, psk if psk else zeros)
        self._stage = self._EARLY

    def binder_key(self, external: bool) -> bytes:
        """binder_key: "ext binder" for external PSKs, "res binder" for tickets."""
        label = b"ext binder" if external else b"res binder"
        return self._derive(self._EARLY, label, empty_hash(self.hash_name))

    def client_early_traffic_secret(self, transcript_hash: bytes) -> bytes:
        """client_early_traffic_secret over ClientHello."""
        return self._derive(self._EARLY, b"c e traffic", transcript_hash)

    def early_exporter_secret(self, transcript_hash: bytes) -> bytes:
        """early_exporter_secret over ClientHello (RFC 9846 §7.5)."""
        return self._derive(self._EARLY, b"e exp master", transcript_hash)

    # -- Handshake Secret
    def handshake_secret(self, shared_secret: bytes | None) -> None:
        """Handshake Secret = HKDF-Extract(Derive-Secret(ES, "derived", ""), (EC)DHE or 0).

        `None` is psk_ke mode (RFC 9846 §4.2.9), with no (EC)DHE share.
        """
        if self._stage == 0:
            self.early_secret(None)
        elif self._stage != self._EARLY:
            raise ValueError("handshake secret after the early stage")
        salt = self._next_salt()
        ikm = shared_secret if shared_secret is not None else bytes(self.hash_len)
        self._secret = self._extract(self.hash_name, salt, ikm)
        self._stage = self._HANDSHAKE

    def client_handshake_traffic_secret(self, transcript_hash: bytes) -> bytes:
        """Derive-Secret(., "c hs traffic") over ClientHello...ServerHello."""
        return self._derive(self._HANDSHAKE, b"c hs traffic", transcript_hash)

    def server_handshake_traffic_secret(self, transcript_hash: bytes) -> bytes:
        """Derive-Secret(., "s hs traffic") over ClientHello...ServerHello."""
        return self._derive(self._HANDSHAKE, b"s hs traffic", transcript_hash)

    def handshake_stage(
        self, shared_secret: bytes | None, transcript_hash: bytes
    ) -> tuple[bytes, bytes]:
        """The Handshake Secret, then client_ and server_handshake_traffic_secret over
        ClientHello...ServerHello (and their finished keys, RFC 9846 §4.4.4): one call with
        a `key_stage`."""
        if self._key_stage is None:
            self.handshake_secret(shared_secret)
            return (
                self.client_handshake_traffic_secret(transcript_hash),
                self.server_handshake_traffic_secret(transcript_hash),
            )
        if self._stage not in (0, self._EARLY):
            raise ValueError("handshake secret after the early stage")
        ikm = shared_secret if shared_secret is not None else bytes(self.hash_len)
        prev = self._secret if self._stage == self._EARLY else None
        secret, client, server, client_finished, server_finished = self._key_stage(
            self.hash_name, self.prefix, prev, ikm, transcript_hash, _HANDSHAKE_LABELS, 2
        )
        self._secret = secret
        self._stage = self._HANDSHAKE
        self._finished_keys = {client: client_finished, server: server_finished}
        return client, server

    def verify_data(self, base_key: bytes, transcript_hash: bytes) -> bytes:
        """Finished.verify_data (RFC 9846 §4.4.4) for a traffic secret of this schedule."""
        finished_key = self._finished_keys.get(base_key)
        if finished_key is None:
            return finished_verify_data(
                self.hash_name, base_key, transcript_hash, self.prefix, expand=self._expand
            )
        # HMAC(finished_key, transcript hash) is HKDF-Extract with the key as salt (RFC 5869
        # §2.2): the provider's HMAC, which beats hashlib's one-shot HMAC here
        return self._extract(self.hash_name, finished_key, transcript_hash)

    # -- Main Secret
    def master_secret(self) -> None:
        """Main Secret = HKDF-Extract(Derive-Secret(HS, "derived", ""), 0)."""
        if self._stage != self._HANDSHAKE:
            raise ValueError("main secret before the handshake secret")
        salt = self._next_salt()
        self._secret = self._extract(self.hash_name, salt, bytes(self.hash_len))
        self._stage = self._MAIN

    def client_application_traffic_secret(self, transcript_hash: bytes) -> bytes:
        """Derive-Secret(., "c ap traffic") over ClientHello...server Finished."""
        return self._derive(self._MAIN, b"c ap traffic", transcript_hash)

    def server_application_traffic_secret(self, transcript_hash: bytes) -> bytes:
        """Derive-Secret(., "s ap traffic") over ClientHello...server Finished."""
        return self._derive(self._MAIN, b"s ap traffic", transcript_hash)

    def application_stage(self, transcript_hash: bytes) -> tuple[bytes, bytes, bytes]:
        """The Main Secret, then client_ and server_application_traffic_secret_0 and
        exporter_master_secret over ClientHello...server Finished: one call with a
        `key_stage`."""
        if self._key_stage is None:
            self.master_secret()
            return (
                self.client_application_traffic_secret(transcript_hash),
                self.server_application_traffic_secret(transcript_hash),
                self.exporter_master_secret(transcript_hash),
            )
        if self._stage != self._HANDSHAKE:
            raise ValueError("main secret before the handshake secret")
        secret, client, server, exporter = self._key_stage(
            self.hash_name, self.prefix, self._secret, bytes(self.hash_len), transcript_hash,
            _APPLICATION_LABELS, 0,
        )  # fmt: skip
        self._secret = secret
        self._stage = self._MAIN
        return client, server, exporter

    def exporter_master_secret(self, transcript_hash: bytes) -> bytes:
        """Derive-Secret(., "exp master") over ClientHello...server Finished."""
        return self._derive(self._MAIN, b"exp master", transcript_hash)

    def resumption_master_secret(self, transcript_hash: bytes) -> bytes:
        """Derive-Secret(., "res master") over ClientHello...client Finished."""
        return self._derive(self._MAIN, b"res master", transcript_hash)

    def deferred_resumption_master_secret(self, transcript_hash: bytes) -> Callable[[], bytes]:
        """`resumption_master_secret(transcript_hash)` as a call for later, which keeps the
        Main Secret but not the schedule: a client needs it only for a NewSessionTicket,
        and a server may send none (RFC 9846 §4.6.1)."""
        if self._stage != self._MAIN:
            raise ValueError("secret requested at the wrong key schedule stage")
        return _DeferredSecret(self, b"res master", transcript_hash)


class _DeferredSecret:
    """Derive-Secret(secret, label, transcript hash) of a schedule's current stage, derived
    when called; slotted, as a connection may keep one for its lifetime."""

    __slots__ = ("_context", "_expand", "_label", "_prefix", "_secret", "hash_name")

    def __init__(self, schedule: KeySchedule, label: bytes, transcript_hash: bytes) -> None:
        self.hash_name = schedule.hash_name
        self._secret = schedule._secret
        self._label = label
        self._context = transcript_hash
        self._prefix = schedule.prefix
        self._expand = schedule._expand

    def __repr__(self) -> str:
        return f"<deferred {self._label.decode()} secret>"  # never the secret itself

    def __call__(self) -> bytes:
        return hkdf_expand_label(
            self.hash_name,
            self._secret,
            self._label,
            self._context,
            _hash_len(self.hash_name),
            self._prefix,
            expand=self._expand,
        )


_HANDSHAKE_LABELS = (b"c hs traffic", b"s hs traffic")
_APPLICATION_LABELS = (b"c ap traffic", b"s ap traffic", b"exp master")


def _hash_len(hash_name: str) -> int:
    return len(empty_hash(hash_name))


def finished_verify_data(
    hash_name: str,
    base_key: bytes,
    transcript_hash: bytes,
    prefix: bytes = LABEL_PREFIX,
    *,
    expand: Expand | None = None,
) -> bytes:
    """Finished.verify_data (RFC 9846 §4.4.4).

    finished_key = HKDF-Expand-Label(BaseKey, "finished", "", Hash.length);
    verify_data = HMAC(finished_key, Transcript-Hash(...)).
    """
    finished_key = hkdf_expand_label(
        hash_name, base_key, b"finished", b"", _hash_len(hash_name), prefix, expand=expand
    )
    return hmac.digest(finished_key, transcript_hash, hash_name)


def verify_finished(
    hash_name: str,
    base_key: bytes,
    transcript_hash: bytes,
    verify_data: bytes,
    prefix: bytes = LABEL_PREFIX,
) -> None:
    """Check a received Finished or PSK binder in constant time; DecryptError if wrong.

    RFC 9846 §4.4.4 (Finished) and §4.2.11.2 (binders): both answer with decrypt_error.
    """
    expected = finished_verify_data(hash_name, base_key, transcript_hash, prefix)
    if not hmac.compare_digest(expected, verify_data):
        raise DecryptError("Finished or binder value does not verify")


def compute_binder(
    hash_name: str,
    binder_key: bytes,
    truncated_transcript_hash: bytes,
    prefix: bytes = LABEL_PREFIX,
    *,
    expand: Expand | None = None,
) -> bytes:
    """A PSK binder (RFC 9846 §4.2.11.2): Finished computed with the binder_key.

    `truncated_transcript_hash` covers the ClientHello up to and including the
    PreSharedKeyExtension.identities field (after an HRR, preceded by the first flight).
    """
    return finished_verify_data(
        hash_name, binder_key, truncated_transcript_hash, prefix, expand=expand
    )


def next_application_traffic_secret(
    hash_name: str, secret: bytes, prefix: bytes = LABEL_PREFIX, *, expand: Expand | None = None
) -> bytes:
    """application_traffic_secret_N+1 (RFC 9846 §7.2), for KeyUpdate."""
    return hkdf_expand_label(
        hash_name, secret, b"traffic upd", b"", _hash_len(hash_name), prefix, expand=expand
    )


def export_keying_material(
    hash_name: str,
    exporter_master_secret: bytes,
    label: bytes,
    context: bytes,
    length: int,
    prefix: bytes = LABEL_PREFIX,
    *,
    expand: Expand | None = None,
) -> bytes:
    """TLS-Exporter(label, context_value, key_length) (RFC 9846 §7.5).

    HKDF-Expand-Label(Derive-Secret(Secret, label, ""), "exporter", Hash(context), length).
    An absent context and an empty one give the same value in (D)TLS 1.3.
    """
    hash_len = _hash_len(hash_name)
    if not 0 < length <= 255 * hash_len:
        raise ValueError(f"exporter length must be between 1 and {255 * hash_len}")
    if len(prefix) + len(label) > 255:
        raise ValueError("exporter label is too long")
    derived = hkdf_expand_label(
        hash_name,
        exporter_master_secret,
        label,
        empty_hash(hash_name),
        hash_len,
        prefix,
        expand=expand,
    )
    context_hash = hashlib.new(hash_name, context).digest()
    return hkdf_expand_label(
        hash_name, derived, b"exporter", context_hash, length, prefix, expand=expand
    )


def resumption_psk(
    hash_name: str,
    resumption_master_secret: bytes,
    ticket_nonce: bytes,
    prefix: bytes = LABEL_PREFIX,
    *,
    expand: Expand | None = None,
) -> bytes:
    """The PSK of a ticket (RFC 9846 §4.6.1):
    HKDF-Expand-Label(resumption_secret, "resumption", ticket_nonce, Hash.length)."""
    return hkdf_expand_label(
        hash_name,
        resumption_master_secret,
        b"resumption",
        ticket_nonce,
        _hash_len(hash_name),
        prefix,
        expand=expand,
    )
