"""The ssl-shaped views of a connection: version(), cipher(), selected_alpn_protocol(),
getpeercert() (checked against CPython's own decoding of the same certificate),
getpeername() and fileno()."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from loopback import Loopback

from dtls import aio, sync
from dtls.config import Context
from dtls.connection import Connection
from dtls.iana import CipherSuite
from dtls.peercert import certificate_dict, cipher_triple
from dtls.session import ExternalPsk

HOST = "127.0.0.1"


def ssl_decoding(cert: x509.Certificate, tmp_path: Path) -> dict[str, Any]:
    """What CPython's ssl (OpenSSL) makes of `cert`: the reference for our dict."""
    path = tmp_path / "cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined,no-any-return]


def make_certificate(
    subject: x509.Name, extensions: list[x509.ExtensionType], serial: int,
    not_before: datetime.datetime, not_after: datetime.datetime,
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Issuer CA"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Org")])
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
        .public_key(key.public_key()).serial_number(serial)
        .not_valid_before(not_before).not_valid_after(not_after)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hashes.SHA256())


UTC = datetime.timezone.utc
RICH_SUBJECT = x509.Name([
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")]),
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Bayern")]),
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.LOCALITY_NAME, "München")]),
    x509.RelativeDistinguishedName([  # a multi-valued RDN
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ex Ltd"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "IoT"),
    ]),
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example")]),
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ops@example.com")]),
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.SERIAL_NUMBER, "A-17")]),
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.USER_ID, "u17")]),
    x509.RelativeDistinguishedName(
        [x509.NameAttribute(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), "private")]
    ),
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "device-17")]),
])
CERTIFICATES = {
    "plain": (x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plain")]), [], 1,
              datetime.datetime(2024, 3, 5, 7, 8, 9, tzinfo=UTC),
              datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)),
    "rich": (RICH_SUBJECT, [
        x509.SubjectAlternativeName([
            x509.DNSName("device-17.example"),
            x509.DNSName("*.wild.example"),
            x509.IPAddress(ipaddress.ip_address("192.0.2.17")),
            x509.IPAddress(ipaddress.ip_address("2001:db8::17")),
            x509.RFC822Name("ops@example.com"),
            x509.UniformResourceIdentifier("coaps://device-17.example/"),
            x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dir")])),
            x509.RegisteredID(x509.ObjectIdentifier("1.3.6.1.4.1.55555.7")),
            x509.RegisteredID(x509.ObjectIdentifier("1.3.6.1.5.5.7.3.1")),
            x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"),
                           b"\x0c\x10user@example.com"),
            x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.55555.9"), b"\x04\x02hi"),
        ]),
        x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier("http://ocsp.example/")),
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                   x509.UniformResourceIdentifier("http://ca.example/ca.der")),
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier("http://ocsp2.example/")),
        ]),
        x509.CRLDistributionPoints([
            x509.DistributionPoint(
                [x509.UniformResourceIdentifier("http://crl.example/1.crl"),
                 x509.DNSName("not-a-uri.example")], None, None, None),
            x509.DistributionPoint(
                [x509.UniformResourceIdentifier("http://crl.example/2.crl")], None, None, None),
        ]),
     ], 0x00FEDCBA9876543210, datetime.datetime(2025, 1, 9, 0, 0, 0, tzinfo=UTC),
     datetime.datetime(2051, 11, 10, 12, 0, 1, tzinfo=UTC)),
    # a serial with an odd number of hex digits and the high bit of its first byte set
    "serials": (x509.Name([]), [x509.SubjectAlternativeName([x509.DNSName("x.example")])],
                0xABC, datetime.datetime(1999, 1, 1, tzinfo=UTC),
                datetime.datetime(2000, 2, 29, tzinfo=UTC)),
    "high_bit": (x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "h")]), [], 0x80FF,
                 datetime.datetime(2030, 10, 20, 1, 2, 3, tzinfo=UTC),
                 datetime.datetime(2031, 10, 20, 1, 2, 3, tzinfo=UTC)),
}


