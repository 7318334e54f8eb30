"""``filecache demo --storage s3://...``: the demo with its cache in a real S3 endpoint."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from .conftest import S3Env


def metric(port: int, name: str) -> float:
    """The sum of the samples of ``name`` on the demo's /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        body = response.read().decode()
    return sum(
        float(line.split()[-1])
        for line in body.splitlines()
        if line.startswith((name + "{", name + " "))
    )


def test_the_demo_runs_on_s3(s3: S3Env) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL": s3.url}
    proc = subprocess.Popen(
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
            "120",  # a bound: the test stops it as soon as it has hit and evicted
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
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    said: list[str] = []
    try:
        assert proc.stderr is not None
        serving = None
        while serving is None:
            said.append(proc.stderr.readline())
            assert said[-1], "".join(said)  # the demo says where it serves before it ends
            serving = re.search(r"filecache demo on http://127\.0\.0\.1:(\d+)", said[-1])
        port = int(serving[1])
        deadline = time.monotonic() + 60
        # 30 models of 64 KiB do not fit in 1 MiB: the load evicts, and hits what it keeps.
        while metric(port, "filecache_evictions_total") == 0 or (
            metric(port, "filecache_hits_total") == 0
        ):
            assert time.monotonic() < deadline, "no hit and eviction within a minute"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, "".join(said) + err
    assert f"root: s3://{s3.bucket}/demo" in "".join(said) + err
    final = err.strip().splitlines()[-1]
    match = re.search(
        r"requests +(\d+) \| hit ratio +([\d.]+)%.*evictions +(\d+) \| errors 0", final
    )
    assert match, final
    requests, ratio, evictions = int(match[1]), float(match[2]), int(match[3])
    assert requests > 0
    assert ratio > 0
    assert evictions > 0
    keys = s3.object_keys("demo/models/")
    assert any(key.endswith("/summary.json") for key in keys)
    assert any(key.endswith("/field.bin") for key in keys)
