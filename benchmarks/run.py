"""``python benchmarks/run.py [OPTIONS]``: the same as ``python -m benchmarks [OPTIONS]``."""

from __future__ import annotations

import sys
from pathlib import Path


def _main() -> int:
    # Run as a script, this folder is first on the path; the package needs the repo root.
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from benchmarks._cli import main  # noqa: PLC0415 - importable only once the path is set

    return main()


if __name__ == "__main__":
    raise SystemExit(_main())
