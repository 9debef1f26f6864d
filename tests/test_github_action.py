"""action.yml, genbac's GitHub Action, run step by step as a runner would, against scratch git
repositories: a pull request with a spec error fails with an annotation at its line, a clean one
passes, a spec out of fmt's layout fails with the diff, and the pull request carries ONE comment
however often it is pushed. `gh` is tests/fake_gh.py (GitHub's API cannot be reached from here);
everything else (git, bash, genbac) is real.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
WORKFLOW = yaml.safe_load((ROOT / "examples" / "github" / "genbac-review.yml").read_text())
BASE = (ROOT / "tests" / "fixtures" / "diff" / "base.genba").read_text()
MARKER = "<!-- genbac-review -->"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def formatted(text: str) -> str:
    from genbac.spec.format import format_source

    return format_source(text, "x.genba")


@pytest.fixture
def repo(tmp_path):
    """A specs-only repository: `main` with one clean spec, and a `feature` branch off it."""
    repo = tmp_path / "specs-repo"
    (repo / "specs").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    (repo / "specs" / "exp.genba").write_text(formatted(BASE))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "feature")
    return repo


def commit(repo: Path, path: str, text: str) -> None:
    (repo / path).write_text(text)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", f"change {path}")


# --------------------------------------------------------------------------------------------------
# a runner for the action's steps
# --------------------------------------------------------------------------------------------------

def _resolve(expression: str, context: dict) -> str:
    value = context
    for part in expression.strip().split("."):
        value = value[part]
    return str(value)


def _substitute(text: str, context: dict) -> str:
    return re.sub(r"\$\{\{\s*(.+?)\s*\}\}", lambda m: _resolve(m.group(1), context), text)


def _condition(expression: str, context: dict) -> bool:
    """The `if:` forms action.yml uses: `a == 'x'` joined by `&&`."""
    for clause in expression.split("&&"):
        left, right = (s.strip() for s in clause.split("=="))
        if _resolve(left, context) != right.strip("'"):
            return False
    return True


def run_action(repo: Path, tmp: Path, *, event: str = "pull_request", pr: int = 7,
               inputs: dict | None = None, readonly: bool = False) -> tuple[bool, str]:
    """(job passed, the log). Runs every `run` step in order with its env, as GitHub does."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    gh = bin_dir / "gh"
    gh.write_text(f"#!/bin/sh\nexec {sys.executable} {ROOT / 'tests' / 'fake_gh.py'} \"$@\"\n")
    gh.chmod(0o755)
    runner_temp = tmp / "runner-temp"
    shutil.rmtree(runner_temp, ignore_errors=True)
    runner_temp.mkdir()
    context = {
        "inputs": {k: v.get("default", "") for k, v in ACTION["inputs"].items()} | (inputs or {}),
        "github": {"action_path": str(ROOT), "event_name": event, "base_ref": "main",
                   "token": "ghs_fake", "repository": "o/specs-repo",
                   "event": {"pull_request": {"number": pr}}},
        "runner": {"temp": str(runner_temp)},
        "steps": {},
    }
    # actions/checkout of a pull request: the base branch as origin/main
    git(repo, "update-ref", "refs/remotes/origin/main", "main")
    log = []
    for index, step in enumerate(ACTION["runs"]["steps"]):
        if "uses" in step:  # actions/setup-python: the interpreter under test is on PATH
            continue
        if step["name"] == "Install genbac":
            assert "pip install" in step["run"]  # the genbac under test is installed already
            continue
        if "if" in step and not _condition(step["if"], context):
            continue
        assert step["shell"] == "bash" and "${{" not in step["run"]  # values only via env
        outputs = runner_temp / f"output-{index}"
        env = {**os.environ, "GITHUB_OUTPUT": str(outputs), "GITHUB_ACTION_PATH": str(ROOT),
               "FAKE_GH_STATE": str(tmp / "gh-state.json"),
               "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
                       f"{os.environ['PATH']}",
               **{k: _substitute(str(v), context) for k, v in step.get("env", {}).items()}}
        if readonly:
            env["FAKE_GH_READONLY"] = "1"
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                               step["run"]], cwd=repo, env=env, capture_output=True, text=True)
        log.append(f"## {step['name']}\n{done.stdout}{done.stderr}")
        if "id" in step:
            pairs = outputs.read_text().splitlines() if outputs.exists() else []
            context["steps"][step["id"]] = {"outputs": dict(p.split("=", 1) for p in pairs)}
        if done.returncode != 0:
            return False, "\n".join(log)
    return True, "\n".join(log)


def comments(tmp: Path) -> list[dict]:
    path = tmp / "gh-state.json"
    return json.loads(path.read_text())["comments"] if path.exists() else []


# --------------------------------------------------------------------------------------------------
# the action
# --------------------------------------------------------------------------------------------------

def test_a_pull_request_with_an_error_fails_with_an_annotation_and_one_comment(repo, tmp_path):
    broken = formatted(BASE).replace("enter = 80%", "enter = 170%")
    line = next(i for i, text in enumerate(broken.splitlines(), 1) if "enter = 170%" in text)
    commit(repo, "specs/exp.genba", broken)
    passed, log = run_action(repo, tmp_path)
    assert not passed
    assert re.search(rf"^::error file=specs/exp\.genba,line={line},col=\d+", log, re.M), log
    assert "::error::genbac check found errors" in log
    [comment] = comments(tmp_path)
    assert comment["body"].startswith(MARKER) and comment["pr"] == 7
    assert "**The spec has errors**" in comment["body"]
    assert comment["body"].count("is outside 0%–100%") == 1, comment["body"]  # said once

    # the author fixes it and pushes: the same comment is edited, the check passes
    commit(repo, "specs/exp.genba", formatted(BASE).replace("enter = 80%", "enter = 70%"))
    passed, log = run_action(repo, tmp_path)
    assert passed, log
    [comment] = comments(tmp_path)
    assert comment.get("edits") == 1
    assert "- hsb: enters at 70% (was 80%)" in comment["body"]
    assert "<details><summary>genbac explain" in comment["body"]


