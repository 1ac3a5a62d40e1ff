"""A certificate as `ssl.SSLSocket.getpeercert()` shows it, and `cipher()`'s triple.

`certificate_dict` gives the dict CPython's `_ssl` module builds from OpenSSL (subject and
issuer as tuples of RDNs of (attribute, value) pairs, `version`, `serialNumber` in
hexadecimal, `notBefore` / `notAfter` as ASN1_TIME_print writes them, `subjectAltName`,
`OCSP`, `caIssuers`, `crlDistributionPoints`), so code written against `ssl` reads ours.
"""

from __future__ import annotations

import functools
import ipaddress
import ssl
from typing import Any

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from .iana import CipherSuite
from .record_py import KEY_LENGTHS

__all__ = ["PROTOCOL_VERSION", "certificate_dict", "cipher_triple", "peer_certificate"]

#: what `version()` returns, as `ssl.SSLSocket.version()` returns "TLSv1.3"
PROTOCOL_VERSION = "DTLSv1.3"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# otherName types OpenSSL 3 prints (GENERAL_NAME_print), with the string tag each holds
_OTHER_NAMES = {
    "1.3.6.1.4.1.311.20.2.3": ("UPN", 0x0C),
    "1.3.6.1.5.5.7.8.5": ("XmppAddr", 0x0C),
    "1.3.6.1.5.5.7.8.7": ("SRVName", 0x16),
    "1.3.6.1.5.5.7.8.8": ("NAIRealm", 0x0C),
    "1.3.6.1.5.5.7.8.9": ("SmtpUTF8Mailbox", 0x0C),
}


def cipher_triple(suite: int) -> tuple[str, str, int]:
    """(name, protocol, secret bits), as `ssl.SSLSocket.cipher()`: the IANA name (RFC 9846
    Appendix B.4), "DTLSv1.3" and the AEAD key's length in bits."""
    return CipherSuite(suite).name, PROTOCOL_VERSION, 8 * KEY_LENGTHS[CipherSuite(suite)]


@functools.lru_cache(maxsize=256)
def _object_name(oid: str) -> str:
    """OpenSSL's long name of an OID, else the dotted form (OBJ_obj2txt, no_name=0)."""
    try:
        return str(ssl._ASN1Object(oid).longname)  # the interpreter's OpenSSL table
    except (AttributeError, ValueError):
        return oid


def _name(name: x509.Name) -> tuple[tuple[tuple[str, Any], ...], ...]:
    return tuple(
        tuple((_object_name(a.oid.dotted_string), a.value) for a in rdn) for rdn in name.rdns
    )


def _time(when: Any) -> str:
    # ASN1_TIME_print: "Mon DD HH:MM:SS YYYY GMT", the day padded with a space
    return (f"{_MONTHS[when.month - 1]} {when.day:2d} "
            f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {when.year} GMT")


def _serial(number: int) -> str:
    # i2a_ASN1_INTEGER: the magnitude's bytes in upper-case hexadecimal, "-" if negative
    digits = format(abs(number), "X")
    return ("-" if number < 0 else "") + digits.rjust(len(digits) + len(digits) % 2, "0")


def _other_name(name: x509.OtherName) -> str:
    known = _OTHER_NAMES.get(name.type_id.dotted_string)
    value = name.value
    # a short DER string: tag, one length byte, the text
    if known is None or len(value) < 2 or value[0] != known[1] or value[1] != len(value) - 2:
        return "<unsupported>"
    return f"{known[0]}:{value[2:].decode('utf-8', 'replace')}"


def _general_name(name: x509.GeneralName) -> tuple[str, Any]:
    if isinstance(name, x509.DNSName):
        return ("DNS", name.value)
    if isinstance(name, x509.RFC822Name):
        return ("email", name.value)
    if isinstance(name, x509.UniformResourceIdentifier):
        return ("URI", name.value)
    if isinstance(name, x509.DirectoryName):
        return ("DirName", _name(name.value))
    if isinstance(name, x509.RegisteredID):
        return ("Registered ID", _object_name(name.value.dotted_string))
    if isinstance(name, x509.IPAddress):
        address = name.value
        if isinstance(address, ipaddress.IPv4Address):
            return ("IP Address", str(address))
        if isinstance(address, ipaddress.IPv6Address):
            words = address.packed
            return ("IP Address", ":".join(
                f"{words[i] << 8 | words[i + 1]:X}" for i in range(0, 16, 2)
            ))
        return ("IP Address", "<invalid>")  # a network (name constraints), not an address
    if isinstance(name, x509.OtherName):
        return ("othername", _other_name(name))
    return ("unsupported", "<unsupported>")


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> Any:
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def certificate_dict(cert: x509.Certificate) -> dict[str, Any]:
    """The dict `ssl.SSLSocket.getpeercert()` returns for `cert`."""
    out: dict[str, Any] = {
        "subject": _name(cert.subject),
        "issuer": _name(cert.issuer),
        "version": cert.version.value + 1,
        "serialNumber": _serial(cert.serial_number),
        "notBefore": _time(cert.not_valid_before_utc),
        "notAfter": _time(cert.not_valid_after_utc),
    }
    alt_names = _extension(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if alt_names is not None:
        out["subjectAltName"] = tuple(_general_name(n) for n in alt_names)
    access = _extension(cert, ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    for key, method in (("OCSP", AuthorityInformationAccessOID.OCSP),
                        ("caIssuers", AuthorityInformationAccessOID.CA_ISSUERS)):
        uris = tuple(
            d.access_location.value for d in access or ()
            if d.access_method == method
            and isinstance(d.access_location, x509.UniformResourceIdentifier)
        )
        if uris:
            out[key] = uris
    points = _extension(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS)
    uris = tuple(
        n.value for p in points or () for n in p.full_name or ()
        if isinstance(n, x509.UniformResourceIdentifier)
    )
    if uris:
        out["crlDistributionPoints"] = uris
    return out


def peer_certificate(
    certificates: tuple[x509.Certificate, ...], verified: bool, binary_form: bool
) -> dict[str, Any] | bytes | None:
    """`getpeercert()` of a connection whose peer sent `certificates` (leaf first): None
    without one (PSK, resumption, raw public key), the leaf's DER with `binary_form`, else
    its dict, empty when it was not verified (verify_mode CERT_NONE), as in `ssl`."""
    if not certificates:
        return None
    if binary_form:
        from .crypto import certificate_der

        return certificate_der(certificates[0])
    return certificate_dict(certificates[0]) if verified else {}
