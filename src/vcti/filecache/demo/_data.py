"""Synthetic simulation inputs and the expensive "parse" that the demo caches."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from array import array
from pathlib import Path


def input_path(inputs: Path, model_id: int) -> Path:
    """Return the input file of ``model_id``, writing it first if it does not exist.

    An input is a deterministic array of float64 node values ("a simulation result").
    """
    path = inputs / f"model_{model_id:05d}.sim"
    if not path.exists():
        rng = random.Random(model_id)
        nodes = 4096 + rng.randrange(4096)
        values = array(
            "d", (math.sin(i * 0.01 * (1 + model_id % 7)) + rng.random() for i in range(nodes))
        )
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(values.tobytes())
        os.replace(tmp, path)
    return path


def burn(seconds: float) -> None:
    """Spend ``seconds`` of CPU, standing in for a real parser's work."""
    deadline = time.process_time() + seconds
    digest = b""
    while time.process_time() < deadline:
        digest = hashlib.sha256(digest).digest()


def extract(source: Path, *, cost: float, field_bytes: int) -> dict[str, bytes]:
    """Parse ``source`` and return the derived files of its model, by name.

    ``summary.json`` holds statistics; ``field.bin`` holds a resampled field of
    ``field_bytes`` bytes (the large artefact a viewer would stream).
    """
    values = array("d")
    values.frombytes(source.read_bytes())
    burn(cost)
    count = len(values)
    mean = sum(values) / count
    summary = {
        "source": source.name,
        "nodes": count,
        "min": min(values),
        "max": max(values),
        "mean": mean,
        "rms": math.sqrt(sum(v * v for v in values) / count),
    }
    samples = max(1, field_bytes // 8)
    field = array("d", (values[i * count // samples] for i in range(samples)))
    return {"field.bin": field.tobytes(), "summary.json": json.dumps(summary, indent=2).encode()}
