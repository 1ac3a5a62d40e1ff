"""Summarise the runner's -json-output: passed/failed/unimplemented/disabled per category.

Exit status 1 if a test that is not disabled failed.
"""

from __future__ import annotations

import fnmatch
import json
import sys
from collections import Counter, defaultdict


def category(name: str) -> str:
    """The test family: the name's first word (two for DTLS-*)."""
    parts = name.split("-")
    return "-".join(parts[:2]) if parts[0] == "DTLS" and len(parts) > 1 else parts[0]


def main(result_file: str, config_file: str) -> int:
    with open(result_file) as f:
        tests: dict[str, dict[str, str]] = json.load(f)["tests"]
    with open(config_file) as f:
        disabled: dict[str, str] = json.load(f)["DisabledTests"]
    table: dict[str, Counter[str]] = defaultdict(Counter)
    failed = []
    for name, result in tests.items():
        actual = result["actual"]
        if actual == "SKIP" and any(fnmatch.fnmatchcase(name, p) for p in disabled):
            kind = "disabled"
        elif actual == "PASS":
            kind = "passed"
        elif actual == "SKIP":
            kind = "unimplemented"
        else:
            kind = "failed"
            failed.append(name)
        table[category(name)][kind] += 1
    kinds = ("passed", "failed", "unimplemented", "disabled")
    print(f"{'category':40} " + " ".join(f"{k:>13}" for k in kinds))
    total: Counter[str] = Counter()
    for cat in sorted(table):
        total.update(table[cat])
        print(f"{cat:40} " + " ".join(f"{table[cat][k]:>13}" for k in kinds))
    print(f"{'total':40} " + " ".join(f"{total[k]:>13}" for k in kinds))
    for name in sorted(failed):
        print("FAILED", name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
