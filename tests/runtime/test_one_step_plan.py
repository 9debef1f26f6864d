"""One step list: run.sh, the cszoo backend and the local backend all do the steps of steps.json.

The tiny rehearsal is compiled once and run three ways: `bash run.sh` (real genbac, the stand-in
cszoo of fake_cszoo.py), `genbac run --backend cszoo` (the same stand-in) and `genbac run
--backend local` (real training). Each way's record of what it did is compared with the step plan
as data, step for step: the names in order, and for every tool step the exact argument list.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _tools import stand_in_tools

ROOT = Path(__file__).resolve().parent.parent.parent
FAKE = Path(__file__).resolve().parent / "fake_cszoo.py"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one-plan")
    shutil.copytree(ROOT / "examples", tmp / "examples", ignore=shutil.ignore_patterns("models"))
    bin_dir = stand_in_tools(tmp / "bin")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp / ".hf"), "PYTHONWARNINGS": "ignore"}
    return tmp, bin_dir, env


def compile_to(setup, name: str) -> Path:
    tmp, _, env = setup
    out = tmp / name
    subprocess.run([sys.executable, "-m", "genbac", "compile", "examples/tiny-rehearsal.genba",
                    "-o", str(out)], cwd=tmp, env=env, check=True, capture_output=True)
    return out


def plan_of(out: Path) -> list[dict]:
    return json.loads((out / "steps.json").read_text())["steps"]


def fake_calls(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def tool_argvs(steps: list[dict]) -> list[list[str]]:
    """The tool's argument lists the plan asks for, in order: one per step, one per process
    shared by several steps (the phases of one fit)."""
    out, last_process = [], None
    for step in steps:
        if step["engine"] != "cszoo":
            continue
        if step["process"] and step["process"] == last_process:
            continue
        last_process = step["process"]
        out.append(step["argv"][1:])
    return out


def test_run_sh_lines_are_the_step_plan(setup):
    """Parsed, not grepped: every `run` line of run.sh is one step (or one process's steps) of
    steps.json, with the same argument list."""
    out = compile_to(setup, "parsed")
    steps = plan_of(out)
    lines = [shlex.split(line) for line in (out / "run.sh").read_text().splitlines()
             if line.startswith("run ")]
    names, argvs = [], []
    for words in lines:
        group = words[1].split()
        rest = words[2:]
        step = next(s for s in steps if s["name"] == group[0])
        if rest[0] == "fresh":
            assert step["fresh"] and rest[1] == step["outputs"][0]
            rest = rest[2:]
        tool = {"$GENBAC": "genbac", "$CSZOO": "cszoo"}[rest[0]]
        argvs.append([tool, *rest[1:]])
        names += group
        for name in group:  # a group's steps share the process's command
            assert next(s for s in steps if s["name"] == name)["argv"] == argvs[-1]
    assert names == [s["name"] for s in steps]


def test_run_sh_and_both_backends_do_the_same_steps(setup):
    tmp, bin_dir, env = setup
    steps_of = {}

    # 1. bash run.sh, exactly as compiled (tools found through CSZOO and GENBAC)
    out = compile_to(setup, "by-run-sh")
    calls = tmp / "run-sh-calls.jsonl"
    result = subprocess.run(["bash", str(out / "run.sh")], cwd=tmp, capture_output=True,
                            text=True, timeout=600, env={
                                **env, "CSZOO": str(bin_dir / "cszoo"),
                                "GENBAC": str(bin_dir / "genbac"), "FAKE_CSZOO_CALLS": str(calls)})
    assert result.returncode == 0, result.stderr[-3000:]
    announced = [line.split(": ", 2)[1].split() for line in result.stdout.splitlines()
                 if line.startswith("genbac: ") and ": " in line[8:] and
                 line.split(": ", 2)[1].split()[0] in {s["name"] for s in plan_of(out)}]
    steps_of["run.sh"] = [name for group in announced for name in group]
    assert fake_calls(calls) == tool_argvs(plan_of(out))
    run_sh_calls = fake_calls(calls)

    # 2. genbac run --backend cszoo
    out = compile_to(setup, "by-cszoo")
    calls = tmp / "backend-calls.jsonl"
    uri = f"sqlite:///{tmp}/mlflow.db"
    result = subprocess.run([sys.executable, "-m", "genbac", "run", str(out), "--backend",
                             "cszoo", "--tracking-uri", uri], cwd=tmp, capture_output=True,
                            text=True, timeout=600, env={
                                **env, "GENBAC_CSZOO": str(bin_dir / "cszoo"),
                                "FAKE_CSZOO_CALLS": str(calls)})
    assert result.returncode == 0, result.stderr[-3000:]
    steps_of["cszoo backend"] = json.loads((out / "work/state.json").read_text())["done"]
    assert fake_calls(calls) == run_sh_calls  # the same commands, in the same order

    # 3. genbac run --backend local
    out = compile_to(setup, "by-local")
    result = subprocess.run([sys.executable, "-m", "genbac", "run", str(out), "--backend",
                             "local", "--tracking-uri", uri], cwd=tmp, capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    steps_of["local backend"] = json.loads((out / "work/state.json").read_text())["done"]

    planned = [s["name"] for s in plan_of(out)]
    assert steps_of == {way: planned for way in steps_of}

    # every step was an MLflow child run of its backend's parent run, in plan order
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("tiny-rehearsal")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    for backend in ("cszoo", "local"):
        parent = next(r for r in runs if r.data.tags.get("genbac.backend") == backend
                      and "mlflow.parentRunId" not in r.data.tags)
        children = [r.info.run_name for r in runs
                    if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert children == planned, backend
        assert parent.data.tags["genbac.device"].startswith("cpu (")
        assert parent.data.tags["genbac.rehearsal"] == "no"
