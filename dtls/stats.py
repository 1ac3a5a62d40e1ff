"""Statistics as plain frozen dataclasses: one call returns a consistent snapshot."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConnectionStats:
    """One connection: records through the record layer, drops by reason (RFC 9147
    §4.5.2), reliability and key state."""

    state: str
    records_sealed: int
    bytes_sealed: int
    records_opened: int
    bytes_opened: int
    dropped_malformed: int
    dropped_replayed: int
    dropped_failed_authentication: int
    dropped_unknown_epoch: int
    retransmissions: int
    keepalives_sent: int
    handshake_seconds: float | None
    send_epoch: int
    receive_epochs: tuple[int, ...]
    replay_window_size: int
    #: highest record number opened in the newest receiving epoch, plus one
    replay_window_next: int
