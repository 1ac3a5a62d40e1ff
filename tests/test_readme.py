"""The README's Python examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example_runs(index: int, tmp_path: Path) -> None:
    script = tmp_path / f"example_{index}.py"
    script.write_text(EXAMPLES[index])
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_readme_quotes_the_suites_size(request: pytest.FixtureRequest) -> None:
    """The README's "(N tests)" is the suite's size, give or take a tenth (branches merge
    tests in between; `python -m pytest --collect-only -q | tail -1` says the figure)."""
    collected = len(request.session.items)
    if collected < 1000:
        pytest.skip("only a run of the whole suite knows its size")
    match = re.search(r"\(([\d,]+) tests\)", README.read_text())
    assert match is not None, "the README quotes no test count"
    quoted = int(match.group(1).replace(",", ""))
    assert abs(quoted - collected) <= collected // 10, (quoted, collected)
