"""`genbac compare` and `genbac runs` on real runs: the tiny rehearsal, shortened to 24 steps, run
by `genbac run` in two variants (Bavarian entering at 75% or 50%, LR 3e-3 or 1e-3), plus a run that
fails at a step and one killed mid-phase, tracked in a SQLite store and in a real `mlflow server`.
Every number the commands print is checked against what MLflow holds, read here with MlflowClient.
"""

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from genbac.cli import main
from test_run import short_spec, wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
SPEC = "examples/tiny-rehearsal.genba"
LANGUAGES = ["en", "de", "bar"]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def variant_b(text: str) -> str:
    out = text.replace("enter  = 75%", "enter  = 50%").replace("lr = 3e-3", "lr = 1e-3")
    assert out.count("50%") == 1 and "lr = 1e-3" in out
    return out


def project_copy(dst: Path) -> Path:
    # the converted real-weights model (examples/models) is large and not needed here
    shutil.copytree(ROOT / "examples", dst / "examples", ignore=shutil.ignore_patterns("models"))
    return dst


def genbac_env(cwd) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(Path(cwd) / ".hf"), "PYTHONWARNINGS": "ignore",
           # a 64-wide model gains nothing from two threads, and on a busy 2-core machine torch's
           # spinning threads made a 24-step run take 79 s instead of 33 s
           "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_genbac(*args, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "genbac", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=genbac_env(cwd), **kw)


