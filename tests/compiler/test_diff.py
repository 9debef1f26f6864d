"""`genbac diff`: each kind of edit is named as a cause, and its consequences match the two plans.

Every pair is tests/fixtures/diff/base.genba (written for these tests, independent of examples/) and
the same text with one edit. Expected numbers are read from the plans of both sides, so the tests
check that the diff reports what the planner decided; the entry-point test also checks one number
worked out by hand (in the fixture's header comment).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from genbac.cli import main
from genbac.compiler.compile import plan_spec
from genbac.compiler.diff import (_apart, _tokens, compare, diff_plans, drawn_tokens, render_json,
                                  render_text)

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "diff" / "base.genba"
BASE = FIXTURE.read_text()


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def plans(new_text: str):
    return plan_spec(BASE, "old.genba")[0], plan_spec(new_text, "new.genba")[0]


def by_key(changes):
    keys = [c.key for c in changes]
    assert len(keys) == len(set(keys)), keys  # one change per thing
    return {c.key: c for c in changes}


def causes(changes):
    return [c for c in changes if c.kind == "cause"]


# --------------------------------------------------------------------------------------------------
# one edit each
# --------------------------------------------------------------------------------------------------

def test_entry_point_moved():
    old, new = plans(edit("enter = 80%", "enter = 70%"))
    changes = diff_plans(old, new)
    assert [c.text for c in causes(changes)] == ["hsb: enters at 70% (was 80%)"]
    c = by_key(changes)
    # worked by hand: 38,147 steps; the boundary moves from round(0.8 x 38,147) = 30,518 to
    # round(0.7 x 38,147) = 26,703, so phase 2 grows from 7,629 to 11,444 steps
    assert (c["phase.2.steps"].old, c["phase.2.steps"].new) == (7_629, 11_444)
    assert c["phase.2.steps"].text == "phase 2 grows from 7,629 to 11,444 steps"
    assert c["phase.1.steps"].text == "phase 1 shrinks from 30,518 to 26,703 steps"
    assert (c["phase.2.start"].old, c["phase.2.start"].new) == (30_518, 26_703)
    # and the same read from the plans
    assert c["phase.2.steps"].new == new.schedule.phases[1].steps
    drawn = c["language.hsb.drawn_during"]
    assert (drawn.old, drawn.new) == (7_629 * 1_048_576, 11_444 * 1_048_576)
    assert drawn.text == "Upper Sorbian now spread over 12B tokens of training instead of 8B"
    assert c["language.hsb.first_step"].new == new.schedule.languages[2].first_step == 26_703
    hsb_weight = c["phase.2.hsb"]
    assert hsb_weight.old["weight"] == old.schedule.phases[1].share("hsb").weight
    assert hsb_weight.new["weight"] == new.schedule.phases[1].share("hsb").weight
    # the total, the model and the estimates do not move
    assert not {"schedule.total_steps", "growth.parameters", "estimate.seconds"} & c.keys()
    report = compare(old, new, old_source="a", new_source="b")
    assert any(u.startswith("parameters 1,479,100,416") for u in report.unchanged)
    assert any(u.startswith("estimated time") for u in report.unchanged)


def test_budget_changed():
    old, new = plans(edit("tokens = 100M", "tokens = 150M"))
    changes = diff_plans(old, new)
    assert [(c.key, c.old, c.new) for c in causes(changes)] == [
        ("language.hsb.tokens", 100_000_000, 150_000_000)]
    assert causes(changes)[0].text == "hsb: budget 100M → 150M"
    c = by_key(changes)
    for i, code in enumerate(["en", "de", "hsb"]):  # the ~ budgets give way to the larger hsb
        change = c[f"language.{code}.compiled_tokens"]
        assert (change.old, change.new) == (old.schedule.languages[i].compiled_tokens,
                                            new.schedule.languages[i].compiled_tokens)
    assert abs(c["language.hsb.compiled_tokens"].new - 150e6) <= 1_048_576  # within one step
    share = c["phase.2.hsb"]
    assert share.new["tokens"] == new.schedule.phases[1].share("hsb").tokens
    assert share.new["weight"] > share.old["weight"]
    assert "phase.2.steps" not in c  # the window did not move
    assert "growth.parameters" not in c


def test_growth_changed_layers_and_placement():
    old, new = plans(edit("add = 4  init", "add = 8  place = top  init"))
    changes = diff_plans(old, new)
    assert [c.key for c in causes(changes)] == ["growth.add", "growth.placement"]
    assert [c.text for c in causes(changes)] == ["growth add: +4 blocks → +8 blocks",
                                                 "growth placement: interleaved → on top"]
    c = by_key(changes)
    assert (c["growth.layers"].old, c["growth.layers"].new) == (20, 24)
    assert c["growth.layer_map"].new == "[0-15] +15 +15 +15 +15 +15 +15 +15 +15"
    assert c["growth.new_indices"].new == list(range(16, 24))
    g = new.growth
    assert c["growth.parameters"].new == g.parameters == g.base_parameters + 8 * g.layer_parameters
    assert c["growth.parameters"].old == old.growth.parameters
    assert f"{old.growth.parameters:,} → {g.parameters:,}" in c["growth.parameters"].text
    # a larger model costs more compute for the same tokens
    assert c["estimate.flops"].new > c["estimate.flops"].old
    assert (c["estimate.seconds"].old, c["estimate.seconds"].new) == (old.estimate.seconds,
                                                                      new.estimate.seconds)
    assert "schedule.total_steps" not in c


def test_hardware_changed():
    old, new = plans(edit("hardware = h100 x 8", "hardware = a100 x 16"))
    changes = diff_plans(old, new)
    assert [c.text for c in causes(changes)] == ["hardware: h100 x 8 → a100 x 16"]
    c = by_key(changes)
    assert set(c) == {"hardware", "estimate.seconds", "estimate.energy_kwh"}  # same FLOPs
    seconds = c["estimate.seconds"]
    assert (seconds.old, seconds.new) == (old.estimate.seconds, new.estimate.seconds)
    # 16 A100s at 312 TF against 8 H100s at 989.4 TF, both at the assumed 40%
    assert seconds.new / seconds.old == pytest.approx(8 * 989.4 / (16 * 312))
    assert seconds.text.startswith("estimated time: 34.7 h → ")


def test_batch_changed():
    old, new = plans(edit("batch     = 256", "batch     = 512"))
    changes = diff_plans(old, new)
    assert [c.text for c in causes(changes)] == ["batch: 256 sequences → 512 sequences"]
    c = by_key(changes)
    assert (c["schedule.tokens_per_step"].old, c["schedule.tokens_per_step"].new) == (
        1_048_576, 2_097_152)
    assert c["schedule.total_steps"].new == new.schedule.total_steps == 19_073  # round(38,146.97/2)
    assert c["phase.2.steps"].new == new.schedule.phases[1].steps
    # the boundary stays at 80% of the run: its step moved only because the run got shorter
    assert "phase.2.start" not in c


def test_numbers_keep_the_digits_their_difference_needs():
    # 3 digits would print 20B and 19.9B for two values that both round to 19.95B
    assert _apart(19_950_014_464, 19_949_490_176, _tokens) == ("19.95B", "19.9495B")
    assert _apart(80_003_072, 79_994_880, _tokens) == ("80.003M", "79.995M")
    assert _apart(7_629 * 1_048_576, 11_444 * 1_048_576, _tokens) == ("8B", "12B")
    assert _apart(100e6, 100e6, _tokens) == ("100M", "100M")


def test_learning_rate_changed():
    old, new = plans(edit("lr = 3e-4", "lr = 1e-4"))
    changes = diff_plans(old, new)
    assert [(c.key, c.old, c.new, c.text) for c in changes] == [
        ("train.optimizer.lr", 3e-4, 1e-4, "adamw learning rate: 0.0003 → 0.0001")]
    report = compare(old, new, old_source="a", new_source="b")
    assert [u.split(" ")[0] for u in report.unchanged] == ["total", "phases", "parameters",
                                                           "estimated", "estimated"]


def test_language_added():
    french = '  language fr "French" { data = "fr.jsonl"  tokens = 1B  enter = 50% }\n'
    text = edit("  train {", french + "  train {")
    old, new = plans(text)
    changes = diff_plans(old, new)
    assert [c.text for c in causes(changes)] == [
        'language added: fr "French", 1B tokens, from 50% to 100% of training']
    c = by_key(changes)
    assert (c["schedule.phases"].old, c["schedule.phases"].new) == (2, 3)
    french = new.schedule.languages[3]
    assert c["language.fr.compiled_tokens"].new == french.compiled_tokens
    assert f"first drawn at step {french.first_step:,}" in c["language.fr.compiled_tokens"].text
    # the phase from 50% is new; the old phase 2 (from 80%) continues as phase 3 and now draws fr
    assert c["phase.2"].old is None and c["phase.2"].text.startswith("new phase 2: ")
    assert c["phase.3.fr"].old is None
    assert c["phase.3.fr"].new["tokens"] == new.schedule.phases[2].share("fr").tokens
    assert "(was phase 2)" in c["phase.3.fr"].text
    assert drawn_tokens(new, "fr") == sum(p.steps for p in new.schedule.phases[1:]) * 1_048_576


def test_language_removed_and_reordered():
    hsb = '  language hsb "Upper Sorbian" { data = "hsb.jsonl"  tokens = 100M  enter = 80% }\n'
    english = '  language en  "English"       { data = "en.jsonl"   tokens = ~20B }\n'
    text = edit(english, "", edit(hsb, ""))
    text = edit("  train {", english + "  train {", text)  # now after German
    old, new = plans(text)
    c = by_key(diff_plans(old, new))
    assert c["language.hsb"].text == "language removed: hsb (Upper Sorbian, 100M tokens)"
    assert (c["languages.order"].old, c["languages.order"].new) == (["en", "de"], ["de", "en"])
    assert (c["schedule.phases"].old, c["schedule.phases"].new) == (2, 1)
    assert c["phase.2"].new is None  # the old phase 2 has no successor


@pytest.mark.parametrize("text", [
    edit("# The old side", "#   The   old side,  re-worded"),
    edit("  hardware = h100 x 8\n", "\n\n  hardware   =   h100 x 8   # the same, spaced out\n"),
    edit("tokens = 100M", "tokens = 100_000K"),  # the same number, written differently
])
def test_only_formatting_or_comments(text):
    old, new = plans(text)
    report = compare(old, new, old_source="a", new_source="b", identical_text=False)
    assert report.same_experiment and report.changes == ()
    assert render_text(report) == (
        f"a → b: no change to the experiment (same spec hash {old.spec_hash[:12]}); only "
        "formatting/comments (or how values are written) differ\n")


def test_identical_texts():
    old, new = plans(BASE)
    report = compare(old, new, old_source="a", new_source="b", identical_text=True)
    assert render_text(report) == "a → b: identical\n"
    assert json.loads(render_json(report))["result"] == "identical"


def test_json_carries_every_change():
    old, new = plans(edit("enter = 80%", "enter = 70%"))
    report = compare(old, new, old_source="a", new_source="b")
    data = json.loads(render_json(report))
    assert data["result"] == "different"
    assert data["old"]["spec_hash"] == old.spec_hash and data["new"]["spec_hash"] == new.spec_hash
    assert [c["key"] for c in data["changes"]] == [c.key for c in report.changes]
    assert data["changes"][0] == {"kind": "cause", "key": "language.hsb.enter",
                                  "old": {"percent": 80.0, "tokens": None},
                                  "new": {"percent": 70.0, "tokens": None},
                                  "text": "hsb: enters at 70% (was 80%)"}


def test_output_is_deterministic():
    text = edit("add = 4  init", "add = 8  init")
    first = render_text(compare(*plans(text), old_source="a", new_source="b"))
    assert first == render_text(compare(*plans(text), old_source="a", new_source="b"))


# --------------------------------------------------------------------------------------------------
# the command: exit status, formats, REV:PATH
# --------------------------------------------------------------------------------------------------

@pytest.fixture
def pair(tmp_path):
    old, new = tmp_path / "old.genba", tmp_path / "new.genba"
    old.write_text(BASE)
    return old, new


def test_exit_status(pair, capsys):
    old, new = pair
    new.write_text(BASE)
    assert main(["diff", str(old), str(new)]) == 0
    assert capsys.readouterr().out.endswith(": identical\n")
    new.write_text(edit("# The old side", "# The base side"))
    assert main(["diff", str(old), str(new)]) == 0
    assert "only formatting/comments" in capsys.readouterr().out
    new.write_text(edit("enter = 80%", "enter = 70%"))
    assert main(["diff", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert "hsb: enters at 70% (was 80%)" in out and "phase 2 grows from 7,629 to 11,444" in out


def test_spec_with_errors_is_trouble_not_a_difference(pair, capsys):
    old, new = pair
    new.write_text(edit("enter = 80%", "enter = 80%  colour = blue"))
    assert main(["diff", str(old), str(new)]) == 2
    err = capsys.readouterr().err
    assert f"{new}:9:" in err.replace("\\", "/")  # file:line:col of the diagnostic
    assert f"genbac: error: cannot diff: {new} has errors" in err


def test_usage_errors(pair, capsys):
    old, _ = pair
    assert main(["diff", str(old), str(old.parent / "missing.genba")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("fmt,first", [("markdown", "### What changed: "), ("json", "{")])
def test_formats(pair, capsys, fmt, first):
    old, new = pair
    new.write_text(edit("lr = 3e-4", "lr = 1e-4"))
    assert main(["diff", "--format", fmt, str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(first)
    assert "adamw learning rate: 0.0003 → 0.0001" in out


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def new_repo(tmp_path: Path) -> Path:
    """An empty git repository with a specs/ folder, on branch main."""
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    return repo


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_revision_paths(tmp_path, monkeypatch, capsys):
    repo = new_repo(tmp_path)
    spec = repo / "specs" / "exp.genba"
    spec.write_text(BASE)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    spec.write_text(edit("add = 4  init", "add = 8  init"))
    monkeypatch.chdir(repo / "specs")  # REV:PATH is from the root; REV:./PATH from here

    assert main(["diff", "main:specs/exp.genba", "exp.genba"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("main:specs/exp.genba → exp.genba: the experiment changed")
    assert "growth add: +4 blocks → +8 blocks" in out
    assert main(["diff", "HEAD:./exp.genba", "main:specs/exp.genba"]) == 0
    assert capsys.readouterr().out.endswith(": identical\n")

    git(repo, "commit", "-q", "-am", "grow more")
    assert main(["diff", "HEAD~1:specs/exp.genba", "HEAD:specs/exp.genba"]) == 1
    capsys.readouterr()
    for bad, why in [("nosuchrev:specs/exp.genba", "invalid object name 'nosuchrev'"),
                     ("main:specs/missing.genba", "does not exist in 'main'"),
                     ("main:specs", "specs is not a file in main"),
                     (":exp.genba", "expected a file or REV:PATH")]:
        assert main(["diff", bad, "exp.genba"]) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("genbac: error: ") and why in err, err
        assert "Traceback" not in err


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_revision_reads_imports_from_the_same_revision(tmp_path, monkeypatch, capsys):
    repo = new_repo(tmp_path)
    exp = edit("  hardware = h100 x 8\n", "")
    exp = exp.replace("experiment", 'import "hw.genba"\nexperiment', 1)
    (repo / "specs" / "exp.genba").write_text(exp)
    (repo / "specs" / "hw.genba").write_text("hardware = h100 x 8\n")
    (repo / "specs" / "escape.genba").write_text('import "../../outside.genba"\n' + BASE)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    (repo / "specs" / "hw.genba").write_text("hardware = a100 x 16\n")  # only the fragment changes
    monkeypatch.chdir(repo)

    assert main(["diff", "main:specs/exp.genba", "specs/exp.genba"]) == 1
    out = capsys.readouterr().out
    assert "- hardware: h100 x 8 → a100 x 16" in out  # the old side imported the old fragment
    git(repo, "commit", "-q", "-am", "a100")
    assert main(["diff", "main~1:specs/exp.genba", "main:specs/exp.genba"]) == 1
    assert "- hardware: h100 x 8 → a100 x 16" in capsys.readouterr().out
    # the same experiment as the fixture written in one file: same hash, not identical files
    (tmp_path / "base.genba").write_text(BASE)
    assert main(["diff", "main~1:specs/exp.genba", str(tmp_path / "base.genba")]) == 0
    assert "no change to the experiment" in capsys.readouterr().out

    assert main(["diff", "main:specs/escape.genba", "specs/exp.genba"]) == 2
    err = capsys.readouterr().err
    assert "error[GB107]: import '../../outside.genba' leaves the repository" in err
    assert "main:specs/escape.genba:1:8" in err
