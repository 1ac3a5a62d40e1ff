"""What one engine call did, observed from outside the engine.

The model charges CPU time for the work the real engine performed, without a second
implementation of the protocol. Everything is read from public state:
- AEAD: the ciphertext records in the datagrams the call produced (split by their headers,
  RFC 9147 §4) and the `record_counters` deltas of records opened or failing to open;
- handshake messages and public-key operations: the handshake states entered (RFC 9846
  Appendix A), each of which means a known message was processed, with the work that
  message implies (below); a HelloRetryRequest exchange is seen as output without a state
  change or a retransmission; post-handshake messages as the events they cause;
- certificate chains: the length of `peer_certificates` (the verified path, anchor last).

Work per state entered (one group, one signature algorithm per scenario):
  client  WAIT_SH        ClientHello built; one key pair generated
          WAIT_EE        ServerHello; shared secret computed
          WAIT_CERT_CR   EncryptedExtensions          WAIT_CERT  CertificateRequest
          WAIT_CV        Certificate; chain verified  WAIT_FINISHED  CertificateVerify checked
          CONNECTED      Finished in and out (+ Certificate, CertificateVerify, a signature
                         with mutual authentication)
  server  first state after START: ClientHello in; key pair, shared secret; ServerHello,
          EncryptedExtensions, [CertificateRequest], Certificate, CertificateVerify (one
          signature), Finished out
          WAIT_CV, WAIT_FINISHED (mutual): client Certificate, CertificateVerify
          CONNECTED      Finished in (+ NewSessionTickets out)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..connection import Connection, HandshakeState
from ..events import Event, KeyUpdated, SessionTicketReceived
from ..record import RecordKind, split_datagram
from .timing import Work

S = HandshakeState
CLIENT_PATH = (S.START, S.WAIT_SH, S.WAIT_EE, S.WAIT_CERT_CR, S.WAIT_CV, S.WAIT_FINISHED,
               S.CONNECTED)
CLIENT_PATH_MUTUAL = (S.START, S.WAIT_SH, S.WAIT_EE, S.WAIT_CERT_CR, S.WAIT_CERT, S.WAIT_CV,
                      S.WAIT_FINISHED, S.CONNECTED)
SERVER_PATH = (S.START, S.WAIT_FINISHED, S.CONNECTED)
SERVER_PATH_MUTUAL = (S.START, S.WAIT_CERT, S.WAIT_CV, S.WAIT_FINISHED, S.CONNECTED)
_CIPHERTEXT = RecordKind.CIPHERTEXT


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The observable state of a connection before a call."""

    state: HandshakeState
    retransmissions: int
    opened: int
    opened_bytes: int
    failed: int


def snapshot(conn: Connection) -> Snapshot:
    c = conn.record_counters
    return Snapshot(conn.state, conn.retransmissions, c.records_opened, c.bytes_opened,
                    c.failed_authentication)


@dataclass(frozen=True)
class Observer:
    """Turns a call's visible effects into `Work`, for one role of one scenario."""

    is_client: bool
    mutual: bool = False
    session_tickets: int = 0

    @property
    def path(self) -> tuple[HandshakeState, ...]:
        if self.is_client:
            return CLIENT_PATH_MUTUAL if self.mutual else CLIENT_PATH
        return SERVER_PATH_MUTUAL if self.mutual else SERVER_PATH

    def observe(
        self, conn: Connection, before: Snapshot, outputs: Sequence[bytes], events: Sequence[Event]
    ) -> tuple[Work, list[int]]:
        """The work of the call, and how many records each output datagram holds."""
        work = Work()
        records = []
        for data in outputs:
            spans, _ = split_datagram(data)
            records.append(len(spans))
            for span in spans:
                if span.kind is _CIPHERTEXT:
                    work.aead_records += 1
                    work.aead_bytes += span.length
        c = conn.record_counters
        work.aead_records += c.records_opened - before.opened
        work.aead_records += c.failed_authentication - before.failed
        work.aead_bytes += c.bytes_opened - before.opened_bytes
        state = conn.state
        if state is not before.state:
            self._transitions(conn, before.state, state, work)
        elif (
            outputs
            and state in (S.START, S.WAIT_SH)
            and conn.retransmissions == before.retransmissions
        ):
            work.messages += 2  # HelloRetryRequest made or answered (RFC 9147 §5.1)
        for event in events:
            if isinstance(event, (KeyUpdated, SessionTicketReceived)):
                work.messages += 1
        return work, records

    def _transitions(self, conn: Connection, old: HandshakeState, new: HandshakeState,
                     work: Work) -> None:
        path = self.path
        if old not in path or new not in path:
            return  # closed (or a path this model does not know): no handshake work
        for state in path[path.index(old) + 1 : path.index(new) + 1]:
            if self.is_client:
                self._client_entered(conn, state, work)
            else:
                self._server_entered(conn, state, work)

    def _client_entered(self, conn: Connection, state: HandshakeState, work: Work) -> None:
        work.messages += 1
        if state is S.WAIT_SH:
            work.key_generations += 1
        elif state is S.WAIT_EE:
            work.key_agreements += 1
        elif state is S.WAIT_CV:
            work.chain_verifications += max(0, len(conn.peer_certificates) - 1)
        elif state is S.WAIT_FINISHED:
            work.verifications += 1
        elif state is S.CONNECTED:
            work.messages += 1
            if self.mutual:
                work.messages += 2
                work.signatures += 1

    def _server_entered(self, conn: Connection, state: HandshakeState, work: Work) -> None:
        path = self.path
        if state is path[1]:
            work.messages += 1 + (6 if self.mutual else 5)
            work.key_generations += 1
            work.key_agreements += 1
            work.signatures += 1
        elif state is S.WAIT_CV:
            work.messages += 1
            work.chain_verifications += max(0, len(conn.peer_certificates) - 1)
        elif state is S.WAIT_FINISHED:
            work.messages += 1
            work.verifications += 1
        elif state is S.CONNECTED:
            work.messages += 1 + self.session_tickets