def cli(*args):
    """`genbac ARGS` in this process (MLflow is imported once for the module): code, out, err."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def compare_json(uri, *targets):
    code, out, err = cli("compare", *targets, "--format", "json", "--tracking-uri", uri)
    assert code == 0, err
    return json.loads(out)


def parent_id(project: Path, out: str) -> str:
    return json.loads((project / out / "work/state.json").read_text())["mlflow"]["parent"]


def spec_hash(project: Path, out: str) -> str:
    return json.loads((project / out / "plan.json").read_text())["spec_hash"]


def client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def history(uri, run_id, key):
    return sorted((m.step, m.value) for m in client(uri).get_metric_history(run_id, key))


def run_two_variants(project: Path, uri: str) -> dict:
    """Variants A and B of the shortened rehearsal, run one after the other into `uri`."""
    spec = project / SPEC
    short = short_spec(spec.read_text())
    (project / "examples/a.genba").write_text(short)
    (project / "examples/b.genba").write_text(variant_b(short))
    runs = {}
    secret = urllib.parse.urlsplit(uri).password
    for name in ("a", "b"):
        r = run_genbac("run", f"examples/{name}.genba", "-o", f"out/{name}", "--tracking-uri", uri,
                       cwd=project)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        runs[name] = parent_id(project, f"out/{name}")
        if secret:  # a URI's password reaches neither the output nor the state file
            state = (project / f"out/{name}/work/state.json").read_text()
            assert secret not in r.stdout + r.stderr + state
            assert ":***@127.0.0.1:" in json.loads(state)["mlflow"]["tracking_uri"]
    return runs


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    """Four runs in one SQLite store, oldest first:
    a  variant A, finished            b  variant B, finished
    f  variant A again (the same spec hash), failing at its first step: Bavarian's data is cut off
    k  variant A checkpointing every 4 steps, killed with SIGKILL in phase 1"""
    project = project_copy(tmp_path_factory.mktemp("compare"))
    uri = f"sqlite:///{project}/mlflow.db"
    started = time.perf_counter()
    runs = run_two_variants(project, uri)

    data = project / "examples/data/bar/train.jsonl"
    good = data.read_bytes()
    data.write_bytes(good + b'{"text": "cut off\n')  # there (preflight passes), not readable
    try:
        r = run_genbac("run", "examples/a.genba", "-o", "out/f", "--tracking-uri", uri,
                       cwd=project)
    finally:
        data.write_bytes(good)
    assert r.returncode == 2 and "tokenizer: " in r.stderr, r.stderr[-3000:]
    runs["f"] = parent_id(project, "out/f")

    (project / "examples/k.genba").write_text(
        (project / "examples/a.genba").read_text().replace("checkpoint every 20 steps",
                                                           "checkpoint every 4 steps"))
    assert run_genbac("compile", "examples/k.genba", "-o", "out/k", cwd=project).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "genbac", "run", "out/k", "--tracking-uri",
                             uri], cwd=project, env=genbac_env(project),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = project / "out/k/work/checkpoints/step_00000004"
    wait_for(target.exists, proc, "the checkpoint of step 4")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads((project / "out/k/work/state.json").read_text())
    assert "prepare-bar-val" in state["done"] and "phase-1" not in state["done"], state["done"]
    runs["k"] = parent_id(project, "out/k")
    print(f"sqlite store: 4 runs in {time.perf_counter() - started:.0f} s")
    return {"project": project, "uri": uri, "runs": runs,
            "hash": {n: spec_hash(project, f"out/{n}") for n in ("a", "b", "k")}}


@pytest.fixture(scope="module")
def server_store(mlflow_server, tmp_path_factory):
    project = project_copy(tmp_path_factory.mktemp("compare-server"))
    # with a user and password in the URI, as a server behind basic auth takes them (this one
    # ignores them)
    uri = mlflow_server.replace("http://", "http://genbac:s3cr3t-p4ss@")
    return {"project": project, "uri": uri, "runs": run_two_variants(project, uri)}


@pytest.fixture(params=["sqlite", "server"])
def store(request):
    return request.getfixturevalue(f"{request.param}_store")


# --------------------------------------------------------------------------------------------------
# compare: the spec
# --------------------------------------------------------------------------------------------------

def test_only_the_differing_spec_fields_with_old_and_new_values(store):
    a, b = store["runs"]["a"], store["runs"]["b"]
    doc = compare_json(store["uri"], a, b)
    assert doc["shown"] == "differing"
    assert [r["run_id"] for r in doc["runs"]] == [a, b]
    assert {f["field"]: f["values"] for f in doc["spec"]["fields"]} == {
        "languages.bar.enter.percent": ["75.0", "50.0"],
        "train.optimizer.lr": ["0.003", "0.001"]}
    assert doc["spec"]["differing"] == 2 and doc["spec"]["total"] > 50
    # the consequence: the phase boundary moves from step 17 to step 12
    assert {f["field"]: f["values"] for f in doc["plan"]["fields"]} == {
        "phases": ["0–17, 17–23", "0–12, 12–23"]}

    code, text, _ = cli("compare", a, b, "--tracking-uri", store["uri"])
    assert code == 0
    assert re.search(r"languages\.bar\.enter\.percent +75\.0 +50\.0\n", text)
    assert re.search(r"train\.optimizer\.lr +0\.003 +0\.001\n", text)
    assert "spec: 2 of" in text and "train.sequence" not in text


def test_all_shows_the_identical_fields_too(sqlite_store):
    a, b = sqlite_store["runs"]["a"], sqlite_store["runs"]["b"]
    doc = compare_json(sqlite_store["uri"], a, b, "--all")
    fields = {f["field"]: f["values"] for f in doc["spec"]["fields"]}
    assert doc["shown"] == "all" and len(fields) == doc["spec"]["total"] > 2
    assert fields["train.sequence"] == ["128", "128"]
    assert fields["languages.bar.sources"] == ['["data/bar/train.jsonl"]'] * 2
    assert fields["train.optimizer.lr"] == ["0.003", "0.001"]
    assert len(doc["plan"]["fields"]) == doc["plan"]["total"] > 1
    code, text, _ = cli("compare", a, b, "--all", "--tracking-uri", sqlite_store["uri"])
    assert re.search(r"train\.sequence +128 +128\n", text)


def test_spec_fields_are_named_and_valued_as_the_params_but_never_cut(sqlite_store):
    uri, runs = sqlite_store["uri"], sqlite_store["runs"]
    # the spec's params; the others are the plan's estimate and the step-0 baseline
    params = {k: v for k, v in client(uri).get_run(runs["a"]).data.params.items()
              if not k.startswith(("estimate.", "baseline."))}
    fields = {f["field"]: f["values"] for f in
              compare_json(uri, runs["a"], runs["b"], "--all")["spec"]["fields"]}
    assert fields.keys() >= params.keys()
    assert all(fields[k][0] == v for k, v in params.items())
    # the rehearsal has no value over the params' 500 characters; a list of 60 sources would
    from genbac.runtime.tracking import flatten

    files = [f"data/en/{i:03}.jsonl" for i in range(60)]
    spec = {"languages": [{"code": "en", "sources": files}]}
    assert len(flatten("", spec, {})["languages.en.sources"]) == 500
    assert json.loads(flatten("", spec, {}, limit=None)["languages.en.sources"]) == files


# --------------------------------------------------------------------------------------------------
# compare: the outcome
# --------------------------------------------------------------------------------------------------

def expected_outcome(uri, run_id):
    """The outcome computed here, straight from MLflow."""
    run = client(uri).get_run(run_id)
    final = {c: history(uri, run_id, f"val_loss/{c}")[-1][1] for c in LANGUAGES}
    best = {c: min(v for _, v in history(uri, run_id, f"val_loss/{c}")) for c in LANGUAGES}
    start = {c: dict(history(uri, run_id, f"val_loss/{c}")).get(0) for c in LANGUAGES}
    tokens = {c: history(uri, run_id, f"tokens/{c}")[-1][1] for c in LANGUAGES}
    rates = sorted(v for _, v in history(uri, run_id, "tokens_per_sec"))
    median = (rates[len(rates) // 2] if len(rates) % 2 else
              (rates[len(rates) // 2 - 1] + rates[len(rates) // 2]) / 2)
    wall = (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else None
    return {"run_id": run_id, "status": run.info.status, "start_val_loss": start,
            "final_val_loss": final,
            "change_val_loss": {c: final[c] - start[c] for c in LANGUAGES},
            "best_val_loss": best, "tokens": tokens,
            "tokens_per_sec": median, "wall_time_s": wall}


def test_outcome_numbers_are_what_mlflow_holds(store):
    uri, a, b = store["uri"], store["runs"]["a"], store["runs"]["b"]
    doc = compare_json(uri, a, b)
    assert doc["languages"] == LANGUAGES
    for got, run_id in zip(doc["outcome"], (a, b)):
        assert got.pop("stopped_at") is None
        assert got == expected_outcome(uri, run_id)
    # the shortened rehearsal: 10,752 English, 10,752 German, 2,048 Bavarian tokens in both runs
    assert doc["outcome"][0]["tokens"] == {"en": 10752.0, "de": 10752.0, "bar": 2048.0}

    code, text, _ = cli("compare", a, b, "--tracking-uri", uri)
    want = expected_outcome(uri, a)
    row = re.search(r"val loss de \(final\) +(\S+) +(\S+)\n", text)
    assert row.group(1) == f"{want['final_val_loss']['de']:.4f}"
    assert re.search(r"tokens bar +2,048 +2,048\n", text)
    # the change from the step-0 baseline: the rehearsal learns every language
    change = want["change_val_loss"]["de"]
    assert change < 0
    assert re.search(r"val loss de \(start\) +(\S+) ", text).group(1) == (
        f"{want['start_val_loss']['de']:.4f}")
    shown = f"{change:+.4f} (gain)".replace("-", "−")
    assert re.search(rf"change de \(final − start\) +{re.escape(shown)} ", text)
    _, markdown, _ = cli("compare", a, b, "--tracking-uri", uri, "--format", "markdown")
    assert re.search(r"\| change en \(final − start\) \| −\d\.\d{4} \(gain\) \|", markdown)
    assert re.search(r"status +FINISHED +FINISHED\n", text)
    assert f"{want['tokens_per_sec']:,.0f}" in re.search(r"throughput.*", text).group(0)


def test_unfinished_runs_show_where_they_stopped(sqlite_store):
    uri, runs = sqlite_store["uri"], sqlite_store["runs"]
    doc = compare_json(uri, runs["a"], runs["k"], runs["f"])
    a, k, f = doc["outcome"]
    phase1 = next(r for r in client(uri).search_runs(
        [client(uri).get_run(runs["k"]).info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{runs['k']}' and tags.`genbac.step` = 'phase-1'"))
    last = history(uri, phase1.info.run_id, "loss")[-1][0]
    assert 4 <= last < 17
    # MLflow still says RUNNING (SIGKILL left no chance to say otherwise); its lock says it is gone
    assert client(uri).get_run(runs["k"]).info.status == "RUNNING"
    assert (k["status"], k["stopped_at"], k["wall_time_s"]) == (
        "INTERRUPTED", f"phase-1 (step {last})", None)
    assert (f["status"], f["stopped_at"]) == ("FAILED", "tokenizer")
    assert f["final_val_loss"] == {c: None for c in LANGUAGES}
    assert a["stopped_at"] is None
    # k and f differ from a only where their specs do (f has a's spec)
    assert {x["field"] for x in doc["spec"]["fields"]} == {"train.checkpoint_every"}
    code, text, _ = cli("compare", runs["a"], runs["k"], "--tracking-uri", uri)
    assert re.search(rf"status +FINISHED +INTERRUPTED at phase-1 \(step {last}\)\n", text)
    assert re.search(r"wall time +\d.* +—\n", text)


# --------------------------------------------------------------------------------------------------
# naming runs
# --------------------------------------------------------------------------------------------------

def test_run_id_prefix_spec_hash_and_child_run_resolve_to_parents(sqlite_store):
    uri, runs, hashes = sqlite_store["uri"], sqlite_store["runs"], sqlite_store["hash"]
    c = client(uri)
    phase2 = next(r for r in c.search_runs(
        [c.get_run(runs["b"]).info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{runs['b']}' and tags.`genbac.step` = 'phase-2'"))
    assert client(uri).get_run(runs["f"]).data.tags["genbac.spec_hash"] == hashes["a"]
    doc = compare_json(uri, runs["a"][:12].upper(), hashes["b"][:10])
    assert [r["run_id"] for r in doc["runs"]] == [runs["a"], runs["b"]]
    # a spec hash names its latest run: f ran a's spec after a did
    doc = compare_json(uri, hashes["a"][:10], phase2.info.run_id)
    assert [r["run_id"] for r in doc["runs"]] == [runs["f"], runs["b"]]


def add_parent_run(uri, experiment_id, spec_hash):
    """A parent run as another genbac would have left it: tagged, nothing logged."""
    run = client(uri).create_run(experiment_id, tags={"genbac.spec_hash": spec_hash})
    client(uri).set_terminated(run.info.run_id)
    return run.info.run_id


def test_ambiguous_and_unknown_names_are_usage_errors(sqlite_store, tmp_path):
    # a copy of the store with two more parent runs whose spec hashes start like run a's id
    db = tmp_path / "mlflow.db"
    shutil.copy(sqlite_store["project"] / "mlflow.db", db)
    uri, runs = f"sqlite:///{db}", sqlite_store["runs"]
    experiment_id = client(uri).get_run(runs["a"]).info.experiment_id
    head = runs["a"][0]
    x = add_parent_run(uri, experiment_id, head + "ab0" + "0" * 60)
    y = add_parent_run(uri, experiment_id, head + "ab1" + "0" * 60)

    code, out, err = cli("compare", head, runs["b"], "--tracking-uri", uri)
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"'{head}' is ambiguous" in err
    # a by its id; x and y by their spec hashes (or, by chance, by their ids)
    assert all(run_id in err for run_id in (runs["a"], x, y))

    code, _, err = cli("compare", head + "ab", runs["b"], "--tracking-uri", uri)
    assert code == 2 and f"spec {head}ab0" in err and f"spec {head}ab1" in err

    assert compare_json(uri, head + "ab1", runs["b"])["runs"][0]["run_id"] == y

    code, _, err = cli("compare", "0" * 32, runs["b"], "--tracking-uri", uri)
    assert code == 2 and "no genbac run or spec hash starts with '0000" in err
    assert runs["b"] in err  # the latest runs, to pick from

    code, _, err = cli("compare", "not-a-run", runs["b"], "--tracking-uri", uri)
    assert code == 2 and "neither a run id nor a spec hash" in err
    code, _, err = cli("compare", runs["a"], runs["a"][:10], "--tracking-uri", uri)
    assert code == 2 and "the same run" in err
    code, _, err = cli("compare", runs["a"], "--tracking-uri", uri)
    assert code == 2 and "two or more runs" in err


# --------------------------------------------------------------------------------------------------
# formats and the plot
# --------------------------------------------------------------------------------------------------

def test_text_is_aligned_and_markdown_is_tables(sqlite_store):
    uri, a, b = sqlite_store["uri"], sqlite_store["runs"]["a"], sqlite_store["runs"]["b"]
    code, text, _ = cli("compare", a, b, "--tracking-uri", uri)
    outcome = text.split("\noutcome\n")[1].split("\n\nenvironment")[0].splitlines()
    header, rule, *rows = outcome
    assert header.split() == ["metric", a[:8], b[:8]]
    assert len({len(line) for line in [header, rule] + rows[:-1]}) == 1  # right-aligned numbers
    assert len(rows) == 5 * len(LANGUAGES) + 3  # start, final, change, best, tokens; 3 more

    code, md, _ = cli("compare", a, b, "--format", "markdown", "--tracking-uri", uri)
    assert code == 0
    sections = re.findall(r"^### (.*)$", md, re.M)
    assert sections[0] == "2 runs" and sections[1].startswith("spec: 2 of")
    assert sections[3] == "outcome"
    assert f"| field | {a[:8]} | {b[:8]} |\n| --- | --- | --- |\n" in md
    assert "| languages.bar.enter.percent | 75.0 | 50.0 |" in md
    assert f"| metric | {a[:8]} | {b[:8]} |\n| --- | ---: | ---: |\n" in md
    # deterministic: the same store prints the same bytes
    assert cli("compare", a, b, "--format", "markdown", "--tracking-uri", uri)[1] == md


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_writes_one_panel_per_language(sqlite_store, tmp_path):
    uri, a, b = sqlite_store["uri"], sqlite_store["runs"]["a"], sqlite_store["runs"]["b"]
    out = tmp_path / "plots/val.png"
    code, text, err = cli("compare", a, b, "--plot", str(out), "--tracking-uri", uri)
    assert code == 0 and f"wrote {out}" in err and text.startswith("2 runs")
    assert png_size(out) == (int(3 * 4.4 * 110), int(3.6 * 110))  # 3 languages side by side
    # marked on each run's curves: its phase boundary (dashed) and, in Bavarian's panel, the step
    # Bavarian enters (dotted): step 17 for a (75%), 12 for b (50%)
    from genbac.runtime.compare import _marks

    project = sqlite_store["project"]
    plans = {n: json.loads((project / f"out/{n}/plan.json").read_text()) for n in "ab"}
    assert _marks(plans["a"], "bar") == [(17, "--"), (17, ":")]
    assert _marks(plans["b"], "bar") == [(12, "--"), (12, ":")]
    assert _marks(plans["b"], "en") == [(12, "--")] and _marks(None, "en") == []


# --------------------------------------------------------------------------------------------------
# genbac runs
# --------------------------------------------------------------------------------------------------

def test_runs_lists_parents_newest_first_with_status_and_step(sqlite_store):
    uri, runs = sqlite_store["uri"], sqlite_store["runs"]
    code, out, err = cli("runs", "--format", "json", "--tracking-uri", uri)
    assert code == 0, err
    listed = json.loads(out)["runs"]
    assert [r["run_id"] for r in listed] == [runs["k"], runs["f"], runs["b"], runs["a"]]
    status = {r["run_id"]: (r["status"], r["stopped_at"]) for r in listed}
    assert status[runs["a"]] == status[runs["b"]] == ("FINISHED", None)
    assert status[runs["f"]] == ("FAILED", "tokenizer")
    assert status[runs["k"]][0] == "INTERRUPTED"
    assert status[runs["k"]][1].startswith("phase-1 (step ")
    a = next(r for r in listed if r["run_id"] == runs["a"])
    want = expected_outcome(uri, runs["a"])
    assert a["final_val_loss"] == want["final_val_loss"]
    assert a["tokens_per_sec"] == want["tokens_per_sec"]
    assert a["spec_hash"] == sqlite_store["hash"]["a"]

    code, text, _ = cli("runs", "--tracking-uri", uri)
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["run", "experiment"] and len(lines) == 2 + 4
    assert lines[2].startswith(f"  {runs['k'][:8]}") and "INTERRUPTED at phase-1 (step" in lines[2]
    assert "FAILED at tokenizer" in lines[3] and "FINISHED" in lines[4]
    assert f"{want['final_val_loss']['bar']:.4f}" in lines[5]

    code, md, _ = cli("runs", "--format", "markdown", "--experiment", "tiny-rehearsal",
                      "--tracking-uri", uri)
    assert md.startswith("| run | experiment | name | started (UTC) | spec | status | "
                         "val loss bar | change bar |")
    assert len(md.splitlines()) == 2 + 4
    code, _, err = cli("runs", "--experiment", "tiny", "--tracking-uri", uri)
    assert code == 2 and "no experiment called 'tiny'" in err and "tiny-rehearsal" in err


def test_runs_are_named_by_what_differs_from_the_previous_run(sqlite_store):
    """The first run of the experiment is named after it; each later one after the spec fields
    that differ from the run before it (f repeats a's spec after b; k changes f's interval)."""
    uri, runs = sqlite_store["uri"], sqlite_store["runs"]
    names = {k: client(uri).get_run(v).info.run_name for k, v in runs.items()}
    assert names == {"a": "tiny-rehearsal", "b": "bar.enter=50%, lr=0.001",
                     "f": "bar.enter=75%, lr=0.003", "k": "checkpoint_every=4"}
    listed = json.loads(cli("runs", "--format", "json", "--tracking-uri", uri)[1])["runs"]
    assert [r["name"] for r in listed] == [names[k] for k in "kfba"]
    # the spec's opening comment is the run's description in MLflow
    note = client(uri).get_run(runs["a"]).data.tags["mlflow.note.content"]
    assert note.startswith("A tiny rehearsal of the GENBA recipe") and "#" not in note
    # compare labels each run by its values of the fields that differ among the compared runs
    doc = compare_json(uri, runs["a"], runs["b"], runs["k"])
    assert [r["differs_by"] for r in doc["runs"]] == [
        "bar.enter=75%, lr=0.003, checkpoint_every=20",
        "bar.enter=50%, lr=0.001, checkpoint_every=20",
        "bar.enter=75%, lr=0.003, checkpoint_every=4"]


def test_runs_on_a_server(server_store):
    code, out, err = cli("runs", "--format", "json", "--tracking-uri", server_store["uri"])
    assert code == 0, err
    listed = [(r["run_id"], r["status"]) for r in json.loads(out)["runs"]]
    runs = server_store["runs"]
    assert listed == [(runs["b"], "FINISHED"), (runs["a"], "FINISHED")]


# --------------------------------------------------------------------------------------------------
# no store, and staying light
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["runs"], ["compare", "abc", "def"]])
def test_no_store_is_a_clear_error_and_creates_nothing(command, tmp_path, unused_port):
    r = run_genbac(*command, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"no MLflow store at {tmp_path / 'mlflow.db'}" in r.stderr
    assert list(tmp_path.iterdir()) == []  # no empty mlflow.db, no mlruns/

    (tmp_path / "notes.db").write_text("not a database")
    r = run_genbac(*command, "--tracking-uri", f"sqlite:///{tmp_path}/notes.db", cwd=tmp_path)
    assert r.returncode == 2 and "is not an MLflow store" in r.stderr
    assert (tmp_path / "notes.db").read_text() == "not a database"

    uri = f"http://127.0.0.1:{unused_port}"
    r = run_genbac(*command, "--tracking-uri", uri, cwd=tmp_path)
    assert r.returncode == 2 and f"cannot reach the MLflow server at {uri}" in r.stderr
    assert "Traceback" not in r.stderr


PROBE = """
import json, sys, time
started = time.perf_counter()
from genbac.cli import main
code = main(sys.argv[1:])
heavy = [m for m in ("torch", "transformers", "datasets", "mlflow") if m in sys.modules]
print(json.dumps({"code": code, "heavy": heavy, "seconds": time.perf_counter() - started}),
      file=sys.stderr)