@pytest.mark.parametrize("name", sorted(CERTIFICATES))
def test_certificate_dict_is_what_ssl_decodes(name: str, tmp_path: Path) -> None:
    cert = make_certificate(*CERTIFICATES[name])
    ours = certificate_dict(cert)
    assert ours == ssl_decoding(cert, tmp_path)
    assert list(ours) == list(ssl_decoding(cert, tmp_path))  # the same keys, in order


def test_certificate_dict_of_the_test_pki(pki: Any, tmp_path: Path) -> None:
    for cert in (pki.server.cert, pki.client.cert, pki.root.cert, pki.server_rsa.cert):
        assert certificate_dict(cert) == ssl_decoding(cert, tmp_path)


def test_certificate_dict_shapes(tmp_path: Path) -> None:
    d = certificate_dict(make_certificate(*CERTIFICATES["rich"]))
    assert d["serialNumber"] == "FEDCBA9876543210"
    assert d["notBefore"] == "Jan  9 00:00:00 2025 GMT"
    assert d["notAfter"] == "Nov 10 12:00:01 2051 GMT"
    assert d["version"] == 3
    assert d["subject"][2] == (("localityName", "München"),)
    assert d["subject"][8] == (("1.3.6.1.4.1.55555.1", "private"),)  # unknown: dotted
    assert ("IP Address", "2001:DB8:0:0:0:0:0:17") in d["subjectAltName"]
    assert ("Registered ID", "TLS Web Server Authentication") in d["subjectAltName"]
    assert ("othername", "UPN:user@example.com") in d["subjectAltName"]
    assert ("othername", "<unsupported>") in d["subjectAltName"]
    assert d["OCSP"] == ("http://ocsp.example/", "http://ocsp2.example/")
    assert d["caIssuers"] == ("http://ca.example/ca.der",)
    assert d["crlDistributionPoints"] == ("http://crl.example/1.crl", "http://crl.example/2.crl")


# ---- on the sans-I/O engine ----


def engines(pki: Any, suite: CipherSuite | None = None, **client: Any) -> Loopback:
    suites = {"cipher_suites": (suite,)} if suite is not None else {}
    server_ctx = Context.server(cookie_mode="never", **suites)
    server_ctx.load_cert_chain(certdata=pki.chain_pem, keydata=pki.key_pem)
    client_ctx = Context.client(cadata=pki.ca_pem, **suites, **client)
    return Loopback(Connection(client_ctx, server_name="localhost"), Connection(server_ctx))


@pytest.mark.parametrize("suite", list(CipherSuite))
def test_cipher_is_the_negotiated_suite(pki: Any, suite: CipherSuite) -> None:
    link = engines(pki, suite)
    assert link.client.cipher() is None and link.client.version() is None
    with pytest.raises(ValueError, match="handshake not done"):
        link.client.getpeercert()
    link.start()
    link.run()
    bits = {"TLS_AES_256_GCM_SHA384": 256, "TLS_CHACHA20_POLY1305_SHA256": 256}
    expected = (suite.name, "DTLSv1.3", bits.get(suite.name, 128))
    assert link.client.cipher_suite == suite
    assert link.client.cipher() == link.server.cipher() == expected
    assert cipher_triple(suite) == expected
    assert link.client.version() == link.server.version() == "DTLSv1.3"


def test_getpeercert_on_the_engine(pki: Any, tmp_path: Path) -> None:
    link = engines(pki, alpn_protocols=("coap", "h3"))
    link.server.context.alpn_protocols = ("h3",)
    link.start()
    link.run()
    client, server = link.client, link.server
    assert client.getpeercert() == ssl_decoding(pki.server.cert, tmp_path)
    assert client.getpeercert(binary_form=True) == pki.server.cert_der
    assert server.getpeercert() is None  # no client certificate
    assert client.selected_alpn_protocol() == server.selected_alpn_protocol() == "h3"


