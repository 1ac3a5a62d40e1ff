"""Results of simulation runs: per-handshake records, totals, and their summaries as a
table, JSON, CSV, or a chart of a sweep."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..stats import (
    format_bytes,
    format_count,
    format_rate,
    format_ratio,
    format_seconds,
    format_table,
)
from .network import LinkStats

Number = int | float


@dataclass
class HandshakeRecord:
    """One client's association. Times are virtual seconds; durations are from `start`."""

    client: int
    start: float
    client_done: float | None = None
    server_done: float | None = None
    client_retransmissions: int = 0  # over the whole run
    server_retransmissions: int = 0
    retransmissions_at_done: int = 0  # client and server, when the client completed
    failure: str | None = None

    @property
    def completed(self) -> bool:
        return self.client_done is not None and self.server_done is not None


_ADDITIVE = (
    "server_busy", "server_load_busy", "server_load_capacity", "client_busy", "rx_dropped",
    "app_records_sent", "app_bytes_sent", "app_records_delivered", "app_bytes_delivered",
    "traffic_time", "key_updates", "end", "events", "runs",
)


@dataclass
class Result:
    """What one run (or, merged, several) measured."""

    handshakes: list[HandshakeRecord] = field(default_factory=list)
    uplink: LinkStats = field(default_factory=LinkStats)  # client to server
    downlink: LinkStats = field(default_factory=LinkStats)
    server_busy: float = 0.0  # core-seconds
    server_load_busy: float = 0.0  # core-seconds while clients arrive (all run: burst)
    server_load_capacity: float = 0.0  # core-seconds available in that time
    client_busy: float = 0.0  # summed over clients
    rx_dropped: int = 0  # datagrams refused by full receive backlogs
    app_records_sent: int = 0
    app_bytes_sent: int = 0
    app_records_delivered: int = 0
    app_bytes_delivered: int = 0
    traffic_time: float = 0.0  # first application send to last delivery
    key_updates: int = 0
    engine_errors: dict[str, int] = field(default_factory=dict)  # exceptions out of the engine
    end: float = 0.0  # last moment anything happened (virtual seconds)
    events: int = 0  # event-loop callbacks
    runs: int = 1

    @classmethod
    def merge(cls, results: Sequence[Result]) -> Result:
        """Pool several runs (e.g. seeds of one sweep point)."""
        out = cls(runs=0)
        for r in results:
            out.handshakes.extend(r.handshakes)
            for text, count in r.engine_errors.items():
                out.engine_errors[text] = out.engine_errors.get(text, 0) + count
            out.uplink.add(r.uplink)
            out.downlink.add(r.downlink)
            for name in _ADDITIVE:
                setattr(out, name, getattr(out, name) + getattr(r, name))
        return out

    def summary(self) -> Summary:
        """The headline metrics (seconds, bits per second, ratios), all deterministic;
        `print()` shows them with units."""
        hs = self.handshakes
        n = len(hs)
        done = [h for h in hs if h.completed]
        client_times = sorted(h.client_done - h.start for h in hs if h.client_done is not None)
        server_times = sorted(h.server_done - h.start for h in hs if h.server_done is not None)
        retx_c = sum(h.client_retransmissions for h in hs)
        retx_s = sum(h.server_retransmissions for h in hs)
        out: dict[str, Number] = {
            "runs": self.runs,
            "handshakes": n,
            "completed": len(done),
            "failed": n - len(done),
            "completion_rate": len(done) / n if n else 0.0,
        }
        for side, times in (("client", client_times), ("server", server_times)):
            out[f"{side}_time_median"] = percentile(times, 50)
            out[f"{side}_time_p95"] = percentile(times, 95)
            out[f"{side}_time_p99"] = percentile(times, 99)
            out[f"{side}_time_mean"] = sum(times) / len(times) if times else math.nan
        out["retransmissions_per_handshake"] = (retx_c + retx_s) / n if n else 0.0
        out["client_retransmissions_per_handshake"] = retx_c / n if n else 0.0
        out["server_retransmissions_per_handshake"] = retx_s / n if n else 0.0
        out["goodput_bps"] = (
            8 * self.app_bytes_delivered / self.traffic_time if self.traffic_time > 0 else 0.0
        )
        out["app_bytes_delivered"] = self.app_bytes_delivered
        out["app_delivery_ratio"] = (
            self.app_records_delivered / self.app_records_sent if self.app_records_sent else 0.0
        )
        for name, stats in (("c2s", self.uplink), ("s2c", self.downlink)):
            out[f"{name}_datagrams"] = stats.datagrams
            out[f"{name}_bytes"] = stats.bytes
            out[f"{name}_records"] = stats.records
            out[f"{name}_lost"] = stats.lost
            out[f"{name}_queue_drops"] = stats.queue_drops
            out[f"{name}_mtu_drops"] = stats.mtu_drops
            out[f"{name}_duplicated"] = stats.duplicated
        out["rx_dropped"] = self.rx_dropped
        out["server_cpu_busy"] = self.server_busy
        out["server_cpu_utilisation"] = (  # while clients arrive
            self.server_load_busy / self.server_load_capacity
            if self.server_load_capacity > 0 else 0.0
        )
        out["client_cpu_per_handshake"] = self.client_busy / n if n else 0.0
        out["server_cpu_per_handshake"] = self.server_busy / n if n else 0.0
        out["key_updates"] = self.key_updates
        out["engine_errors"] = sum(self.engine_errors.values())
        out["simulated_time"] = self.end
        return Summary(out)

    def failures(self) -> dict[str, int]:
        """Failure reasons and how many handshakes ended with each."""
        counts: dict[str, int] = {}
        for h in self.handshakes:
            if not h.completed:
                reason = h.failure or "incomplete"
                counts[reason] = counts.get(reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN if empty."""
    if not values:
        return math.nan
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


# ---- formatting ----

# (key, heading, scale, format) for tables; times in ms
_COLUMNS = (
    ("completion_rate", "done %", 100, "{:.1f}"),
    ("client_time_median", "hs p50 ms", 1e3, "{:.3f}"),
    ("client_time_p95", "hs p95 ms", 1e3, "{:.3f}"),
    ("client_time_p99", "hs p99 ms", 1e3, "{:.3f}"),
    ("server_time_median", "srv p50 ms", 1e3, "{:.3f}"),
    ("retransmissions_per_handshake", "retx/hs", 1, "{:.3f}"),
    ("goodput_bps", "goodput Mb/s", 1e-6, "{:.3f}"),
    ("server_cpu_utilisation", "srv cpu %", 100, "{:.1f}"),
    ("failed", "failed", 1, "{}"),
)


def _fmt(value: Number, scale: float, pattern: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return pattern.format(value * scale if scale != 1 else value)


def format_metric(key: str, value: Number) -> str:
    """One summary value with its unit: times in s/ms/us, rates and ratios in %, goodput
    in bit/s, bytes with SI prefixes, counts with thousands separators."""
    if "bytes" in key:
        return format_bytes(value)
    if isinstance(value, int):
        return format_count(value)
    if math.isnan(value):
        return "-"
    if "_time" in key or key == "server_cpu_busy" or key.endswith("_cpu_per_handshake"):
        return format_seconds(value)
    if key.endswith("_bps"):
        return format_rate(value)
    if key.endswith(("_rate", "_ratio", "_utilisation")):
        return format_ratio(value)
    return f"{value:.3g}"


def format_summary(summary: Mapping[str, Number], failures: Mapping[str, int] | None = None,
                   errors: Mapping[str, int] | None = None) -> str:
    """One run as a two-column table (units as `format_metric`), then failure reasons
    and engine errors."""
    rows = [(key, format_metric(key, value)) for key, value in summary.items()]
    rows += [("failure", f"{count} x {reason}") for reason, count in (failures or {}).items()]
    rows += [("engine error", f"{count} x {text}") for text, count in (errors or {}).items()]
    return format_table(rows)


class Summary(dict[str, Number]):
    """`Result.summary()`: the raw numbers by name (seconds, bit/s, ratios, counts), and
    printed, a table with units and rounding."""

    def __str__(self) -> str:
        return format_summary(self)


def format_sweep(parameter: str, rows: Sequence[tuple[Any, Mapping[str, Number]]]) -> str:
    """A sweep as a table: one row per value."""
    headings = [parameter] + [c[1] for c in _COLUMNS]
    table = [[str(value)] + [_fmt(s[k], scale, f) for k, _, scale, f in _COLUMNS]
             for value, s in rows]
    widths = [max(len(r[i]) for r in [headings, *table]) for i in range(len(headings))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headings, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in table]
    return "\n".join(lines)


def to_json(parameter: str | None, rows: Sequence[tuple[Any, Mapping[str, Number]]],
            scenario: Mapping[str, Any]) -> str:
    def clean(s: Mapping[str, Number]) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in s.items()}

    doc: dict[str, Any] = {"scenario": scenario}
    if parameter is None:
        doc["summary"] = clean(rows[0][1])
    else:
        doc["parameter"] = parameter
        doc["points"] = [{"value": v, **clean(s)} for v, s in rows]
    return json.dumps(doc, indent=2, sort_keys=False)


def to_csv(parameter: str | None, rows: Sequence[tuple[Any, Mapping[str, Number]]]) -> str:
    buf = io.StringIO()
    keys = list(rows[0][1]) if rows else []
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(([parameter] if parameter else []) + keys)
    for value, s in rows:
        writer.writerow(([value] if parameter else []) + [s[k] for k in keys])
    return buf.getvalue()


def plot_sweep(parameter: str, rows: Sequence[tuple[Any, Mapping[str, Number]]],
               path: str, title: str = "") -> None:
    """Handshake time percentiles, retransmissions and completion against the swept value
    (needs matplotlib: `pip install matplotlib`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install matplotlib") from None
    xs = [float(v) for v, _ in rows]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 6))
    for key, label in (("client_time_median", "median"), ("client_time_p95", "p95"),
                       ("client_time_p99", "p99")):
        top.plot(xs, [s[key] * 1e3 for _, s in rows], marker="o", label=label)
    top.set_ylabel("handshake time (ms)")
    top.set_yscale("log")
    top.legend()
    top.grid(True, which="both", alpha=0.3)
    bottom.plot(xs, [s["retransmissions_per_handshake"] for _, s in rows], marker="o",
                color="tab:red", label="retransmissions / handshake")
    bottom.set_ylabel("retransmissions / handshake")
    bottom.set_xlabel(parameter)
    bottom.grid(True, alpha=0.3)
    rate = bottom.twinx()
    rate.plot(xs, [100 * s["completion_rate"] for _, s in rows], marker="s",
              color="tab:green", label="completed %")
    rate.set_ylabel("completed (%)")
    rate.set_ylim(0, 105)
    lines = bottom.get_legend_handles_labels()[0] + rate.get_legend_handles_labels()[0]
    bottom.legend(lines, [ln.get_label() for ln in lines], loc="center left")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
