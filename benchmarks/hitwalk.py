"""4b. Hits while the manager works: during a full walk, and during a cycle with changes.

On the scan tree, the cache is opened as the root's leader. A second thread opens models
continuously (``with cache.model(key): pass``, gc on, as a busy server thread would),
first alone, then while the main thread runs the manager's cycles in the same process:

- ``run_once(full=True)``: the full reconciling walk (the models are measured in a child
  process once there are many);
- ``run_once()`` after 1% of the models were opened and 1% changed inside ``model()``
  contexts (the steady-state benchmark's setting): the changed models are measured in
  the manager's thread when they are few.

The hit thread opens 1% of the models, round robin, none of those the cycles touch
(every model opened is written behind and measured again at the next cycle: the hits'
own models add 1% to each cycle's changes). Only the opens that started while a cycle
ran count; p99 over the opens of all timed cycles of each kind.
"""

from __future__ import annotations

import time
from pathlib import Path

from vcti.filecache import FileCache

from ._common import (
    Result,
    latency_summary,
    limit_target,
    model_key,
    percentile,
    quiet_config,
    wait_first_cycle,
)
from ._workspace import Workspace
from .evict import HitThread
from .steady import touch

NAME = "hitwalk"
TITLE = "Hits in the same process during a full walk and during a cycle with changes"


Spans = dict[str, list[tuple[int, int]]]


def measure(
    ws: Workspace, root: Path, hit_keys: list[str], *, walks: int, cycles: int, step: int
) -> tuple[HitThread, HitThread, Spans]:
    """Run the hit thread alone, then during ``walks`` full walks and ``cycles`` cycles.

    Returns the two hit threads (alone, busy) and the spans of each kind of cycle.
    """
    s = ws.settings
    spans: Spans = {"walk": [], "cycle": []}
    with FileCache(root=root, config=quiet_config()) as cache:
        wait_first_cycle(cache)
        if not cache.manager.is_leader:
            raise RuntimeError("another process leads the tree")
        cache.manager.run_once()
        ws.log.say("hitwalk: the hit thread alone")
        alone = HitThread(cache, hit_keys)
        alone.start()
        time.sleep(0.5 if s.quick else 2.0)
        alone.stop.set()
        alone.join()
        busy = HitThread(cache, hit_keys)
        busy.start()
        while len(busy.latencies) < 200:
            time.sleep(0.001)
        for r in range(walks):
            ws.log.say(f"hitwalk: full walk {r + 1}/{walks} with hits")
            begin = time.perf_counter_ns()
            cache.manager.run_once(full=True)
            spans["walk"].append((begin, time.perf_counter_ns()))
        ws.log.say(f"hitwalk: {cycles} cycles after touching 2% of the models, with hits")
        for r in range(cycles):
            opened = [model_key((2 * r * step + i) % s.models) for i in range(step)]
            changed = [model_key(((2 * r + 1) * step + i) % s.models) for i in range(step)]
            touch(cache, opened, changed, r)
            begin = time.perf_counter_ns()
            cache.manager.run_once()
            spans["cycle"].append((begin, time.perf_counter_ns()))
        busy.stop.set()
        busy.join()
    return alone, busy, spans


def run(ws: Workspace) -> Result:
    """Hit p99 of a second thread alone, during full walks and during touched cycles."""
    s = ws.settings
    result = Result(NAME, TITLE)
    root, _ = ws.tree()
    step = max(1, s.models // 100)
    walks = max(2, s.repeats)
    cycles = max(5, 2 * s.repeats)
    # The cycles touch models 0 .. 2 * cycles * step; the hits open 1% of the models past
    # them (every model opened is written behind and measured again at the next cycle, so
    # the hits' own models are changes of each cycle too).
    first = min(s.models - step, 2 * cycles * step)
    hit_keys = [model_key(i) for i in range(first, first + step)]
    alone, busy, windows = measure(ws, root, hit_keys, walks=walks, cycles=cycles, step=step)
    seconds = {
        kind: [(end - begin) / 1e9 for begin, end in spans] for kind, spans in windows.items()
    }
    idle = sorted(alone.latencies)
    during = {
        kind: sorted(lat for begin, end in spans for lat in busy.window(begin, end))
        for kind, spans in windows.items()
    }
    for kind, samples in during.items():
        if not samples:
            raise RuntimeError(f"no hit started during the {kind} windows")
    result.metrics.update(
        models=s.models,
        files_per_model=s.files_per_model,
        hit_keys=len(hit_keys),
        full_walks=walks,
        full_walk_mean_s=round(sum(seconds["walk"]) / walks, 4),
        touched_cycles=cycles,
        touched_models_opened=step,
        touched_models_changed=step,
        touched_cycle_mean_s=round(sum(seconds["cycle"]) / cycles, 4),
        hit_errors=alone.errors + busy.errors,
    )
    result.metrics.update(latency_summary("hits_alone", idle))
    result.metrics.update(latency_summary("hits_during_full_walk", during["walk"]))
    result.metrics.update(latency_summary("hits_during_touched_cycle", during["cycle"]))
    alone_p99 = percentile(idle, 99) / 1000
    result.targets.append(
        limit_target(
            "hit p99 during a full walk, same process",
            percentile(during["walk"], 99) / 1000,
            unit="µs",
            limit=100,
            peer=alone_p99,
            peer_label="same thread's p99 alone",
            note=f"{len(during['walk']):,} opens in {walks} walks",
        )
    )
    result.targets.append(
        limit_target(
            "hit p99 during a cycle with changes, same process",
            percentile(during["cycle"], 99) / 1000,
            unit="µs",
            limit=100,
            peer=alone_p99,
            peer_label="same thread's p99 alone",
            note=f"{len(during['cycle']):,} opens in {cycles} cycles",
        )
    )
    if alone.errors or busy.errors:
        result.notes.append(f"hits failed {alone.errors + busy.errors} times")
    result.notes.append(
        "the hit thread runs unthrottled with gc on in the process whose manager runs the "
        "cycles; a touched cycle follows "
        f"{step} opens and {step} rewrites or additions inside model() contexts, made "
        "before the cycle starts (those opens are not counted)"
    )
    return result
