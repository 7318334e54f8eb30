"""Fixtures for the tests of the ``filecache`` command."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .helpers import Runner, build_cache, run_cli


@pytest.fixture(params=["module", "script"])
def cli(request: pytest.FixtureRequest) -> Runner:
    """Runs the command as ``python -m vcti.filecache`` and as the ``filecache`` script."""
    invocation: str = request.param

    def run(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, invocation=invocation)

    return run


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    """A cache root holding :data:`MODELS`."""
    return build_cache(tmp_path / "cache")
