"""A `genbac run` in the life of a shared machine: a second run of the same directory is refused
while the first lives, SIGTERM stops a run cleanly (MLflow runs KILLED, exit 143, no traceback)
and the same command resumes it, and a run killed with SIGKILL is told apart from a live one
(`genbac runs`: INTERRUPTED) and closed by `--restart`. Real processes, real SQLite MLflow store."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_run import (SPEC, client, genbac, history, project_copy, runs_by_name, short_spec,
                      wait_for)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def often_checkpointed(project: Path, short: bool) -> None:
    """The rehearsal with a checkpoint every 4 steps; `short`: at a quarter of its tokens
    (23 steps instead of 94)."""
    spec = project / SPEC
    text = spec.read_text()
    assert "checkpoint every 20 steps" in text
    text = text.replace("checkpoint every 20 steps", "checkpoint every 4 steps")
    spec.write_text(short_spec(text) if short else text)


def start_run(project: Path, uri: str, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "genbac", "run", "out/tiny",
                                 "--tracking-uri", uri], cwd=project, stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONWARNINGS": "ignore"})


def runs_json(project: Path, uri: str) -> dict:
    r = genbac("runs", "--format", "json", "--tracking-uri", uri, cwd=project)
    assert r.returncode == 0, r.stderr
    return {run["run_id"]: run for run in json.loads(r.stdout)["runs"]}


def compiled(project: Path, short: bool) -> str:
    often_checkpointed(project, short)
    r = genbac("compile", SPEC, "-o", "out/tiny", cwd=project)
    assert r.returncode == 0, r.stderr
    return f"sqlite:///{project}/mlflow.db"


def test_second_run_refused_sigterm_stops_cleanly_and_the_same_command_resumes(tmp_path):
    project = project_copy(tmp_path)
    uri = compiled(project, short=True)
    work = project / "out/tiny/work"
    first = start_run(project, uri, tmp_path / "first.log")
    checkpoint = work / "checkpoints/step_00000004"
    wait_for(checkpoint.exists, first, "the first checkpoint")
    first.send_signal(signal.SIGSTOP)  # frozen mid-phase, still alive and holding its lock

    # while it trains: a second run of the directory is turned away, naming the first
    second = genbac("run", "out/tiny", "--tracking-uri", uri, cwd=project, timeout=120)
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"is in use by another `genbac run` (process {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    parent = json.loads((work / "state.json").read_text())["mlflow"]["parent"]
    assert parent in second.stderr  # the lock names the MLflow run too
    # ... and `genbac runs` sees it alive
    assert runs_json(project, uri)[parent]["status"] == "RUNNING"
    # ... and a compile into its directory is refused, leaving the directory as it is
    plan_before = (project / "out/tiny/plan.json").read_bytes()
    r = genbac("compile", SPEC, "-o", "out/tiny", cwd=project)
    assert r.returncode == 2 and "a `genbac run` is executing it" in r.stderr, r.stderr
    assert (project / "out/tiny/plan.json").read_bytes() == plan_before
    assert not [p for p in project.joinpath("out").iterdir() if p.name.startswith(".")]

    first.send_signal(signal.SIGCONT)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 143
    log = (tmp_path / "first.log").read_text()
    assert "genbac: stopped by SIGTERM" in log and "Traceback" not in log, log[-3000:]
    runs = runs_by_name(uri)
    assert runs["tiny-rehearsal"].info.status == "KILLED"
    assert runs["phase-1"].info.status == "KILLED"
    assert runs["tokenizer"].info.status == "FINISHED"
    assert runs_json(project, uri)[parent]["status"] == "KILLED"
    stopped_at = history(uri, parent, "loss")[-1][0]
    assert 4 <= stopped_at < 23

    # the same command again: the same MLflow runs, from the last checkpoint to the end
    r = genbac("run", "out/tiny", "--tracking-uri", uri, cwd=project)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "resuming from work/checkpoints/step_" in r.stdout
    runs = runs_by_name(uri)
    assert runs["tiny-rehearsal"].info.run_id == parent
    assert runs["tiny-rehearsal"].info.status == "FINISHED"
    assert [s for s, _ in history(uri, parent, "loss")] == list(range(1, 24))


def test_a_sigkilled_run_shows_as_interrupted_and_restart_closes_it(tmp_path):
    project = project_copy(tmp_path)
    uri = compiled(project, short=True)
    work = project / "out/tiny/work"
    proc = start_run(project, uri, tmp_path / "killed.log")
    wait_for(lambda: (work / "checkpoints/step_00000004").exists(), proc, "the first checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    old = json.loads((work / "state.json").read_text())["mlflow"]
    # MLflow cannot know: it still says RUNNING, for the parent and the phase
    assert client(uri).get_run(old["parent"]).info.status == "RUNNING"
    assert client(uri).get_run(old["children"]["phase-1"]).info.status == "RUNNING"
    listed = runs_json(project, uri)[old["parent"]]
    assert (listed["status"], listed["stopped_at"].split(" (")[0]) == ("INTERRUPTED", "phase-1")

    # --restart starts over; the abandoned runs are closed first. (Bavarian's data is cut off,
    # there for preflight but unreadable, so that the new execution stops at its first step
    # instead of training.)
    data = project / "examples/data/bar/train.jsonl"
    data.write_bytes(data.read_bytes() + b'{"text": "cut off\n')
    r = genbac("run", "out/tiny", "--restart", "--tracking-uri", uri, cwd=project)
    assert r.returncode == 2 and "tokenizer: " in r.stderr, r.stderr[-3000:]
    assert "marked 2 MLflow run(s) of the interrupted execution as KILLED" in r.stdout
    assert client(uri).get_run(old["parent"]).info.status == "KILLED"
    assert client(uri).get_run(old["children"]["phase-1"]).info.status == "KILLED"
    assert client(uri).get_run(old["children"]["tokenizer"]).info.status == "FINISHED"
    new = json.loads((work / "state.json").read_text())["mlflow"]["parent"]
    assert new != old["parent"] and client(uri).get_run(new).info.status == "FAILED"
