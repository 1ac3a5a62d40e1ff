"""One exception hierarchy for the library, mapped to TLS alerts both ways (RFC 9846 §6.2).

A `ProtocolError` carries the alert it is answered with. Errors raised while handling
input from the network never leave `Connection.receive_datagram`: the connection turns
them into a fatal alert and a `ConnectionClosed` event.
"""

from __future__ import annotations

from .iana import AlertDescription, alert_name


class DTLSError(Exception):
    """Base class of every error this library raises."""


class ConfigurationError(DTLSError, ValueError):
    """The configuration cannot work (missing key, unknown suite, ...)."""


class ConnectionStateError(DTLSError):
    """The operation needs a connection in another state (closed, not yet connected)."""


class ProtocolError(DTLSError):
    """A protocol violation, answered with (or caused by) a fatal alert."""

    alert: AlertDescription = AlertDescription.INTERNAL_ERROR

    def __init__(self, message: str = "", alert: AlertDescription | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or "")
        if alert is not None:
            self.alert = alert


class DecodeError(ProtocolError):
    """A message or extension could not be parsed (decode_error)."""

    alert = AlertDescription.DECODE_ERROR


class UnexpectedMessage(ProtocolError):
    """A message arrived in a state where it is not allowed (unexpected_message)."""

    alert = AlertDescription.UNEXPECTED_MESSAGE


class IllegalParameter(ProtocolError):
    """A field had a value the protocol forbids (illegal_parameter)."""

    alert = AlertDescription.ILLEGAL_PARAMETER


class HandshakeFailure(ProtocolError):
    """No acceptable set of parameters (handshake_failure)."""

    alert = AlertDescription.HANDSHAKE_FAILURE


class ProtocolVersionError(ProtocolError):
    """The peer does not offer DTLS 1.3 (protocol_version)."""

    alert = AlertDescription.PROTOCOL_VERSION


class MissingExtension(ProtocolError):
    """A mandatory extension is absent (missing_extension)."""

    alert = AlertDescription.MISSING_EXTENSION


class UnsupportedExtension(ProtocolError):
    """An extension appeared where it is not allowed (unsupported_extension)."""

    alert = AlertDescription.UNSUPPORTED_EXTENSION


class DecryptError(ProtocolError):
    """A signature, Finished value or binder did not verify (decrypt_error)."""

    alert = AlertDescription.DECRYPT_ERROR


class BadRecordMac(ProtocolError):
    """Too many records failed authentication (bad_record_mac)."""

    alert = AlertDescription.BAD_RECORD_MAC


class RecordOverflow(ProtocolError):
    """A record or a reassembled message exceeded its limit (record_overflow)."""

    alert = AlertDescription.RECORD_OVERFLOW


class NoApplicationProtocol(ProtocolError):
    """No ALPN protocol in common (no_application_protocol)."""

    alert = AlertDescription.NO_APPLICATION_PROTOCOL


class TooManyCidsRequested(ProtocolError):
    """The peer asked for connection IDs too often (too_many_cids_requested)."""

    alert = AlertDescription.TOO_MANY_CIDS_REQUESTED


class InternalError(ProtocolError):
    """A local failure that ended the connection (internal_error)."""

    alert = AlertDescription.INTERNAL_ERROR


class CertificateError(ProtocolError):
    """Base of certificate verification failures (bad_certificate)."""

    alert = AlertDescription.BAD_CERTIFICATE


class BadCertificate(CertificateError):
    """A certificate is corrupt or does not match (bad_certificate)."""

    alert = AlertDescription.BAD_CERTIFICATE


class UnsupportedCertificate(CertificateError):
    """A certificate of an unsupported type (unsupported_certificate)."""

    alert = AlertDescription.UNSUPPORTED_CERTIFICATE


class CertificateExpired(CertificateError):
    """A certificate is expired or not yet valid (certificate_expired)."""

    alert = AlertDescription.CERTIFICATE_EXPIRED


class CertificateUnknown(CertificateError):
    """The certificate is unacceptable for another reason, e.g. the name (certificate_unknown)."""

    alert = AlertDescription.CERTIFICATE_UNKNOWN


class UnknownCA(CertificateError):
    """The chain does not lead to a trusted anchor (unknown_ca)."""

    alert = AlertDescription.UNKNOWN_CA


class CertificateRequired(CertificateError):
    """The server requires a client certificate and got none (certificate_required)."""

    alert = AlertDescription.CERTIFICATE_REQUIRED


class AlertReceived(DTLSError):
    """The peer sent a fatal alert, or close_notify."""

    def __init__(self, description: AlertDescription | int) -> None:
        try:
            self.description: AlertDescription | int = AlertDescription(description)
        except ValueError:
            self.description = description
        super().__init__(f"peer sent alert {alert_name(description)}")


# What a server's fatal alert during the handshake most likely means (RFC 9846 §6.2).
_REFUSAL_HINTS = {
    AlertDescription.HANDSHAKE_FAILURE: "no common cipher suite, group or signature scheme?",
    AlertDescription.INSUFFICIENT_SECURITY: "it wants stronger parameters than offered?",
    AlertDescription.PROTOCOL_VERSION: "it does not speak DTLS 1.3?",
    AlertDescription.NO_APPLICATION_PROTOCOL: "no common ALPN protocol?",
    AlertDescription.CERTIFICATE_REQUIRED: "it wants a client certificate",
    AlertDescription.UNKNOWN_CA: "it does not trust the issuer of our certificate",
    AlertDescription.BAD_CERTIFICATE: "it rejected our certificate",
    AlertDescription.UNKNOWN_PSK_IDENTITY: "it does not know our PSK identity",
    AlertDescription.UNSUPPORTED_EXTENSION: "an extension it does not allow here",
}


class HandshakeRefused(AlertReceived):
    """The server ended our handshake with a fatal alert (an AlertReceived)."""

    def __init__(self, description: AlertDescription | int) -> None:
        super().__init__(description)
        name = getattr(self.description, "name", str(description)).lower()
        hint = _REFUSAL_HINTS.get(self.description) if isinstance(
            self.description, AlertDescription) else None
        self.args = (f"the server refused: {name}" + (f" ({hint})" if hint else ""),)


_BY_ALERT: dict[int, type[ProtocolError]] = {}
for _cls in list(globals().values()):
    if (
        isinstance(_cls, type)
        and issubclass(_cls, ProtocolError)
        and _cls
        not in (
            ProtocolError,
            CertificateError,
        )
    ):
        _BY_ALERT.setdefault(int(_cls.alert), _cls)


def error_for_alert(description: int, message: str = "") -> ProtocolError:
    """The exception class that stands for `description` (RFC 9846 §6.2)."""
    cls = _BY_ALERT.get(description, ProtocolError)
    try:
        alert = AlertDescription(description)
    except ValueError:
        alert = AlertDescription.INTERNAL_ERROR
    return cls(message, alert)
