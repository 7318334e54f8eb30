"""``filecache demo --storage s3://...``: the demo with its cache in a real S3 endpoint."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from .conftest import S3Env


def test_the_demo_runs_on_s3(s3: S3Env) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL": s3.url}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vcti.filecache",
            "demo",
            "--storage",
            f"s3://{s3.bucket}/demo",
            "--port",
            "0",
            "--duration",
            "6",
            "--interval",
            "0.5",
            "--evict-above",
            "1M",
            "--models",
            "30",
            "--field-size",
            "64K",
            "--parse-cost",
            "0",
            "--clients",
            "2",
            "--tracing",
            "off",
            "--no-progress",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"root: s3://{s3.bucket}/demo" in result.stderr
    final = result.stderr.strip().splitlines()[-1]
    match = re.search(
        r"requests +(\d+) \| hit ratio +([\d.]+)%.*evictions +(\d+) \| errors 0", final
    )
    assert match, final
    requests, ratio, evictions = int(match[1]), float(match[2]), int(match[3])
    assert requests > 0
    assert ratio > 0
    assert evictions > 0  # 30 models of 64 KiB do not fit in 1 MiB
    keys = s3.object_keys("demo/models/")
    assert any(key.endswith("/summary.json") for key in keys)
    assert any(key.endswith("/field.bin") for key in keys)
