"""Statistics as plain frozen dataclasses: one call returns a consistent snapshot.

Their fields hold raw values (counts, bytes, seconds) for code; `str()` of one is a
table for people, with units and rounding (`format_fields`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_SI = ((1e9, "G"), (1e6, "M"), (1e3, "k"))


def format_count(value: int) -> str:
    return f"{value:,}"


def format_bytes(value: float) -> str:
    """1,234,567 -> "1.23 MB" (SI prefixes); below 1000, exact bytes."""
    for scale, prefix in _SI:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}B"
    return f"{value:g} B"


def format_rate(bits_per_second: float) -> str:
    """12_300_000 -> "12.3 Mbit/s"."""
    for scale, prefix in _SI:
        if abs(bits_per_second) >= scale:
            return f"{bits_per_second / scale:.3g} {prefix}bit/s"
    return f"{bits_per_second:.3g} bit/s"


def format_seconds(value: float) -> str:
    """0.0123 -> "12.3 ms"; 0.0000042 -> "4.2 us"; 75 -> "75 s"."""
    if math.isnan(value):
        return "-"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return "0 s" if value == 0 else f"{value * 1e9:.3g} ns"


def format_ratio(value: float) -> str:
    """0.9876 -> "98.8 %"."""
    return "-" if math.isnan(value) else f"{100 * value:.3g} %"


def format_value(name: str, value: Any) -> str:
    """A field shown with the unit its name says (``*bytes*``, ``*seconds``, ...)."""
    if value is None:
        return "-"
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value) or "-"
    if "bytes" in name:
        return format_bytes(value)
    if "seconds" in name:
        return format_seconds(value)
    if isinstance(value, int):
        return format_count(value)
    return f"{value:.4g}"


def format_table(rows: Iterable[tuple[str, str]]) -> str:
    """Two columns, the names padded to one width."""
    rows = list(rows)
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name:<{width}}  {text}" for name, text in rows)


def format_fields(stats: Any) -> str:
    """A stats dataclass as a table: one line per field, with units."""
    return format_table(
        (f.name.replace("_", " "), format_value(f.name, getattr(stats, f.name)))
        for f in dataclasses.fields(stats)
    )


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

    def __str__(self) -> str:
        return format_fields(self)
