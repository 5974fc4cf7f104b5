"""Progress lines off a terminal (fewshot_cam.progress.LineProgress), against a hand-stepped clock."""

from __future__ import annotations

import io

from fewshot_cam.progress import LineProgress, format_seconds


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_line_per_tenth_after_the_quiet_start_and_one_at_the_end():
    clock, out = Clock(), io.StringIO()
    bar = LineProgress(None, 20, "features", "img", stream=out, clock=clock)
    for _ in range(20):
        clock.t += 1.0  # 1 s per item: quiet for 5 s, then every 2 items (10 % of 20)
        bar.update()
    bar.close()
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["5/20", "7/20", "9/20", "11/20", "13/20", "15/20", "17/20",
                                                   "19/20", "20/20"]
    assert lines[0] == "features: 5/20 img (25%) 5.0 s elapsed, ETA 15.0 s"
    assert lines[-1] == "features: 20/20 img (100%) 20.0 s elapsed"


def test_a_slow_loop_prints_every_30_seconds_and_a_short_one_prints_nothing():
    clock, out = Clock(), io.StringIO()
    bar = LineProgress(range(1000), None, "episodes", "chunk", stream=out, clock=clock)
    for i, _ in enumerate(bar):
        clock.t = 31.0 * (i + 1) if i < 2 else clock.t + 0.001
        if i == 2:
            break
    assert [line.split()[1] for line in out.getvalue().splitlines()] == ["1/1000", "2/1000"]
    quiet = io.StringIO()
    for _ in LineProgress(range(50), None, "short", "it", stream=quiet, clock=Clock()):
        pass
    assert quiet.getvalue() == ""


def test_format_seconds():
    assert (format_seconds(3.14), format_seconds(125), format_seconds(7300)) == ("3.1 s", "2 min 05 s", "2 h 01 min")
