"""Parameter sweeps: one scenario, one parameter over a list of values, several seeds each.

Parameters are named as `Scenario` fields ("clients", "arrival_rate", "server_cores", ...),
as `LinkModel` fields for both directions ("loss", "latency", "bandwidth", ...), or for one
direction ("uplink.loss", "downlink.latency"). Values may be given as text with units:
durations "1ms", "250us", "2s"; rates "1G", "100M", "10k"; probabilities "1%".
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from .model import Scenario, simulate
from .network import GilbertElliott, LinkModel
from .report import Result

_SCENARIO_FIELDS = {f.name: f for f in dataclasses.fields(Scenario)}
_LINK_FIELDS = {f.name: f for f in dataclasses.fields(LinkModel)}
_DURATIONS = {"latency", "jitter", "reorder_delay", "initial_retransmit_timeout",
              "max_retransmit_timeout", "time_limit"}
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0}
_SI = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def parse_duration(text: str) -> float:
    """Seconds from "1ms", "250us", "2s", "1.5" (seconds)."""
    text = text.strip()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * _UNITS[unit]
    return float(text)


def parse_rate(text: str) -> float | None:
    """A rate from "1G", "100M", "10k", "1e9"; "none"/"inf" for unlimited (None)."""
    text = text.strip().removesuffix("bit/s").removesuffix("bps").removesuffix("/s")
    if text.lower() in ("none", "inf", "unlimited"):
        return None
    if text and text[-1] in _SI:
        return float(text[:-1]) * _SI[text[-1]]
    return float(text)


def parse_probability(text: str) -> float:
    text = text.strip()
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def parse_burst(text: str) -> GilbertElliott | None:
    """ "P_BAD,P_GOOD[,LOSS_BAD]" (probabilities) or "none"."""
    if text.strip().lower() in ("none", "off", ""):
        return None
    parts = [parse_probability(p) for p in text.split(",")]
    return GilbertElliott(*parts)


def parse_value(name: str, text: str) -> Any:
    """`text` converted for parameter `name` (see the module docstring)."""
    base = name.split(".", 1)[-1]
    if base in _DURATIONS:
        return parse_duration(text)
    if base == "bandwidth":
        return parse_rate(text)
    if base == "burst":
        return parse_burst(text)
    if base in ("loss", "reorder", "duplicate"):
        return parse_probability(text)
    if base in ("arrival_rate", "message_rate"):
        rate = parse_rate(text)
        if rate is None:
            raise ValueError(f"{name} must be finite")
        return rate
    fld = _SCENARIO_FIELDS.get(base) or _LINK_FIELDS.get(base)
    if fld is None:
        raise ValueError(f"unknown parameter {name!r}")
    kind = str(fld.type)
    if kind == "bool":
        return text.strip().lower() in ("1", "true", "yes", "on")
    if kind == "int":
        return int(float(text))
    if kind == "float":
        return float(text)
    return text.strip()


def parse_values(name: str, spec: str) -> list[Any]:
    """Values from "a,b,c" or an inclusive numeric range "start:stop:step"."""
    if spec.count(":") == 2 and "," not in spec:
        start, stop, step = (float(parse_value(name, p)) for p in spec.split(":"))
        if step <= 0:
            raise ValueError("a range needs a positive step")
        count = round((stop - start) / step) + 1
        values = [start + i * step for i in range(count)]
        return [round(v, 12) for v in values]
    return [parse_value(name, p) for p in spec.split(",") if p.strip()]


def with_parameter(scenario: Scenario, name: str, value: Any) -> Scenario:
    """`scenario` with parameter `name` set to `value`."""
    direction, _, base = name.rpartition(".")
    if direction:
        if direction not in ("uplink", "downlink") or base not in _LINK_FIELDS:
            raise ValueError(f"unknown parameter {name!r}")
        link = dataclasses.replace(getattr(scenario, direction), **{base: value})
        return dataclasses.replace(scenario, **{direction: link})
    if base in _SCENARIO_FIELDS:
        return dataclasses.replace(scenario, **{base: value})
    if base in _LINK_FIELDS:
        return dataclasses.replace(
            scenario,
            uplink=dataclasses.replace(scenario.uplink, **{base: value}),
            downlink=dataclasses.replace(scenario.downlink, **{base: value}),
        )
    raise ValueError(f"unknown parameter {name!r}")


class Progress:
    """A one-line text progress bar (on a terminal, or when forced)."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool | None = None,
                 width: int = 30) -> None:
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.width = width

    def step(self, label: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        filled = self.width * self.done // max(1, self.total)
        bar = "#" * filled + "." * (self.width - filled)
        end = "\n" if self.done >= self.total else ""
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} {label:<30}{end}")
        self.stream.flush()


def run_seeds(scenario: Scenario, seeds: int,
              step: Callable[[str], None] | None = None) -> Result:
    """`scenario` with seeds seed, seed+1, ..., pooled."""
    results = []
    for k in range(seeds):
        results.append(simulate(dataclasses.replace(scenario, seed=scenario.seed + k)))
        if step:
            step(f"seed {scenario.seed + k}")
    return Result.merge(results)


def sweep(scenario: Scenario, parameter: str, values: Sequence[Any], seeds: int = 1,
          progress: Progress | None = None) -> list[tuple[Any, Result]]:
    """One pooled `Result` per value of `parameter`."""
    out = []
    for value in values:
        point = with_parameter(scenario, parameter, value)
        step = None
        if progress is not None:
            step = lambda label, v=value: progress.step(f"{parameter}={v} {label}")  # noqa: E731
        out.append((value, run_seeds(point, seeds, step)))
    return out
