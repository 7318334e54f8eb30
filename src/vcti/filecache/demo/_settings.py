"""The demo's settings: light to import, so that building the CLI parser stays fast."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoSettings:
    """Everything the demo can be told; each has a flag and an environment variable."""

    root: Path | None = None
    storage: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    evict_above: int = 64 * 1024**2
    evict_to: int | None = None
    interval: float = 5.0
    policy: str = "lru"
    models: int = 400
    field_bytes: int = 512 * 1024
    parse_cost: float = 0.02
    clients: int = 4
    zipf: float = 1.0
    duration: float | None = None
    load: bool = True
    tracing: str = "auto"
    log_file: str | None = None
    log_max_bytes: int = 16 * 1024**2
    progress: bool = True
    trace: Path | None = None