def test_getpeercert_unverified_is_empty_and_none_without_certificates(pki: Any) -> None:
    link = engines(pki)
    link.client.context.verify_mode = ssl.CERT_NONE
    link.client.context.check_hostname = False
    link.start()
    link.run()
    assert link.client.getpeercert() == {}  # received, not verified: as ssl
    assert link.client.getpeercert(binary_form=True) == pki.server.cert_der
    assert link.client.selected_alpn_protocol() is None

    psk = ExternalPsk(b"id", bytes(32))
    server = Connection(Context.server(cookie_mode="never", psk_lookup={psk.identity: psk}.get))
    client = Connection(Context.client(verify=False, psk=psk), server_name="x")
    link = Loopback(client, server)
    link.start()
    link.run()
    assert client.version() == "DTLSv1.3"
    assert client.getpeercert() is None and client.getpeercert(binary_form=True) is None


# ---- on the front-ends ----


def server_context(pki: Any, **settings: Any) -> Context:
    ctx = Context.server(**settings)
    ctx.load_cert_chain(certdata=pki.chain_pem, keydata=pki.key_pem)
    return ctx


def test_sync_connection_views(pki: Any, tmp_path: Path) -> None:
    with sync.Server((HOST, 0), server_context(pki, alpn_protocols=("coap",))) as server:
        client_ctx = Context.client(cadata=pki.ca_pem, alpn_protocols=("coap",))
        client_ctx.load_cert_chain(certdata=pki.client.chain_pem, keydata=pki.client.key_pem)
        server.endpoint.context.request_client_certificate = True
        server.endpoint.context.load_verify_locations(cadata=pki.ca_pem)
        server.endpoint.context.verify_mode = ssl.CERT_REQUIRED
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with sync.connect(server.server_address, client_ctx, server_name="localhost",
                          timeout=10) as conn:
            accepted = server.accept(timeout=10)
            assert conn.version() == accepted.version() == "DTLSv1.3"
            assert conn.cipher() == accepted.cipher() == ("TLS_AES_128_GCM_SHA256",
                                                          "DTLSv1.3", 128)
            assert conn.selected_alpn_protocol() == accepted.selected_alpn_protocol() == "coap"
            assert conn.getpeercert() == ssl_decoding(pki.server.cert, tmp_path)
            assert accepted.getpeercert() == ssl_decoding(pki.client.cert, tmp_path)
            assert accepted.getpeercert(True) == pki.client.cert_der
            assert conn.getpeername() == server.server_address
            assert accepted.getpeername() == conn.local_address
            sock = socket.socket(fileno=socket.dup(conn.fileno()))  # a real, connected fd
            try:
                assert sock.getpeername() == server.server_address
            finally:
                sock.close()
            assert accepted.fileno() == server.fileno()
            sock = socket.socket(fileno=socket.dup(server.fileno()))
            try:
                assert sock.getsockname() == server.server_address
            finally:
                sock.close()


def test_aio_connection_views(pki: Any, tmp_path: Path) -> None:
    async def main() -> None:
        seen: list[tuple[Any, ...]] = []

        async def handler(conn: aio.AsyncConnection) -> None:
            seen.append((conn.version(), conn.cipher(), conn.getpeercert(), conn.getpeername(),
                         conn.fileno()))
            async for message in conn:
                await conn.send(message)

        ctx = server_context(pki, cipher_suites=("TLS_CHACHA20_POLY1305_SHA256",))
        server = await aio.serve(handler, HOST, 0, ctx)
        client_ctx = Context.client(cadata=pki.ca_pem)
        async with await aio.connect(HOST, server.port, client_ctx,
                                     server_name="localhost") as conn:
            await conn.send(b"x")
            assert await conn.recv() == b"x"
            assert conn.version() == "DTLSv1.3"
            assert conn.cipher() == ("TLS_CHACHA20_POLY1305_SHA256", "DTLSv1.3", 256)
            assert conn.getpeercert() == ssl_decoding(pki.server.cert, tmp_path)
            assert conn.getpeername() == (HOST, server.port)
            assert conn.selected_alpn_protocol() is None
            sock = socket.socket(fileno=socket.dup(conn.fileno()))
            try:
                assert sock.getpeername() == (HOST, server.port)
            finally:
                sock.close()
            local = conn.local_address
        listening = server.sockets[0].fileno()
        server.close()
        await server.wait_closed()
        assert seen == [("DTLSv1.3", ("TLS_CHACHA20_POLY1305_SHA256", "DTLSv1.3", 256), None,
                         local, listening)]

    asyncio.run(main())