def test_a_clean_pull_request_passes(repo, tmp_path):
    commit(repo, "specs/new.genba", formatted(BASE).replace('"diff-base"', '"brand-new"'))
    passed, log = run_action(repo, tmp_path)
    assert passed, log
    assert "::error" not in log
    [comment] = comments(tmp_path)
    assert "A new experiment." in comment["body"] and "### brand-new" in comment["body"]


def test_a_spec_out_of_fmts_layout_fails_with_the_diff(repo, tmp_path):
    commit(repo, "specs/exp.genba", formatted(BASE).replace("enter = 80%", "enter   =   80%"))
    passed, log = run_action(repo, tmp_path)
    assert not passed
    assert re.search(r"^-.*enter   =   80%", log, re.M) and re.search(r"^\+.*enter = 80%", log, re.M)
    assert "::error::specs not in genbac fmt's layout" in log
    assert "::error file=" not in log  # the spec itself is fine
    [comment] = comments(tmp_path)
    assert "Not in `genbac fmt`'s layout" in comment["body"]


def test_a_read_only_token_warns_and_leaves_the_verdict_to_the_check(repo, tmp_path):
    commit(repo, "specs/exp.genba", formatted(BASE).replace("enter = 80%", "enter = 70%"))
    passed, log = run_action(repo, tmp_path, readonly=True)
    assert passed, log
    assert "::warning::could not post the genbac review comment" in log
    assert comments(tmp_path) == []


def test_a_push_only_checks(repo, tmp_path):
    commit(repo, "specs/exp.genba", formatted(BASE).replace("enter = 80%", "enter = 170%"))
    passed, log = run_action(repo, tmp_path, event="push")
    assert not passed and "::error file=specs/exp.genba" in log
    assert comments(tmp_path) == [] and "## Write the comment" not in log


def test_the_example_workflow_uses_the_action_with_history():
    steps = WORKFLOW["jobs"]["review"]["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@") and steps[0]["with"]["fetch-depth"] == 0
    assert steps[1]["uses"].endswith("/genbac@main")
    assert WORKFLOW["permissions"]["pull-requests"] == "write"
    assert set(steps[1]["with"]) <= set(ACTION["inputs"])


# --------------------------------------------------------------------------------------------------
# the comment (action/review.sh) on a pull request that does everything at once
# --------------------------------------------------------------------------------------------------

def test_the_comment_covers_changed_added_renamed_and_broken_specs(repo, tmp_path):
    (repo / "specs" / "old-name.genba").write_text(BASE.replace('"diff-base"', '"renamed"'))
    (repo / "specs" / "broken.genba").write_text(BASE.replace('"diff-base"', '"broken"'))
    (repo / "README").write_text("not a spec\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "more")
    git(repo, "branch", "-f", "main")  # all of that is on the base branch
    (repo / "specs" / "exp.genba").write_text(BASE.replace("enter = 80%", "enter = 70%"))
    (repo / "specs" / "new.genba").write_text(BASE.replace('"diff-base"', '"brand-new"'))
    git(repo, "mv", "specs/old-name.genba", "specs/new-name.genba")
    with open(repo / "specs" / "new-name.genba", "a") as f:
        f.write("# only a comment is new\n")
    (repo / "specs" / "broken.genba").write_text(BASE.replace("enter = 80%", "enter = 180%"))
    (repo / "README").write_text("changed, still not a spec\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "feature")
    git(repo, "update-ref", "refs/remotes/origin/main", "main")

    comment = tmp_path / "comment.md"
    env = {**os.environ, "BASE_REF": "origin/main", "COMMENT_FILE": str(comment), "NO_COLOR": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(ROOT / "action" / "review.sh")], cwd=repo, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    body = comment.read_text()
    assert done.stdout == body  # the log shows what is posted
    assert body.startswith(f"{MARKER}\n# genbac review\n")
    sections = {s.split("`")[1]: s for s in body.split("\n## ")[1:]}
    assert list(sections) == ["specs/broken.genba", "specs/exp.genba", "specs/new-name.genba",
                              "specs/new.genba"]  # git's order; README is no spec
    changed = sections["specs/exp.genba"]
    assert re.search(r"### What changed: `[0-9a-f]{12}:specs/exp.genba` → `specs/exp.genba`",
                     changed)  # against the merge base, shown short
    assert "- hsb: enters at 70% (was 80%)" in changed
    assert "- phase 2 grows from 7,629 to 11,444 steps" in changed
    assert "#### Estimate (assumed, not measured)" in changed  # explain, one level down
    assert "| phase | steps | count | of run | tokens | en | de | hsb | mixture |" in changed
    renamed = sections["specs/new-name.genba"]
    assert "Renamed from `specs/old-name.genba`." in renamed
    assert "no change to the experiment (same spec hash" in renamed
    added = sections["specs/new.genba"]
    assert "A new experiment." in added and "### brand-new" in added
    assert "What changed" not in added
    broken = sections["specs/broken.genba"]
    assert "**The spec has errors**" in broken and "specs/broken.genba:" in broken
    assert broken.count("is outside 0%–100%") == 1 and "What changed" not in broken
