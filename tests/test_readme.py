"""Every Python block of README.md runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int, tmp_path: Path) -> None:
    script = tmp_path / f"readme_block_{index}.py"
    script.write_text(BLOCKS[index])
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"README block {index} failed:\n{BLOCKS[index]}\n{result.stderr}"


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.search(r"^```sh\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    assert commands is not None
    lines = [line for line in commands.group(1).splitlines() if not line.startswith("#")]
    assert len(lines) == 2  # the main job, then the tests
    ci = (README.parent / ".ci" / "run").read_text().splitlines()
    assert lines[1] in ci
    assert "filecache demo" in lines[0]


def test_every_table_has_a_header() -> None:
    """Each run of table rows starts with a header and its |---| line, outside code blocks."""
    text = re.sub(r"^```.*?^```", "", README.read_text(), flags=re.S | re.M)
    tables = re.findall(r"(?:^\|.*\n)+", text, flags=re.M)
    assert tables
    for table in tables:
        rows = table.splitlines()
        assert len(rows) >= 2, table
        assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", rows[1]), table
        widths = {row.count("|") - row.count("\\|") for row in rows}
        assert len(widths) == 1, table
