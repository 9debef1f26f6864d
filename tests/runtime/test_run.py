"""`genbac run` end to end on the tiny rehearsal: MLflow contents, kill -9 and resume, a real MLflow
server, and bad input. Everything runs for real: transformers model, trained BPE tokenizer, datasets,
SQLite and HTTP MLflow stores."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SPEC = "examples/tiny-rehearsal.genba"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def project_copy(dst: Path) -> Path:
    # the converted real-weights model (examples/models) is large and not needed here
    shutil.copytree(ROOT / "examples", dst / "examples", ignore=shutil.ignore_patterns("models"))
    return dst


def short_spec(text: str) -> str:
    """The rehearsal at a quarter of its tokens: 24 steps, phases 0-17 and 17-23 (about 15 s)."""
    for old, new in (("tokens    = 96K", "tokens    = 24K"), ("~44K", "~11K"),
                     ("tokens = 8K", "tokens = 2K")):
        assert old in text, f"the rehearsal no longer says {old!r}"
        text = text.replace(old, new)
    return text


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    """Poll `condition` while the `genbac run` in `proc` goes on; fail if it ends first or the time
    runs out."""
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (status {proc.returncode}) before {what}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.02)


def genbac(*args, cwd, timeout=600, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(Path(cwd) / ".hf"), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "genbac", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env, **kw)


def client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_by_name(uri, experiment="tiny-rehearsal"):
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    return {r.info.run_name: r for r in c.search_runs([exp.experiment_id])}


def history(uri, run_id, key):
    return sorted((m.step, m.value) for m in client(uri).get_metric_history(run_id, key))


def final_weights(compiled: Path):
    from genbac.runtime.checkpoints import weights

    last = sorted((compiled / "work" / "checkpoints").glob("step_*"))[-1]
    return last.name, weights(last)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """One uninterrupted run of the rehearsal, shared by the tests that only read it."""
    project = project_copy(tmp_path_factory.mktemp("rehearsal"))
    uri = f"sqlite:///{project}/mlflow.db"
    r = genbac("run", SPEC, "-o", "out/tiny", "--tracking-uri", uri, cwd=project)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return project, uri, r


def test_every_step_runs_and_finishes(rehearsal):
    project, uri, r = rehearsal
    state = json.loads((project / "out/tiny/work/state.json").read_text())
    planned = json.loads((project / "out/tiny/steps.json").read_text())["steps"]
    assert state["done"] == [s["name"] for s in planned]
    assert state["done"][:3] == ["tokenizer", "stage-en", "prepare-en"]
    assert state["done"][-6:] == ["base", "grow", "convert", "baseline", "phase-1", "phase-2"]
    report = json.loads((project / "out/tiny/work/grown/growth_report.json").read_text())
    assert report["verification"]["max_abs_diff"] <= 1e-5
    assert "mlflow ui --backend-store-uri" in r.stdout


def test_mlflow_holds_parent_children_and_per_language_curves(rehearsal):
    project, uri, _ = rehearsal
    runs = runs_by_name(uri)
    parent = runs.pop("tiny-rehearsal")
    assert parent.info.status == "FINISHED"
    planned = json.loads((project / "out/tiny/steps.json").read_text())["steps"]
    assert set(runs) == {s["name"] for s in planned}
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in runs.values())
    tags = parent.data.tags
    assert tags["genbac.backend"] == "local" and tags["genbac.hardware"] == "cpu"
    assert tags["genbac.device"].startswith("cpu (") and tags["genbac.rehearsal"] == "no"
    plan = json.loads((project / "out/tiny/plan.json").read_text())
    assert tags["genbac.spec_hash"] == plan["spec_hash"]
    params = parent.data.params
    assert params["train.optimizer.lr"] == "0.003" and params["languages.bar.enter.percent"] == "75.0"
    assert all(len(v) <= 500 for v in params.values())
    # one point per step, no duplicates
    loss = history(uri, parent.info.run_id, "loss")
    assert [s for s, _ in loss] == list(range(1, 95))
    # Bavarian: zero tokens before its entry step (71), then some
    bar = dict(history(uri, parent.info.run_id, "tokens/bar"))
    assert all(bar[s] == 0 for s in range(1, 72))
    assert bar[94] > 0
    en_val = history(uri, parent.info.run_id, "val_loss/en")
    assert [s for s, _ in en_val] == [0, 20, 40, 60, 71, 91, 94]
    assert [s for s, _ in history(uri, parent.info.run_id, "val_loss/bar")][-1] == 94
    assert history(uri, runs["phase-2"].info.run_id, "loss")[0][0] == 72
    artifacts = {a.path for a in client(uri).list_artifacts(parent.info.run_id)}
    assert {"spec.genba", "plan.json", "steps.json", "mixture.png", "configs"} <= artifacts
    # the run's schedule picture is explain --plot's drawing of the same plan, byte for byte
    png = Path(client(uri).download_artifacts(parent.info.run_id, "mixture.png",
                                              str(project / "downloaded")))
    assert genbac("explain", SPEC, "--plot", "explained.png", cwd=project).returncode == 0
    assert png.read_bytes() == (project / "explained.png").read_bytes()


def test_kill_9_mid_phase_then_resume_matches_uninterrupted(rehearsal, tmp_path):
    _, _, _ = rehearsal
    project = project_copy(tmp_path)
    uri = f"sqlite:///{project}/mlflow.db"
    assert genbac("compile", SPEC, "-o", "out/tiny", cwd=project).returncode == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(project / ".hf")}
    proc = subprocess.Popen([sys.executable, "-m", "genbac", "run", "out/tiny", "--tracking-uri",
                             uri], cwd=project, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    target = project / "out/tiny/work/checkpoints/step_00000020"
    wait_for(target.exists, proc, "the checkpoint of step 20")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads((project / "out/tiny/work/state.json").read_text())
    assert "phase-1" not in state["done"], "the run finished before it could be killed"
    parent_id = state["mlflow"]["parent"]

    r = genbac("run", "out/tiny", "--tracking-uri", uri, cwd=project)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from work/checkpoints/step_" in r.stdout

    import torch

    name, resumed = final_weights(project / "out/tiny")
    ref_name, reference = final_weights(rehearsal[0] / "out/tiny")
    assert name == ref_name == "step_00000094"
    assert resumed.keys() == reference.keys()
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), key
    # the same MLflow runs continue, and no step is logged twice
    runs = runs_by_name(uri)
    assert runs["tiny-rehearsal"].info.run_id == parent_id
    planned = json.loads((project / "out/tiny/steps.json").read_text())["steps"]
    assert len(runs) == 1 + len(planned)  # the parent, one child per step: none twice
    steps = [s for s, _ in history(uri, parent_id, "loss")]
    assert steps == list(range(1, 95))


def test_tracking_to_a_real_mlflow_server(tmp_path, mlflow_server):
    project = project_copy(tmp_path)
    spec = project / SPEC
    # a shorter variant: 24 steps
    spec.write_text(short_spec(spec.read_text()))
    uri = mlflow_server
    r = genbac("run", SPEC, "-o", "out/tiny", "--tracking-uri", uri, cwd=project)
    assert r.returncode == 0, r.stderr[-3000:]
    body = json.dumps({"experiment_ids": [], "max_results": 10}).encode()
    req = urllib.request.Request(f"{uri}/api/2.0/mlflow/experiments/search", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        names = [e["name"] for e in json.load(resp)["experiments"]]
    assert "tiny-rehearsal" in names
    runs = runs_by_name(uri)
    parent = runs["tiny-rehearsal"]
    assert parent.info.status == "FINISHED"
    steps = [s for s, _ in history(uri, parent.info.run_id, "loss")]
    plan = json.loads((project / "out/tiny/plan.json").read_text())
    assert steps == list(range(1, plan["schedule"]["total_steps"] + 1))


def test_changed_spec_is_refused_until_restart(rehearsal, tmp_path):
    project = project_copy(tmp_path)
    shutil.copytree(rehearsal[0] / "out", project / "out")
    uri = f"sqlite:///{project}/mlflow.db"
    spec = project / SPEC
    spec.write_text(spec.read_text().replace("enter  = 75%", "enter  = 50%"))
    assert genbac("compile", SPEC, "-o", "out/tiny", cwd=project).returncode == 0
    r = genbac("run", "out/tiny", "--tracking-uri", uri, cwd=project)
    assert r.returncode == 2
    assert "--restart" in r.stderr and "Traceback" not in r.stderr
    assert (project / "out/tiny/work/checkpoints").exists()  # nothing deleted without --restart


def read_only(path: Path):
    """Make a directory unwritable even for root (chattr +i), or by mode for other users."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    path.chmod(0o500)
    return lambda: path.chmod(0o700)


