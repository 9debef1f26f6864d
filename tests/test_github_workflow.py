"""examples/github/genbac-pr-comment.yml: a real workflow whose comment-writing script works.

The test reads the workflow, checks the parts GitHub runs (checkout with history, Python, install,
posting with `gh pr comment --body-file`), then runs the "Write the comment" step's own script with
the genbac under test against a scratch repository: a base commit on `main` and a pull-request
branch that changes one spec, adds one, renames one and breaks one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "examples" / "github" / "genbac-pr-comment.yml"
BASE = (ROOT / "tests" / "fixtures" / "diff" / "base.genba").read_text()

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def load():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["review"]
    return workflow, job, {step.get("name", step.get("uses")): step for step in job["steps"]}


def test_workflow_shape():
    workflow, job, steps = load()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers
    assert workflow["permissions"]["pull-requests"] == "write"
    assert steps["actions/checkout@v4"]["with"]["fetch-depth"] == 0
    assert "actions/setup-python@v5" in steps
    assert "pip install ." in steps["Install genbac"]["run"]
    assert steps["Write the comment"]["env"]["BASE_REF"] == "origin/${{ github.base_ref }}"
    post = steps["Post the comment"]["run"]
    assert 'gh pr comment "$PR" --body-file "$COMMENT_FILE"' in post
    for step in job["steps"]:  # untrusted names reach the shell only through the environment
        assert "${{" not in step.get("run", "")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_comment_script(tmp_path):
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    (repo / "specs" / "exp.genba").write_text(BASE)
    (repo / "specs" / "old-name.genba").write_text(BASE.replace('"diff-base"', '"renamed"'))
    (repo / "specs" / "broken.genba").write_text(BASE.replace('"diff-base"', '"broken"'))
    (repo / "README").write_text("not a spec\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "specs" / "exp.genba").write_text(BASE.replace("enter = 80%", "enter = 70%"))
    (repo / "specs" / "new.genba").write_text(BASE.replace('"diff-base"', '"brand-new"'))
    git(repo, "mv", "specs/old-name.genba", "specs/new-name.genba")
    with open(repo / "specs" / "new-name.genba", "a") as f:
        f.write("# only a comment is new\n")
    (repo / "specs" / "broken.genba").write_text(BASE.replace("enter = 80%", "enter = 180%"))
    (repo / "README").write_text("changed, still not a spec\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "feature")

    _, _, steps = load()
    step = steps["Write the comment"]
    comment = tmp_path / "comment.md"
    env = {**os.environ, **step["env"], "BASE_REF": "main", "COMMENT_FILE": str(comment),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    assert shutil.which("genbac", path=env["PATH"])  # the genbac under test
    r = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                       cwd=repo, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    body = comment.read_text()
    assert r.stdout == body  # the log shows what is posted

    assert body.startswith("<!-- genbac-review -->\n# genbac review\n")
    sections = {s.split("`")[1]: s for s in body.split("\n## ")[1:]}
    assert list(sections) == ["specs/broken.genba", "specs/exp.genba", "specs/new-name.genba",
                              "specs/new.genba"]  # git's order; README is no spec
    changed = sections["specs/exp.genba"]
    assert re.search(r"### What changed: `[0-9a-f]{12}:specs/exp.genba` → `specs/exp.genba`",
                     changed)  # against the merge base, shown short
    assert "- hsb: enters at 70% (was 80%)" in changed
    assert "- phase 2 grows from 7,629 to 11,444 steps" in changed
    assert "<details><summary>genbac explain" in changed
    assert "#### Estimate (assumed, not measured)" in changed  # explain, one level down
    assert "| phase | steps | count | of run | tokens | en | de | hsb | mixture |" in changed
    renamed = sections["specs/new-name.genba"]
    assert "Renamed from `specs/old-name.genba`." in renamed
    assert "no change to the experiment (same spec hash" in renamed
    added = sections["specs/new.genba"]
    assert "A new experiment." in added and "### brand-new" in added
    broken = sections["specs/broken.genba"]
    assert "genbac diff could not compare the two versions:" in broken
    assert "specs/broken.genba:" in broken and "**genbac explain: the spec has errors**" in broken
