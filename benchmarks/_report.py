"""The results as a Markdown table and as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ._common import Number, Result, Target


def _num(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.01:
        return f"{value:.3g}"
    return f"{value:.2g}"


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{_num(value)} {unit}"


def _met(target: Target) -> str:
    if target.informational:
        return "(info)"
    if target.met is None:
        return "n/a"
    return "yes" if target.met else "**no**"


def table(results: Sequence[Result]) -> str:
    """The results table: one row per target, every benchmark at least once."""
    lines = [
        "| benchmark | ours | peer/limit | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        if result.error is not None:
            lines.append(f"| {result.name}: failed | {result.error} | | | | **no** |")
            continue
        for t in result.targets:
            peer = _value(t.peer, t.unit)
            if t.peer_label:
                peer = f"{peer} ({t.peer_label})"
            ratio = "" if t.ratio is None else f"{t.ratio:.3g}x"
            name = f"{result.name}: {t.name}"
            if t.note:
                name = f"{name} ({t.note})"
            lines.append(
                f"| {name} | {_value(t.ours, t.unit)} | {peer} | {ratio} | {t.target} | {_met(t)} |"
            )
    return "\n".join(lines) + "\n"


def machine_line(machine: dict[str, Number]) -> str:
    """One line describing the machine."""
    return (
        f"{machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['memory_gib']} GiB RAM, {machine['kernel']}, {machine['python']}, "
        f"work dir on {machine['filesystem']} ({machine['workdir']}); "
        f"vcti-file-cache {machine['vcti_file_cache']} at {machine['source']}, "
        f"diskcache {machine['diskcache']}"
    )


def markdown(results: Sequence[Result], meta: dict[str, object]) -> str:
    """The whole Markdown report: header, table, then each benchmark's details."""
    machine: dict[str, Number] = meta["machine"]
    parts = [
        "# vcti-file-cache benchmarks\n\n",
        f"Run: `{meta['command']}` ({meta['mode']}), {meta['started']}, "
        f"{meta['seconds']:.0f} s.\n\n",
        f"Machine: {machine_line(machine)}.\n\n",
        table(results),
    ]
    for result in results:
        parts.append(f"\n## {result.name}: {result.title}\n")
        if result.error is not None:
            parts.append(f"\nFailed: `{result.error}`\n")
        parts.append(f"\n{result.seconds:.1f} s.\n\n")
        parts.extend(f"- {key}: {value}\n" for key, value in result.metrics.items())
        parts.extend(f"\nNote: {note}\n" for note in result.notes)
    return "".join(parts)


def write(out: Path, results: Sequence[Result], meta: dict[str, object]) -> tuple[Path, Path]:
    """Write latest.md and latest.json into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "latest.md", out / "latest.json"
    md.write_text(markdown(results, meta))
    payload = dict(meta, benchmarks={r.name: r.as_json() for r in results})
    js.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return md, js