@pytest.mark.parametrize("case", ["missing data", "tokenizer vocabulary", "unwritable work",
                                  "corrupt base checkpoint"])
def test_bad_input_is_a_clear_error(case, tmp_path):
    project = project_copy(tmp_path)
    spec = project / SPEC
    text = spec.read_text()
    uri = f"sqlite:///{project}/mlflow.db"
    if case == "missing data":
        text = text.replace('"data/bar/train.jsonl"', '"data/bar/missing-*.jsonl"')
        expect = "data/bar/missing-*.jsonl"
    elif case == "tokenizer vocabulary":
        # a real tokenizer of 2048 tokens for a model with 1024
        from genbac.runtime.tokenizer import train_bpe_tokenizer

        train_bpe_tokenizer(sorted((project / "examples/data").glob("*/train.jsonl")), 2048,
                            project / "examples/tok2048")
        text = text.replace("tokenizer = bpe(vocab = 1024)", 'tokenizer = "tok2048"')
        expect = "1024"
    elif case == "corrupt base checkpoint":
        (project / "examples/base").mkdir()
        (project / "examples/base/config.json").write_text("{}")
        (project / "examples/base/model.safetensors").write_bytes(b"\x00" * 3)
        from genbac.runtime.tokenizer import train_bpe_tokenizer

        train_bpe_tokenizer(sorted((project / "examples/data").glob("*/train.jsonl")), 1024,
                            project / "examples/tok")
        text = text.replace("base = tiny ", 'base = tiny from "base" ').replace(
            "tokenizer = bpe(vocab = 1024)", 'tokenizer = "tok"')
        expect = "base"
    spec.write_text(text)
    if case == "unwritable work":
        # a full disk, simulated: the checkpoint directory cannot take new entries
        assert genbac("compile", SPEC, "-o", "out/tiny", cwd=project).returncode == 0
        checkpoints = project / "out/tiny/work/checkpoints"
        checkpoints.mkdir(parents=True)
        locked = read_only(checkpoints)
        expect = "checkpoints"
        try:
            r = genbac("run", "out/tiny", "--tracking-uri", uri, cwd=project)
        finally:
            locked()
        state = json.loads((project / "out/tiny/work/state.json").read_text())
        assert "prepare-bar-val" in state["done"]  # earlier results intact
    else:
        r = genbac("run", SPEC, "-o", "out/tiny", "--tracking-uri", uri, cwd=project)
    if case == "missing data":  # refused by preflight: nothing written, nothing recorded
        assert r.returncode == 1, (r.stdout[-2000:], r.stderr[-2000:])
        assert "cannot start" in r.stderr
        assert not (project / "out").exists() and not (project / "mlflow.db").exists()
    else:
        assert r.returncode == 2, (r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    assert "genbac: error:" in r.stderr and expect in r.stderr, r.stderr[-2000:]


def test_step_zero_baseline_of_grown_and_base_model(rehearsal):
    """Before the first update every language is evaluated on the grown model (val_loss at step
    0) and on the base before growth (base_val_loss); identity growth keeps them equal, and the
    run says so, in its log, a tag and parameters that `genbac runs` reads."""
    project, uri, r = rehearsal
    parent = runs_by_name(uri)["tiny-rehearsal"]
    start, base = {}, {}
    for code in ("en", "de", "bar"):
        start[code] = dict(history(uri, parent.info.run_id, f"val_loss/{code}"))[0]
        base[code] = dict(history(uri, parent.info.run_id, f"base_val_loss/{code}"))[0]
        assert start[code] == pytest.approx(base[code], rel=1e-5)
        assert float(parent.data.params[f"baseline.val_loss/{code}"]) == pytest.approx(start[code])
        # a randomly initialised model of a 1,024-token vocabulary starts near ln(1024)
        assert abs(start[code] - math.log(1024)) < 0.5
    assert "equals the base model's" in parent.data.tags["genbac.baseline"]
    assert "genbac: baseline (step 0): validation loss en " in r.stdout
    listing = genbac("runs", "--format", "json", "--tracking-uri", uri, cwd=project)
    row = json.loads(listing.stdout)["runs"][0]
    final = dict(history(uri, parent.info.run_id, "val_loss/en"))[94]
    assert row["start_val_loss"]["en"] == pytest.approx(start["en"])
    assert row["change_val_loss"]["en"] == pytest.approx(final - start["en"])


def test_provenance_tags_and_installed_packages(rehearsal):
    import socket
    from importlib import metadata

    project, uri, _ = rehearsal
    parent = runs_by_name(uri)["tiny-rehearsal"]
    tags = parent.data.tags
    assert tags["genbac.env.host"] == socket.gethostname()
    assert tags["genbac.env.torch"] == metadata.version("torch")
    assert tags["genbac.env.datasets"] == metadata.version("datasets")
    assert tags["genbac.env.spec_in_git"] == "not a git repository"  # a copy outside any repo
    path = client(uri).download_artifacts(parent.info.run_id, "environment/requirements.txt",
                                          str(project / "downloaded-env"))
    assert f"transformers=={metadata.version('transformers')}\n" in Path(path).read_text()
