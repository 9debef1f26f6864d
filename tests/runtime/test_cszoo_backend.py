"""`genbac run --backend cszoo`: genbac's orchestration around Model Zoo's `cszoo`.

Model Zoo cannot be installed in CI (it is not on PyPI), so these tests run the backend against
tests/runtime/fake_cszoo.py, a STAND-IN that prints real Model Zoo log lines and writes real
TensorBoard events and checkpoint files but trains nothing. They test what genbac does: the
commands and their arguments, the steps and MLflow runs, resume from checkpoints, error messages.
Whether Model Zoo itself accepts all of it is checked by hand against a real install (README).
The tokenizer, MLflow (SQLite) and everything of genbac's run for real.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genbac.runtime.cszoo_backend import latest_of, resume_trainers
from genbac.runtime.cszoo_logs import PhaseSpan

ROOT = Path(__file__).resolve().parent.parent.parent
FAKE = Path(__file__).resolve().parent / "fake_cszoo.py"
SPEC = "examples/tiny-rehearsal.genba"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def fake_cszoo(tmp_path_factory):
    """The stand-in as an executable named cszoo."""
    bin_dir = tmp_path_factory.mktemp("bin")
    exe = bin_dir / "cszoo"
    exe.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
    exe.chmod(0o755)
    return exe


def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("models"))
    return tmp_path


def genbac(*args, cwd, env_extra=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(Path(cwd) / ".hf"), "PYTHONWARNINGS": "ignore", **(env_extra or {})}
    for key in ("FAKE_CSZOO_DIE_AT", "FAKE_CSZOO_FAIL", "FAKE_CSZOO_VAL_LOADERS"):
        if key not in (env_extra or {}):
            env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "genbac", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=env)


def calls(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_by_name(uri):
    c = client(uri)
    exp = c.get_experiment_by_name("tiny-rehearsal")
    return {r.info.run_name: r for r in c.search_runs([exp.experiment_id])}


def steps(uri, run_id, key):
    return [m.step for m in sorted(client(uri).get_metric_history(run_id, key),
                                   key=lambda m: m.step)]


@pytest.fixture(scope="module")
def crashed_and_resumed(tmp_path_factory, fake_cszoo):
    """The rehearsal through the stand-in: the fit crashes at step 50 (checkpoint 40 on disk), then
    at step 85 of phase 2 (phase 1's last checkpoint, 71, on disk), then finishes."""
    root = project(tmp_path_factory.mktemp("cszoo"))
    uri = f"sqlite:///{root}/mlflow.db"
    log = root / "calls.jsonl"
    base = {"GENBAC_CSZOO": str(fake_cszoo), "FAKE_CSZOO_CALLS": str(log)}
    args = ("run", SPEC, "-o", "out/tiny", "--backend", "cszoo", "--tracking-uri", uri)
    first = genbac(*args, cwd=root, env_extra={**base, "FAKE_CSZOO_DIE_AT": "50"})
    second = genbac(*args, cwd=root, env_extra={**base, "FAKE_CSZOO_DIE_AT": "85"})
    third = genbac(*args, cwd=root, env_extra=base)
    resume_yaml = (root / "out/tiny/work/resume.yaml").read_text()
    return root, uri, calls(log), (first, second, third), resume_yaml


def test_commands_are_run_sh_commands_in_order(crashed_and_resumed):
    root, uri, argvs, results, _ = crashed_and_resumed
    plan = json.loads((root / "out/tiny/steps.json").read_text())["steps"]
    tool_steps = [s["argv"][1:] for s in plan if s["engine"] == "cszoo" and s["kind"] != "phase"]
    # 6 preprocessing jobs, the conversion, the baseline evaluation: each once, crashes or not
    assert argvs[:8] == tool_steps
    assert argvs[:6] == [["data_preprocess", "run", "--config", f"cszoo/preprocess/{job}.yaml"]
                         for job in ("en", "en-val", "de", "de-val", "bar", "bar-val")]
    assert argvs[6][:2] == ["checkpoint", "convert"]
    assert argvs[7] == ["validate_all", "cszoo/baseline.yaml"]
    fits = argvs[8:]
    # the fresh start runs the compiled multi-phase config; reruns the resume config; nothing is
    # ever passed as --checkpoint_path (it would apply to every phase)
    assert fits == [["fit", "cszoo/train.yaml"], ["fit", "work/resume.yaml"],
                    ["fit", "work/resume.yaml"]]


def test_crash_is_reported_and_rerun_resumes(crashed_and_resumed):
    root, uri, _, (first, second, third), resume_yaml = crashed_and_resumed
    for crashed, step in ((first, 50), (second, 85)):
        assert crashed.returncode == 2, crashed.stderr
        assert "Traceback" not in crashed.stderr
        assert "phase-" in crashed.stderr and "exit status 137" in crashed.stderr
        assert "full output: work/logs/fit.log" in crashed.stderr
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "resuming phase 1 from work/model_dir/checkpoint_40.mdl (step 40)" in second.stdout
    assert "starting phase 2 from work/model_dir/checkpoint_71.mdl (step 71)" in third.stdout
    assert "skip phase-1 (done)" in third.stdout
    # genbac's own progress from Model Zoo's step lines: the resumed phase 2 from step 71, with
    # a last line at its end (no terminal here, so lines, not a bar)
    assert re.search(r"genbac: phase-2 step 23/23 \(100\.0%\) · loss \d+\.\d{4} · [\d,]+ "
                     r"tokens/s\n", third.stdout), third.stdout[-3000:]
    assert re.search(r"genbac: phase-1 step 71/71 \(100\.0%\)", second.stdout)
    state = json.loads((root / "out/tiny/work/state.json").read_text())
    assert state["backend"] == "cszoo"
    assert state["done"] == [s["name"] for s in json.loads(
        (root / "out/tiny/steps.json").read_text())["steps"]]
    # the last resume config: phase 1 dropped, phase 2 from phase 1's last checkpoint, loading
    # what the compiled phase 2 loads (no dataloader state: the mixture changed)
    trainers = yaml.safe_load(resume_yaml)["trainer"]
    assert len(trainers) == 1
    phase2 = trainers[0]["trainer"]
    assert phase2["init"]["loop"]["max_steps"] == 94
    assert phase2["fit"]["ckpt_path"] == "work/model_dir/checkpoint_71.mdl"
    assert {"LoadCheckpointStates": {"load_checkpoint_states": "model,optimizer,global_step"}} \
        in phase2["init"]["callbacks"]


def test_phases_are_child_runs_with_their_steps_once(crashed_and_resumed):
    root, uri, _, _, _ = crashed_and_resumed
    runs = runs_by_name(uri)
    parent = runs["tiny-rehearsal"]
    assert parent.data.tags["genbac.backend"] == "cszoo"
    assert parent.info.status == "FINISHED"
    assert {n for n in runs} >= {"phase-1", "phase-2", "prepare-en", "tokenizer"}
    p1, p2 = runs["phase-1"].info.run_id, runs["phase-2"].info.run_id
    # steps 41-50 and 72-85 ran twice (crashes): MLflow holds each step once
    assert steps(uri, p1, "loss") == list(range(1, 72))
    assert steps(uri, p2, "loss") == list(range(72, 95))
    assert steps(uri, parent.info.run_id, "loss") == list(range(1, 95))
    # from the event files: lr; from the lines: eval loss per language at the phase end
    assert steps(uri, p1, "lr") == list(range(1, 72))
    assert steps(uri, p1, "val_loss/bar") == [71]
    assert steps(uri, p2, "val_perplexity/de") == [94]
    history = client(uri).get_metric_history(p2, "tokens_per_sec")
    assert sorted((m.step, m.value) for m in history)[0] == (72, (20 + 72) * 128)
    # the plan's estimate is a parameter of the run, not a metric repeated at every step
    assert not client(uri).get_metric_history(p2, "estimated_step_time_s")
    assert float(parent.data.params["estimate.step_time_s"]) > 0
    # the Model Zoo the backend ran: its interpreter (here the fake's) has no cerebras_modelzoo
    assert parent.data.tags["genbac.env.cszoo"].startswith("unknown (")
    # ... and the torch that trains under it is that interpreter's (the fake's: this one)
    from importlib import metadata

    assert parent.data.tags["genbac.env.cszoo_torch"] == metadata.version("torch")
    listed = {a.path for a in client(uri).list_artifacts(parent.info.run_id, "environment")}
    assert listed == {"environment/requirements.txt", "environment/cszoo-requirements.txt"}
    assert runs["prepare-en"].data.metrics["sequences"] == 3


def test_baseline_is_the_converted_models_loss_at_step_0(crashed_and_resumed):
    """The baseline step's validate_all losses (the fake's "Avg Eval Loss: 6.5+k" for val
    dataloader k) land at step 0 on the parent and the baseline run, and as parameters."""
    _, uri, _, _, _ = crashed_and_resumed
    runs = runs_by_name(uri)
    parent, base = runs["tiny-rehearsal"], runs["baseline"]
    for k, code in enumerate(("en", "de", "bar")):
        for run in (parent, base):
            history = client(uri).get_metric_history(run.info.run_id, f"val_loss/{code}")
            assert sorted((m.step, m.value) for m in history)[0] == (0, 6.5 + k)
        assert float(parent.data.params[f"baseline.val_loss/{code}"]) == 6.5 + k
    # Model Zoo evaluates the grown model only: the tag says how it compares with the base, as
    # the grow step measured it (identity growth: equal)
    assert parent.data.tags["genbac.baseline"].startswith(
        "baseline: the base model before growth is not evaluated here; the grown model equals "
        "its function (max |logit difference| ")


def test_baseline_without_a_language_loss_names_it(tmp_path, fake_cszoo):
    """A validate_all whose output lacks a language's loss is an error naming the language and
    the log, not a baseline silently short of it."""
    root = project(tmp_path)
    r = genbac("run", SPEC, "-o", "out/tiny", "--backend", "cszoo", "--tracking-uri",
               f"sqlite:///{root}/mlflow.db", cwd=root,
               env_extra={"GENBAC_CSZOO": str(fake_cszoo), "FAKE_CSZOO_VAL_LOADERS": "2"})
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert "baseline" in r.stderr and "bar" in r.stderr
    assert "work/logs/baseline.log" in r.stderr


def test_model_zoo_error_is_explained_without_traceback(tmp_path, fake_cszoo):
    root = project(tmp_path)
    error = ("RuntimeError: state_dict is incompatible with the dataset settings ... "
             "key=mixture_params, current_value=[...], state_dict_value=[...]")
    r = genbac("run", SPEC, "-o", "out/tiny", "--backend", "cszoo", "--tracking-uri",
               f"sqlite:///{root}/mlflow.db", cwd=root,
               env_extra={"GENBAC_CSZOO": str(fake_cszoo), "FAKE_CSZOO_FAIL": error})
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "genbac: error: phase-1: " in r.stderr
    assert "rerun with --restart" in r.stderr
    assert "Model Zoo said: state_dict is incompatible with the dataset settings" in r.stderr


def test_without_cszoo_nothing_is_done(tmp_path):
    root = project(tmp_path)
    r = genbac("run", SPEC, "-o", "out/tiny", "--backend", "cszoo", cwd=root,
               env_extra={"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin",
                          "GENBAC_CSZOO": ""})
    assert r.returncode == 1  # refused by preflight
    assert "`cszoo`, the command of the Cerebras Model Zoo" in r.stderr
    assert "--backend local" in r.stderr and "GENBAC_CSZOO" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (root / "out").exists() and not (root / "mlflow.db").exists()


# --------------------------------------------------------------------------------------------------
# the resume config, on the compiled YAML of a spec that starts from base weights
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def from_weights():
    """Phase 1 of a spec with base weights loads the converted checkpoint (fit.ckpt_path) with
    only its model state; phase 2 chains from phase 1's last checkpoint."""
    from genbac.compiler.compile import compile_spec

    text = (ROOT / "examples/llama-genba-10b.genba").read_text()
    plan, files, _ = compile_spec(text, "llama-genba-10b.genba", project_dir=".")
    trainers = yaml.safe_load(files["cszoo/train.yaml"])["trainer"]
    phases = tuple(PhaseSpan(p.index, p.start_step, p.end_step) for p in plan.schedule.phases)
    return trainers, phases


def states(trainer):
    return [c["LoadCheckpointStates"]["load_checkpoint_states"]
            for c in trainer["trainer"]["init"].get("callbacks", []) if "LoadCheckpointStates" in c]


def test_crash_in_phase_1_from_base_weights_resumes_not_restarts(from_weights):
    trainers, phases = from_weights
    assert trainers[0]["trainer"]["fit"]["ckpt_path"] == "work/ckpt/model_to_cs-2.9.mdl"
    assert states(trainers[0]) == ["model"]
    resumed = resume_trainers(trainers, phases, "work/model_dir/checkpoint_1000.mdl", 1000)
    assert len(resumed) == 2
    first = resumed[0]["trainer"]
    assert first["fit"]["ckpt_path"] == "work/model_dir/checkpoint_1000.mdl"
    assert states(resumed[0]) == ["all"]  # optimizer, step, schedulers, dataloader position too
    assert resumed[1] == trainers[1]  # phase 2 still chains through the shared model_dir
    assert trainers[0]["trainer"]["fit"]["ckpt_path"] == "work/ckpt/model_to_cs-2.9.mdl"


def test_crash_in_phase_2_resumes_inside_phase_2(from_weights):
    trainers, phases = from_weights
    mid = phases[1].start_step + 500
    resumed = resume_trainers(trainers, phases, f"work/model_dir/checkpoint_{mid}.mdl", mid)
    assert len(resumed) == 1
    assert resumed[0]["trainer"]["init"]["loop"] == trainers[1]["trainer"]["init"]["loop"]
    assert states(resumed[0]) == ["all"]  # its own dataloader state fits its own mixture
    boundary = phases[0].end_step
    at = resume_trainers(trainers, phases, f"ckpt/checkpoint_{boundary}.mdl", boundary)
    assert states(at[0]) == ["model,optimizer,global_step"]
    assert resume_trainers(trainers, phases, "c", phases[-1].end_step) == []


def test_latest_checkpoint_is_model_zoos_choice():
    assert latest_of(["md/checkpoint_20.mdl", "md/checkpoint_100.mdl", "md/checkpoint_3.mdl"]) \
        == ("md/checkpoint_100.mdl", 100)
    # a name collision gets a timestamp suffix; the newest wins (reference §4.2, §6.4)
    assert latest_of(["md/checkpoint_71.mdl", "md/checkpoint_71_20261126_155546.mdl"]) == \
        ("md/checkpoint_71_20261126_155546.mdl", 71)
    assert latest_of(["md/model_to_cs-2.9.mdl"]) is None
