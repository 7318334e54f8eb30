"""The README and the documentation site: every Python block runs as written, and the site builds.

Each ```python block of README.md and of the pages under docs/ runs as a script of its own;
the README's two commands are the ones CI runs; ``mkdocs build --strict`` builds the site
(every link and anchor resolved, the API reference generated from the docstrings).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = sorted((REPO / "docs").rglob("*.md"))
DOCUMENTS = [README, *PAGES]


def _blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


BLOCKS = [
    (f"{path.relative_to(REPO)}[{index}]", block)
    for path in DOCUMENTS
    for index, block in enumerate(_blocks(path))
]


def test_the_readme_and_the_guide_have_examples() -> None:
    assert len(_blocks(README)) >= 2
    assert len(_blocks(REPO / "docs" / "guide" / "cache.md")) >= 1
    assert len(BLOCKS) >= 20


@pytest.mark.parametrize("block", [block for _, block in BLOCKS], ids=[name for name, _ in BLOCKS])
def test_documented_block_runs(block: str, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(block)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"this block failed:\n{block}\n{result.stderr}"


def _commands() -> list[str]:
    commands = re.search(r"^```sh\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    assert commands is not None
    return [line for line in commands.group(1).splitlines() if not line.startswith("#")]


def test_ci_runs_the_readme_test_command() -> None:
    lines = _commands()
    assert len(lines) == 2  # the main job, then the tests
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert lines[1] in ci
    assert "filecache demo" in lines[0]


def test_the_readme_commands_install_what_they_run() -> None:
    """The two commands name extras that exist, and the console script they start."""
    demo, tests = _commands()
    pyproject = (REPO / "pyproject.toml").read_text()
    for command, extra in ((demo, "demo"), (tests, "test")):
        assert f'".[{extra}]"' in command
        assert re.search(rf"^{extra} = \[", pyproject, flags=re.M), extra
    assert 'filecache = "vcti.filecache.cli:main"' in pyproject
    # The demo command's last step, as the venv the test command made runs it.
    filecache = Path(sys.executable).with_name("filecache")
    assert demo.endswith(".venv/bin/filecache demo")
    result = subprocess.run(
        [str(filecache), "demo", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "--duration" in result.stdout


def test_the_readme_stays_short_and_links_the_site() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    assert "read inside the block" in text.lower()
    links = re.findall(r"\]\((docs/[^)#]+)", text)
    assert {"docs/index.md", "docs/guide/cache.md", "docs/reference/api.md"} <= set(links)
    for link in links:
        assert (REPO / link).is_file(), link


@pytest.mark.parametrize("path", DOCUMENTS, ids=[str(p.relative_to(REPO)) for p in DOCUMENTS])
def test_every_table_has_a_header(path: Path) -> None:
    """Each run of table rows starts with a header and its |---| line, outside code blocks."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    tables = re.findall(r"(?:^\|.*\n)+", text, flags=re.M)
    for table in tables:
        rows = table.splitlines()
        assert len(rows) >= 2, table
        assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", rows[1]), table
        widths = {row.count("|") - row.count("\\|") for row in rows}
        assert len(widths) == 1, table


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """``mkdocs build --strict``: no broken link or anchor, no docstring it cannot read."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "reference" / "api" / "index.html").is_file()
    api = (tmp_path / "reference" / "api" / "index.html").read_text()
    assert "FileCache" in api
    assert "lock_timeout" in api  # generated from the docstrings, not written by hand
    assert (tmp_path / "replay.png").is_file()
