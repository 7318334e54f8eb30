"""``amodel()`` waiters of one process when another process fills the model.

Met under ``uvicorn --workers 2`` (tests/test_web_servers.py): worker B's first request
waits for worker A's fill lock while B's other requests wait on B's event loop; when A
publishes, every request of B must go on, not wait out ``lock_timeout``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from vcti.filecache import CacheManagerConfig, FileCache

# Fills KEY in ROOT, and publishes when told to on stdin.
FILLER = """
import sys
from pathlib import Path
from vcti.filecache import CacheManagerConfig, FileCache

root, key = sys.argv[1:]
config = CacheManagerConfig(evict_above=2**40, interval=3600)
with FileCache(root=root, config=config) as cache, cache.model(key) as model:
    Path(model.path, "data.bin").write_bytes(b"filled elsewhere")
    print("filling", flush=True)
    sys.stdin.readline()
print("published", flush=True)
"""


def test_waiters_on_the_loop_go_on_when_another_process_publishes(tmp_path: Path) -> None:
    root, key = tmp_path / "cache", "run/7"
    filler = subprocess.Popen(
        [sys.executable, "-c", FILLER, str(root), key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert filler.stdin is not None
    assert filler.stdout is not None
    try:
        assert filler.stdout.readline() == "filling\n"

        async def main() -> list[tuple[bool | None, bytes]]:
            config = CacheManagerConfig(evict_above=2**40, interval=3600, lock_timeout=300)
            async with FileCache(root=root, config=config) as cache:

                async def read() -> tuple[bool | None, bytes]:
                    async with cache.amodel(key) as model:
                        return model.new, Path(model.path, "data.bin").read_bytes()

                first = asyncio.create_task(read())
                # The first task now waits, in a thread, for the other process's fill lock.
                deadline = time.monotonic() + 60
                while not cache._runtime.coord.is_busy(key):
                    assert time.monotonic() < deadline, "the first task never waited"
                    await asyncio.sleep(0.01)
                others = [asyncio.create_task(read()) for _ in range(4)]
                await asyncio.sleep(0.2)  # they wait on the loop, behind the first
                assert filler.stdin is not None
                filler.stdin.write("go\n")
                filler.stdin.flush()
                # Far below lock_timeout: the waiters are woken, not timed out.
                return await asyncio.wait_for(asyncio.gather(first, *others), 60)

        results = asyncio.run(main())
    finally:
        filler.stdin.close()
        rest = filler.stdout.read()
        filler.stdout.close()
        filler.wait(timeout=60)
    assert rest == "published\n"
    assert results == [(False, b"filled elsewhere")] * 5
