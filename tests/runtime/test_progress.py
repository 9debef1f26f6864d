"""Progress without a terminal: a line at the first step, then one whenever `every` seconds have
passed, and one at the phase's last step; with the loss, the rate and the time left."""

from types import SimpleNamespace

from genbac.runtime.progress import Progress

PHASE = SimpleNamespace(index=2, start_step=100, end_step=200, steps=100)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def feed(progress, clock, steps, seconds_per_step):
    for step in steps:
        clock.now += seconds_per_step
        progress.update(step, {"loss": 3.0 + 1 / step, "tokens_per_sec": 12345.6})


def test_a_line_every_interval_and_at_the_end():
    clock, lines = Clock(), []
    progress = Progress(PHASE, 100, lines.append, terminal=False, every=30, clock=clock)
    feed(progress, clock, range(101, 201), 7.0)  # 7 s a step: a line every 5th step (35 s)
    steps = [int(line.split(" step ")[1].split("/")[0]) for line in lines]
    assert steps[0] == 1 and steps[-1] == 100
    assert all(b - a == 5 for a, b in zip(steps, steps[1:-1]))
    assert lines[0] == ("genbac: phase-2 step 1/100 (1.0%) · loss 3.0099 · 12,346 tokens/s · "
                        "11.6 min left")  # 99 steps to go at 7 s
    assert lines[-1].startswith("genbac: phase-2 step 100/100 (100.0%)")
    assert "left" not in lines[-1]


def test_a_resumed_phase_counts_only_this_attempts_steps_for_the_time_left():
    clock, lines = Clock(), []
    progress = Progress(PHASE, 150, lines.append, terminal=False, every=30, clock=clock)
    feed(progress, clock, [151, 152], 2.0)
    assert lines == ["genbac: phase-2 step 51/100 (51.0%) · loss 3.0066 · 12,346 tokens/s · "
                     "98 s left"]  # 49 steps at 2 s


def test_every_step_with_a_zero_interval(monkeypatch):
    monkeypatch.setenv("GENBAC_PROGRESS_SECONDS", "0")
    clock, lines = Clock(), []
    progress = Progress(PHASE, 100, lines.append, terminal=False, clock=clock)
    feed(progress, clock, range(101, 111), 0.5)
    assert len(lines) == 10
