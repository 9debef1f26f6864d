"""Preflight: every refusal happens before the first step, in seconds, with nothing written and no
MLflow run: `genbac run` on a spec writes no compiled directory, on a compiled directory it leaves
work/ as it was. Real processes and files; a full disk is the one thing simulated (in process),
because no small filesystem can be mounted here.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
TINY = (ROOT / "examples/tiny-rehearsal.genba").read_text()


@pytest.fixture
def project(tmp_path):
    shutil.copytree(ROOT / "examples/data", tmp_path / "data")
    return tmp_path


def run(project: Path, *args, **env):
    started = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "genbac", "run", *args, "--tracking-uri",
                        f"sqlite:///{project}/mlflow.db"], cwd=project, capture_output=True,
                       text=True, timeout=120, env={
                           **os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore",
                           "PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin", **env})
    return r, time.perf_counter() - started


def write(project: Path, text: str, name: str = "exp.genba") -> str:
    (project / name).write_text(text)
    return name


def assert_refused(project: Path, r, seconds: float, *expected: str) -> None:
    assert r.returncode == 1, (r.stdout[-2000:], r.stderr[-2000:])
    assert "genbac: error: cannot start:" in r.stderr and "Traceback" not in r.stderr
    for text in expected:
        assert text in r.stderr, r.stderr
    assert seconds < 30
    assert not (project / "mlflow.db").exists()  # no MLflow record at all
    assert not (project / "out").exists()  # nothing compiled was written


def test_a_gpu_spec_without_gpus(project):
    r, s = run(project, write(project, TINY.replace("hardware = cpu", "hardware = h100 x 4")))
    assert_refused(project, r, s, "hardware = h100 x 4 needs 4 CUDA device(s); this machine has 0",
                   "--backend local")


def test_a_csx_spec_without_cszoo(project):
    text = TINY.replace("hardware = cpu", "hardware = cs-2 x 1").replace("precision = fp32",
                                                                         "precision = bf16")
    r, s = run(project, write(project, text), GENBAC_CSZOO="")
    assert_refused(project, r, s, "hardware = cs-2 x 1 trains through Cerebras Model Zoo's "
                   "`cszoo`, which is not installed here", "--backend local")


def test_a_missing_data_file(project):
    (project / "data/de/train.jsonl").unlink()
    r, s = run(project, write(project, TINY))
    assert_refused(project, r, s, "stage-de: data source 'data/de/train.jsonl' matches no file")


def test_a_data_process_count_that_is_not_a_count(project):
    r, s = run(project, write(project, TINY), GENBAC_DATA_PROCESSES="all")
    assert_refused(project, r, s, "$GENBAC_DATA_PROCESSES must be a positive whole number of "
                   "processes, not 'all'")


def test_a_missing_weights_directory(project):
    text = TINY.replace("base = tiny ", 'base = tiny from "models/nowhere" ').replace(
        "tokenizer = bpe(vocab = 1024)", "")  # the tokenizer is the weights' own
    r, s = run(project, write(project, text))
    assert_refused(project, r, s, "grow: no weights directory", "models/nowhere")


def test_weights_directory_without_a_checkpoint(project):
    (project / "models/half").mkdir(parents=True)
    (project / "models/half/config.json").write_text("{}")
    text = TINY.replace("base = tiny ", 'base = tiny from "models/half" ').replace(
        "tokenizer = bpe(vocab = 1024)", "")
    r, s = run(project, write(project, text))
    assert_refused(project, r, s, "is not a Hugging Face checkpoint: it has no model.safetensors")


def test_a_model_too_large_for_this_machine(project):
    """A 9.8B-parameter grown Llama on a CPU: refused with the numbers, before its random base is
    made or anything is grown."""
    text = (ROOT / "examples/llama-genba-10b.genba").read_text()
    text = text.replace('from "hf:meta-llama/Llama-3.1-8B"', "")
    text = text.replace("hardware = cs-2 x 1", "hardware = cpu")
    r, s = run(project, write(project, text, "big.genba"))
    assert_refused(project, r, s, "the model cannot train on cpu", "9.78B parameters",
                   "of weights, gradients and AdamW state", "GiB are usable here")


def test_a_full_disk(project, monkeypatch, capsys):
    """Simulated: preflight is told 1 MiB are free where the rehearsal needs more."""
    from genbac import cli
    from genbac.runtime import preflight

    monkeypatch.chdir(project)
    monkeypatch.setattr(preflight, "free_bytes", lambda path: 1 << 20)
    code = cli.main(["run", write(project, TINY), "--tracking-uri",
                     f"sqlite:///{project}/mlflow.db"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "not enough disk: the remaining steps write about" in err and "1.00 MiB free" in err
    assert not (project / "mlflow.db").exists() and not (project / "out").exists()


def test_a_compiled_directory_is_left_as_it_was(project):
    """Refused on a compiled directory: work/ is not created, no lock, no state."""
    name = write(project, TINY)
    compiled = subprocess.run([sys.executable, "-m", "genbac", "compile", name, "-o", "out/x"],
                              cwd=project, capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    before = sorted(p.relative_to(project) for p in (project / "out").rglob("*"))
    (project / "data/en/val.jsonl").unlink()
    r, s = run(project, "out/x")
    assert r.returncode == 1 and "stage-en-val: data source 'data/en/val.jsonl'" in r.stderr
    assert sorted(p.relative_to(project) for p in (project / "out").rglob("*")) == before
    assert not (project / "mlflow.db").exists()


def test_dry_run_shows_steps_commands_and_verdict_and_does_nothing(project):
    r, _ = run(project, write(project, TINY), "--dry-run", "--backend", "cszoo",
               GENBAC_CSZOO=sys.executable)  # any executable stands for the tool here
    assert r.returncode == 0, r.stderr
    assert "todo  prepare-en       cszoo data_preprocess run --config cszoo/preprocess/en.yaml" \
        in r.stdout
    assert "todo  convert          cszoo checkpoint convert --model llama" in r.stdout
    assert "preflight: ok" in r.stdout and "estimate: disk" in r.stdout
    assert not (project / "out").exists() and not (project / "mlflow.db").exists()
    r, _ = run(project, write(project, TINY.replace("hardware = cpu", "hardware = h100 x 2")),
               "--dry-run")
    assert r.returncode == 1 and "refused: hardware = h100 x 2 needs 2 CUDA" in r.stdout


def test_local_rehearsal_of_a_gpu_spec_is_labelled_and_recorded(project):
    """`--backend local` on a GPU spec here: trains on the CPU, says so, and MLflow records the
    device actually used next to the declared hardware."""
    text = TINY.replace("hardware = cpu", "hardware = h100 x 2").replace(
        "tokens    = 96K", "tokens    = 16K").replace("enter  = 75%", "enter  = 50%")
    text = text.replace("tokens = ~44K", "tokens = ~7K").replace("tokens = 8K", "tokens = 2K")
    r, _ = run(project, write(project, text), "--backend", "local", "-o", "out/rehearsal")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "REHEARSAL: the spec declares hardware = h100 x 2; this run trains on cpu" in r.stdout
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project}/mlflow.db")
    exp = client.get_experiment_by_name("tiny-rehearsal")
    parent = next(x for x in client.search_runs([exp.experiment_id])
                  if "mlflow.parentRunId" not in x.data.tags)
    assert parent.data.tags["genbac.hardware"] == "h100 x 2"
    assert parent.data.tags["genbac.device"].startswith("cpu (")
    assert parent.data.tags["genbac.rehearsal"].startswith("the spec declares hardware = h100")
    assert json.loads((project / "out/rehearsal/work/state.json").read_text())["done"][-1] == \
        "phase-2"
