"""Stats objects and the simulator's summary print with units and rounding, and keep
their raw values for code."""

from __future__ import annotations

import json
import math

from loopback import Loopback

from dtls.config import Context
from dtls.connection import Connection
from dtls.server import EndpointStats
from dtls.sim import LinkModel, Scenario, simulate
from dtls.sim.report import Summary, format_metric
from dtls.stats import (
    ConnectionStats,
    format_bytes,
    format_rate,
    format_ratio,
    format_seconds,
)


def test_units() -> None:
    assert format_bytes(999) == "999 B"
    assert format_bytes(1234) == "1.23 kB"
    assert format_bytes(123_456_789) == "123 MB"
    assert format_bytes(4_200_000_000) == "4.2 GB"
    assert format_seconds(75) == "75 s"
    assert format_seconds(0.0123456) == "12.3 ms"
    assert format_seconds(0.0000042) == "4.2 us"
    assert format_seconds(0) == "0 s"
    assert format_seconds(math.nan) == "-"
    assert format_rate(12_345_678) == "12.3 Mbit/s"
    assert format_rate(950) == "950 bit/s"
    assert format_ratio(0.98765) == "98.8 %"
    assert format_ratio(1.0) == "100 %"


def lines(text: str) -> dict[str, str]:
    """A printed table as {name: shown value}."""
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition("  ")
        out[name.strip()] = value.strip()
    return out


def test_connection_stats_print_with_units(pki: object) -> None:
    server_ctx = Context.server(cookie_mode="never")
    server_ctx.load_cert_chain(certdata=pki.chain_pem, keydata=pki.key_pem)  # type: ignore[attr-defined]
    client = Connection(Context.client(cadata=pki.ca_pem), server_name="localhost")  # type: ignore[attr-defined]
    link = Loopback(client, Connection(server_ctx), latency=0.0125)
    link.start()
    for _ in range(700):
        client.send(bytes(1000))
    link.run()
    stats = client.stats()
    assert isinstance(stats, ConnectionStats)
    shown = lines(str(stats))
    assert shown["state"] == "CONNECTED"
    assert shown["records sealed"] == f"{stats.records_sealed:,}" and stats.records_sealed > 700
    assert shown["bytes sealed"] == format_bytes(stats.bytes_sealed)
    assert shown["bytes sealed"].endswith(" kB")  # ~700 kB
    assert shown["handshake seconds"] == "25 ms"  # one round trip of 2 x 12.5 ms
    assert stats.handshake_seconds is not None and abs(stats.handshake_seconds - 0.025) < 1e-9
    assert shown["receive epochs"] == ", ".join(map(str, stats.receive_epochs))
    assert "ConnectionStats(" in repr(stats)  # repr stays the raw dataclass


def test_endpoint_stats_print_with_units() -> None:
    stats = EndpointStats(datagrams_received=1234567, bytes_received=1_500_000_000,
                          handshake_seconds_total=0.25)
    shown = lines(str(stats))
    assert shown["datagrams received"] == "1,234,567"
    assert shown["bytes received"] == "1.5 GB"
    assert shown["handshake seconds total"] == "250 ms"
    assert shown["cookies sent"] == "0"
    assert stats.bytes_received == 1_500_000_000  # raw for code


def test_simulation_summary_prints_readably_and_stays_raw() -> None:
    result = simulate(Scenario(clients=20, uplink=LinkModel(loss=0.01),
                               traffic="bulk", messages=20, message_size=500))
    summary = result.summary()
    assert isinstance(summary, Summary) and isinstance(summary, dict)
    assert isinstance(summary["client_time_p99"], float)  # seconds, unrounded
    assert json.loads(json.dumps(summary)) == dict(summary)
    shown = lines(str(summary))
    assert list(shown) == list(summary)
    assert shown["client_time_median"] == format_seconds(summary["client_time_median"])
    assert shown["client_time_median"].endswith(" ms")
    assert shown["completion_rate"] == "100 %"
    assert shown["goodput_bps"].endswith("bit/s") and summary["goodput_bps"] > 0
    assert shown["c2s_bytes"] == format_bytes(summary["c2s_bytes"])
    assert shown["handshakes"] == "20"
    assert shown["server_cpu_utilisation"].endswith(" %")
    retransmissions = summary["retransmissions_per_handshake"]
    assert shown["retransmissions_per_handshake"] == f"{retransmissions:.3g}"
    assert format_metric("client_time_p95", math.nan) == "-"
