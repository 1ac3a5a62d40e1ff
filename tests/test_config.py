"""Context configuration errors: raised at once, with one sentence (as `ssl` does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dtls import Context
from dtls.config import parse_groups
from dtls.errors import ConfigurationError
from dtls.iana import NamedGroup


def test_load_cert_chain_rejects_a_key_of_another_certificate(pki: Any) -> None:
    ctx = Context.server()
    with pytest.raises(ConfigurationError, match="private key does not match the certificate"):
        ctx.load_cert_chain(certdata=pki.server.chain_pem, keydata=pki.client.key_pem)
    assert ctx.private_key is None and ctx.certificate_chain == []  # nothing half-loaded
    ctx.load_cert_chain(certdata=pki.server.chain_pem, keydata=pki.server.key_pem)
    assert ctx.private_key is not None


def test_load_cert_chain_matches_rsa_keys(pki: Any) -> None:
    ctx = Context.server()
    ctx.load_cert_chain(certdata=pki.server_rsa.chain_pem, keydata=pki.server_rsa.key_pem)
    with pytest.raises(ConfigurationError, match="does not match"):
        ctx.load_cert_chain(certdata=pki.server_rsa.chain_pem, keydata=pki.server.key_pem)


def test_groups_without_an_implementation_are_unknown() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown group 'ffdhe2048' \(groups known"):
        parse_groups("x25519,ffdhe2048")
    with pytest.raises(ConfigurationError, match="unknown group 'foo'"):
        parse_groups("foo")
    assert parse_groups("x448,P-256") == (NamedGroup.X448, NamedGroup.SECP256R1)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"confidentiality_limit": 0}, "confidentiality_limit must be at least 1"),
        ({"integrity_limit": -1}, "integrity_limit must be at least 1"),
        ({"max_early_data_size": -1}, "max_early_data_size must not be negative"),
        ({"max_datagram_size": 50}, "max_datagram_size must be at least 256"),
    ],
)
def test_check_rejects_out_of_range_settings(settings: dict[str, Any], message: str) -> None:
    ctx = Context.client(verify=False, **settings)
    with pytest.raises(ConfigurationError, match=message):
        ctx.check()
    Context.client(verify=False).check()  # the defaults pass


def test_keylog_file_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    ctx = Context.client(verify=False)
    ctx.keylog_filename = str(path)
    assert ctx.keylog is not None
    ctx.keylog("CLIENT_RANDOM 00 11")
    ctx.keylog("CLIENT_RANDOM 22 33")
    assert path.read_text() == "CLIENT_RANDOM 00 11\nCLIENT_RANDOM 22 33\n"
    assert path.stat().st_mode & 0o777 == 0o600