"""


def test_compare_and_runs_import_mlflow_but_not_the_training_stack(sqlite_store):
    uri, a, b = sqlite_store["uri"], sqlite_store["runs"]["a"], sqlite_store["runs"]["b"]
    for args in (["compare", a, b], ["runs"]):
        r = subprocess.run([sys.executable, "-c", PROBE, *args, "--tracking-uri", uri],
                           capture_output=True, text=True, cwd=ROOT)
        result = json.loads(r.stderr.strip().splitlines()[-1])
        assert (result["code"], result["heavy"]) == (0, ["mlflow"]), r.stderr[-2000:]
        print(f"genbac {args[0]}: {result['seconds']:.2f} s in-process")


def test_environment_differences_are_shown(sqlite_store):
    """Runs on one machine with one interpreter: nothing differs. A run recorded with another torch
    (its tag and its requirements artifact) shows both, and only them."""
    uri, a, b = sqlite_store["uri"], sqlite_store["runs"]["a"], sqlite_store["runs"]["b"]
    env = compare_json(uri, a, b)["environment"]
    assert env["differing"] == 0 and env["total"] > 20  # the tags and every installed package
    # the device without the memory free at the start, which varies from run to run
    device = compare_json(uri, a, b, "--all")["environment"]["fields"][0]
    assert device["field"] == "device" and "GiB available" not in device["values"][0]
    c = client(uri)
    old = c.get_run(b).data.tags["genbac.env.torch"]
    c.set_tag(b, "genbac.env.torch", "2.12.0+cpu")
    try:
        doc = compare_json(uri, a, b)
        assert doc["environment"]["fields"] == [
            {"field": "torch", "values": [old, "2.12.0+cpu"]}]
        code, text, _ = cli("compare", a, b, "--tracking-uri", uri)
        assert re.search(r"environment: 1 of \d+ facts differ", text)
        assert re.search(rf"torch +{re.escape(old)} +2\.12\.0\+cpu\n", text)
    finally:
        c.set_tag(b, "genbac.env.torch", old)
