"""The progress bar ``filecache evict`` draws on a terminal."""

from __future__ import annotations

import io

from vcti.filecache.cli._progress import CountBar, ProgressBar

from ..helpers import FakeClock


def _redraws(stream: io.StringIO) -> list[str]:
    return [part.rstrip() for part in stream.getvalue().split("\r") if part]


def test_draws_in_place_and_throttles() -> None:
    stream, clock = io.StringIO(), FakeClock(0.0)
    bar = ProgressBar(stream, width=10, interval=0.1, clock=clock)
    bar.begin(4096)
    assert _redraws(stream) == [
        "evicting [----------]   0%  0 models removed, 0 B freed (4.0 KiB needed)"
    ]
    clock.now = 0.05
    bar.advance(1024)  # too soon after the last redraw
    assert len(_redraws(stream)) == 1
    clock.now = 0.2
    bar.advance(1024)
    assert _redraws(stream)[-1] == (
        "evicting [#####-----]  50%  2 models removed, 2.0 KiB freed (4.0 KiB needed)"
    )
    bar.advance(4096)  # past the total: the bar stops at 100%
    bar.finish()
    assert _redraws(stream)[-1] == (
        "evicting [##########] 100%  3 models removed, 6.0 KiB freed (4.0 KiB needed)"
    )
    assert stream.getvalue().endswith("\n")


def test_a_shorter_line_blanks_the_longer_one() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, width=4, interval=0.0, clock=FakeClock(0.0))
    bar.begin(2**40)
    first = stream.getvalue()
    bar.begin(10)  # the larger total wins
    bar.advance(3)
    assert stream.getvalue().rsplit("\r", 1)[-1].startswith("evicting [----]   0%  1 model removed")
    assert len(stream.getvalue().rsplit("\r", 1)[-1]) >= len(first) - 1


def test_nothing_to_free_is_complete() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, width=4, clock=FakeClock(0.0))
    bar.begin(0)
    bar.finish()
    assert _redraws(stream)[-1] == "evicting [####] 100%  0 models removed, 0 B freed (0 B needed)"


def test_finish_without_drawing_writes_nothing() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, clock=FakeClock(0.0))
    bar.finish()
    bar.finish()
    assert stream.getvalue() == ""


def test_count_bar_shows_steps_time_and_time_left() -> None:
    stream, clock = io.StringIO(), FakeClock(0.0)
    bar = CountBar(stream, width=10, interval=0.1, clock=clock)
    clock.now = 2.0
    bar.update("day.csv", 1, 4)
    assert _redraws(stream) == ["day.csv [##--------] 1/4 (2 s, about 6 s left)"]
    clock.now = 2.05
    bar.update("day.csv", 2, 4)  # too soon
    assert len(_redraws(stream)) == 1
    clock.now = 8.0
    bar.update("day.csv", 4, 4)  # the last step is always drawn
    assert _redraws(stream)[-1] == "day.csv [##########] 4/4 (8 s)"
    bar.update("other.csv", 1, 2)  # a new label starts its own clock
    assert _redraws(stream)[-1] == "other.csv [#####-----] 1/2 (0 s, about 0 s left)"
    bar.finish()
    assert stream.getvalue().endswith("\n")
