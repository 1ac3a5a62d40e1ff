"""Summarise the runner's -json-output: passed/failed/unimplemented/disabled per category.

    summary.py RESULTS CONFIG [ALL] [-v]

RESULTS is the run's -json-output, CONFIG the shim config, ALL the -json-output of
run.sh's listing pass (every test of the subset, disabled ones included): the runner
leaves disabled tests out of RESULTS, so they are counted from ALL. Exit status 1 if a
test that is not disabled failed, or if a test of ALL neither ran nor is disabled.
-v also lists how many tests each DisabledTests pattern took, with its reason.
"""

from __future__ import annotations

import fnmatch
import json
import sys
from collections import Counter, defaultdict

KINDS = ("passed", "failed", "unimplemented", "disabled")


def category(name: str) -> str:
    """The test family: the name's first word (two for DTLS-*)."""
    parts = name.split("-")
    return "-".join(parts[:2]) if parts[0] == "DTLS" and len(parts) > 1 else parts[0]


def classify(
    results: dict[str, dict[str, str]], disabled: dict[str, str], listed: list[str]
) -> tuple[dict[str, Counter[str]], list[str], list[str], Counter[str]]:
    """Per category, how many tests are of each kind; the failed tests; the listed tests
    that did not run although no pattern disables them; and how many each pattern
    disabled (the first that matches)."""
    table: dict[str, Counter[str]] = defaultdict(Counter)
    failed, missing = [], []
    by_pattern: Counter[str] = Counter()
    for name, result in results.items():
        actual = result["actual"]
        kind = "passed" if actual == "PASS" else "unimplemented" if actual == "SKIP" else "failed"
        if kind == "failed":
            failed.append(name)
        table[category(name)][kind] += 1
    for name in listed:
        if name in results:
            continue
        pattern = next((p for p in disabled if fnmatch.fnmatchcase(name, p)), None)
        if pattern is not None:
            table[category(name)]["disabled"] += 1
            by_pattern[pattern] += 1
        else:
            missing.append(name)
    return table, sorted(failed), sorted(missing), by_pattern


def main(result_file: str, config_file: str, all_file: str | None = None) -> int:
    with open(result_file) as f:
        results: dict[str, dict[str, str]] = json.load(f)["tests"]
    with open(config_file) as f:
        disabled: dict[str, str] = json.load(f)["DisabledTests"]
    listed: list[str] = []
    if all_file is not None:
        with open(all_file) as f:
            listed = list(json.load(f)["tests"])
    table, failed, missing, by_pattern = classify(results, disabled, listed)
    print(f"{'category':40} " + " ".join(f"{k:>13}" for k in KINDS))
    total: Counter[str] = Counter()
    for cat in sorted(table):
        total.update(table[cat])
        print(f"{cat:40} " + " ".join(f"{table[cat][k]:>13}" for k in KINDS))
    print(f"{'total':40} " + " ".join(f"{total[k]:>13}" for k in KINDS))
    ran = total["passed"] + total["failed"]
    if ran:
        print(f"passed {total['passed']} of {ran} run ({100 * total['passed'] / ran:.1f}%)")
    if "-v" in sys.argv:
        for pattern, n in by_pattern.most_common():
            print(f"disabled {n:4} {pattern}: {disabled[pattern]}")
    for name in failed:
        print("FAILED", name)
    for name in missing:
        print("NOT RUN", name)
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main(*[a for a in sys.argv[1:] if a != "-v"][:3]))
