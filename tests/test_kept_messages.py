"""Messages a context keeps encoded (`Context.kept_message`, `messages.keep_encoding`):
the same bytes as the general encoder, and a changed copy encoded anew."""

from __future__ import annotations

import dataclasses
from typing import Any

from cryptography.hazmat.primitives import serialization
from loopback import Loopback

from dtls.config import MAX_KEPT_MESSAGES, Context, CookieMode
from dtls.connection import Connection
from dtls.messages import (
    Certificate,
    CertificateEntry,
    EncryptedExtensions,
    encode_handshake,
    keep_encoding,
)


def _handshake(client_ctx: Context, server_ctx: Context) -> Connection:
    """One handshake over the tests' in-memory link; the client."""
    link = Loopback(Connection(client_ctx, server_name="localhost"), Connection(server_ctx))
    link.start()
    link.run(until=600.0)
    assert link.client.handshake_complete and link.server.handshake_complete
    return link.client


def test_kept_encoding_is_the_encoders() -> None:
    ee = EncryptedExtensions(server_name=True, record_size_limit=1000)
    expected = encode_handshake(EncryptedExtensions(server_name=True, record_size_limit=1000))
    assert keep_encoding(ee) is ee
    assert encode_handshake(ee) == expected
    cert = keep_encoding(Certificate(b"", [CertificateEntry(b"\x30\x00")]))
    assert encode_handshake(cert) == encode_handshake(
        Certificate(b"", [CertificateEntry(b"\x30\x00")])
    )


def test_changed_copy_is_encoded_anew() -> None:
    ee = keep_encoding(EncryptedExtensions())
    changed = dataclasses.replace(ee, early_data=True)
    assert encode_handshake(changed) == encode_handshake(EncryptedExtensions(early_data=True))
    assert encode_handshake(changed) != encode_handshake(ee)


def test_kept_message_is_built_once_per_key() -> None:
    ctx = Context.client()
    built: list[Any] = []

    def build() -> EncryptedExtensions:
        built.append(1)
        return EncryptedExtensions()

    first = ctx.kept_message(("k", 1), build)
    assert ctx.kept_message(("k", 1), build) is first
    assert len(built) == 1
    for i in range(2 * MAX_KEPT_MESSAGES):  # beyond the bound: built, not kept
        ctx.kept_message(("more", i), build)
    assert len(ctx._kept_messages) == MAX_KEPT_MESSAGES


def test_server_keeps_its_certificate_and_encrypted_extensions(pki: Any) -> None:
    """A server context's second handshake sends the messages its first kept, whose
    encodings are the encoders' (copies carry no kept encoding)."""
    client_ctx = Context.client(cadata=pki.ca_pem)
    server_ctx = Context.server(cookie_mode=CookieMode.NEVER, session_tickets=0)
    server_ctx.load_cert_chain(certdata=pki.chain_pem, keydata=pki.key_pem)
    _handshake(client_ctx, server_ctx)
    kept = dict(server_ctx._kept_messages)
    assert sorted(type(m).__name__ for m in kept.values()) == [
        "Certificate",
        "EncryptedExtensions",
    ]
    client = _handshake(client_ctx, server_ctx)
    assert server_ctx._kept_messages == kept
    assert [c.public_bytes(encoding=serialization.Encoding.DER) for c in client.peer_certificates][
        :2
    ] == list(server_ctx.certificate_chain_der())
    for message in kept.values():
        assert encode_handshake(message) == encode_handshake(dataclasses.replace(message))
