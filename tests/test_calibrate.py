"""Calibration: the estimate redone with a measured rate (compiler/calibrate.py), read from MLflow
(runtime/calibrate.py) and shown by `genbac explain --calibrate RUN_ID`."""

import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from genbac.compiler.calibrate import calibrate, implied_utilisation, render
from genbac.compiler.plan import Measurement
from genbac.compiler.compile import plan_spec
from genbac.compiler.explain import duration

ROOT = Path(__file__).resolve().parent.parent


def plan_of(name):
    text = (ROOT / "examples" / f"{name}.genba").read_text()
    return plan_spec(text, f"{name}.genba")[0]


def test_the_assumed_rate_reproduces_the_estimate():
    plan = plan_of("llama-genba-10b")
    e = plan.estimate
    assumed_rate = e.utilisation * e.count * e.peak_flops / e.flops_per_token
    m = Measurement("r", plan.name, e.hardware, e.count, e.flops_per_token, assumed_rate, 100)
    c = calibrate(e, m)
    assert c.utilisation == pytest.approx(e.utilisation)
    assert c.seconds == pytest.approx(e.seconds)
    assert c.energy_kwh == pytest.approx(e.energy_kwh)
    assert c.same_hardware


def test_a_slower_run_of_a_small_model_lengthens_the_big_estimate():
    """A 1B-class run on the same CS-2 at 12.5% utilisation: GENBA-10B takes twice the time."""
    big = plan_of("llama-genba-10b").estimate
    per_token = 6.5e9  # FLOPs per token of some smaller model
    rate = 0.125 * 7.5e15 / per_token
    m = Measurement("r", "small", "cs-2", 1, per_token, rate, 50)
    assert implied_utilisation(rate, per_token, 7.5e15, 1) == pytest.approx(0.125)
    c = calibrate(big, m)
    assert c.seconds == pytest.approx(2 * big.seconds)
    assert c.energy_kwh == pytest.approx(2 * big.energy_kwh)
    text = render(big, m, c)
    assert "assumed (profile)" in text and "calibrated (measured rate)" in text
    assert duration(big.seconds) in text and duration(c.seconds) in text
    assert "rough transfer" not in text


def test_another_hardware_is_said_to_be_a_rough_transfer():
    big = plan_of("llama-genba-10b").estimate
    m = Measurement("r", "tiny", "cpu", 1, 1e6, 1e5, 10)
    c = calibrate(big, m)
    assert not c.same_hardware
    assert c.utilisation == pytest.approx(1e5 * 1e6 / 1e12)
    assert "trained on cpu, this spec targets cs-2" in render(big, m, c, markdown=True)
    with pytest.raises(ValueError):
        calibrate(big, m._replace(tokens_per_sec=0))


@pytest.fixture(scope="module")
def bridged_run(tmp_path_factory):
    """A tiny-rehearsal run in a real MLflow store whose phase metrics came through the cszoo
    bridge from TensorBoard events (Model Zoo's tags), with its plan.json as an artifact."""
    from torch.utils.tensorboard import SummaryWriter

    from genbac.runtime.cszoo_backend import MODEL_DIR, Fit
    from genbac.runtime.cszoo_logs import layout_from_plan
    from genbac.compiler.artifact import Artifact
    from genbac.runtime.context import Context
    from genbac.runtime.tracking import Tracker

    tmp = tmp_path_factory.mktemp("calibrate")
    plan = plan_of("tiny-rehearsal")
    (tmp / "plan.json").write_text(plan.model_dump_json())
    uri = f"sqlite:///{tmp}/mlflow.db"
    state = {}
    tracker = Tracker(uri, plan.name, state)
    parent = tracker.parent(lambda previous: plan.name, {"genbac.spec_hash": plan.spec_hash})
    tracker.artifact(parent, tmp / "plan.json")
    runs = {p.index: tracker.child(f"phase-{p.index}") for p in plan.schedule.phases}
    writer = SummaryWriter(log_dir=str(tmp / MODEL_DIR / "events"))
    rates = {step: 20.0 + (step % 7) for step in range(1, plan.schedule.total_steps + 1)}
    for step, rate in rates.items():
        writer.add_scalar("loss", 6.0, step)
        writer.add_scalar("local_samples_per_sec", rate, step)
    writer.close()
    ctx = Context(Artifact(tmp, None, plan, None), state, tracker, lambda line: None)
    Fit(layout_from_plan(plan)).ingest_events(ctx, runs)
    return plan, uri, parent, runs, rates


def test_explain_calibrates_with_the_bridged_rate(bridged_run):
    plan, uri, parent, runs, rates = bridged_run
    tokens_per_sec = statistics.median(rates.values()) * plan.schedule.sequence
    expected = plan.schedule.compiled_tokens / tokens_per_sec  # same spec, same hardware
    r = subprocess.run([sys.executable, "-m", "genbac", "explain", "examples/tiny-rehearsal.genba",
                        "--calibrate", parent, "--tracking-uri", uri], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Estimate (assumed, not measured)" in r.stdout  # explain itself is unchanged
    table = r.stdout.split("Calibrated estimate (measured rate)")[1]
    assert f"median {tokens_per_sec:,.4g} tokens/s over {len(rates)} training steps" in table
    time_row = next(line for line in table.splitlines() if line.strip().startswith("time"))
    assert time_row.split()[-2:] == duration(expected).split()
    assert duration(plan.estimate.seconds) in time_row
    utilisation = tokens_per_sec * plan.estimate.flops_per_token / plan.estimate.peak_flops
    util_row = next(line for line in table.splitlines() if "utilisation" in line)
    assert util_row.split()[-1] == f"{utilisation:.3g}"


def test_calibrating_with_a_phase_run_or_a_missing_run(bridged_run):
    from genbac.runtime.calibrate import measure
    from genbac.runtime.context import RunError

    plan, uri, parent, runs, rates = bridged_run
    phase2 = measure(runs[2], uri)
    steps2 = [s for s in rates if s > plan.schedule.phases[0].end_step]
    assert phase2.steps == len(steps2)
    assert phase2.tokens_per_sec == statistics.median(rates[s] for s in steps2) * 128
    with pytest.raises(RunError, match="'nope' is neither a run id nor a spec hash"):
        measure("nope", uri)
    with pytest.raises(RunError, match="no genbac run or spec hash starts with 'abc123'"):
        measure("abc123", uri)
    r = subprocess.run([sys.executable, "-m", "genbac", "explain", "examples/tiny-rehearsal.genba",
                        "--calibrate", "abc123", "--tracking-uri", uri], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "starts with 'abc123'" in r.stderr and "Traceback" not in r.stderr

    missing = Path(uri[len("sqlite:///"):]).with_name("not-there.db")
    with pytest.raises(RunError, match="no MLflow store at"):
        measure(parent, f"sqlite:///{missing}")
    assert not missing.exists()  # a wrong --tracking-uri leaves nothing behind


def test_calibrating_with_a_prefix_or_a_spec_hash(bridged_run):
    """As `genbac compare` takes runs: the first characters of a run id, or of a spec hash."""
    from genbac.runtime.calibrate import measure

    plan, uri, parent, runs, rates = bridged_run
    whole = measure(parent, uri)
    assert whole.steps == len(rates)
    for arg in (parent[:8], plan.spec_hash[:10]):
        short = measure(arg, uri)
        assert (short.run_id, short.steps, short.tokens_per_sec) == (
            parent, whole.steps, whole.tokens_per_sec)
