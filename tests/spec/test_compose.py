"""Imports, overrides and sweeps (spec/compose.py), on real files in a temporary project."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from genbac.compiler.compile import compile_all, plan_all, plan_spec
from genbac.output import write_atomic
from genbac.spec.compose import MAX_VARIANTS, Files
from genbac.spec.diagnostics import SpecError

ROOT = Path(__file__).resolve().parents[2]
TINY = (ROOT / "examples" / "tiny-rehearsal.genba").read_text()


def tiny(enter: str = "75%", lr: str = "3e-3", seed: str = "1234") -> str:
    """The tiny rehearsal with other values for Bavarian's entry, the LR and the seed."""
    text = re.sub(r"enter(\s*)= 75%", rf"enter\1= {enter}", TINY)
    text = re.sub(r"lr = 3e-3", f"lr = {lr}", text)
    return re.sub(r"seed(\s*)= 1234", rf"seed\1= {seed}", text)


ENTER_LINE = next(i for i, line in enumerate(TINY.splitlines(), 1)
                  if re.match(r"\s*enter\s*=", line))

CATALOGUE = """\
# a shared data catalogue
language en "English" { data = "../data/en/*.jsonl"  tokens = ~82B }
language de "German"  { data = "../data/de/*.jsonl"  tokens = ~82B }
hardware = cs-2 x 1
"""

EXPERIMENT = """\
import "../shared/catalogue.genba"

experiment "genba" {
  base = llama3.1-8b from "hf:meta-llama/Llama-3.1-8B"
  grow blocks { add = 8 }
  language bar "Bavarian" { data = "../data/bar/*.jsonl"  tokens = 80M  enter = 90% }
  language de { tokens = ~81B }
  train {
    tokens = 164B
    sequence = 8192
    batch = 480
    optimizer = adamw(lr = 1.5e-4)
    checkpoint every 500 steps
  }
  hardware = cs-3 x 2
}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project root with shared/ and exp/; paths are shown relative to it, as from a shell."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shared").mkdir()
    (tmp_path / "exp").mkdir()
    return tmp_path


def write(root: Path, rel: str, text: str) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return rel


def plan_file(root: Path, rel: str, sources=None):
    return plan_spec((root / rel).read_text(), rel, Files(root).read, sources)


def errors_of(root: Path, rel: str, sources=None):
    with pytest.raises(SpecError) as info:
        plan_all((root / rel).read_text(), rel, Files(root).read, sources)
    return [d for d in info.value.diagnostics if d.is_error]


# --------------------------------------------------------------------------------------------------
# imports and overrides
# --------------------------------------------------------------------------------------------------

def test_fragments_merge_under_the_experiment_and_its_own_entries_win(project):
    write(project, "shared/catalogue.genba", CATALOGUE)
    plan, _ = plan_file(project, write(project, "exp/genba.genba", EXPERIMENT))
    spec = plan.spec
    assert [lang.code for lang in spec.languages] == ["en", "de", "bar"]  # imported first
    de = spec.language("de")
    assert (de.name, de.tokens) == ("German", 81_000_000_000)  # name kept, budget overridden
    assert spec.hardware.describe() == "cs-3 x 2"  # the experiment's setting replaces the import's
    # the catalogue wrote its paths relative to shared/; they are rebased to the experiment's dir
    assert spec.language("en").sources == ("../data/en/*.jsonl",)
    assert spec.language("bar").sources == ("../data/bar/*.jsonl",)


def test_paths_in_a_fragment_are_relative_to_the_fragment(project):
    write(project, "shared/data/catalogue.genba",
          'language en "English" { data = "../../corpora/en.jsonl"  tokens = 1B }\n')
    write(project, "exp/deep/x.genba", EXPERIMENT.replace(
        '"../shared/catalogue.genba"', '"../../shared/data/catalogue.genba"').replace(
        "language de { tokens = ~81B }\n", "").replace("tokens = 164B", "tokens = 1080M"))
    plan, _ = plan_file(project, "exp/deep/x.genba")
    assert plan.spec.language("en").sources == ("../../corpora/en.jsonl",)


def test_extending_a_spec_equals_writing_the_change_into_it(project):
    write(project, "exp/tiny-rehearsal.genba", TINY)
    flat = tiny(enter="85%", lr="1e-3")
    write(project, "exp/flat.genba", flat)
    write(project, "exp/variant.genba", """\
import "tiny-rehearsal.genba"
experiment "tiny-rehearsal" {
  language bar { enter = 85% }
  train { optimizer = adamw(lr = 1e-3, weight_decay = 0.1, clip = 1.0) }
}
""")
    composed, _ = plan_file(project, "exp/variant.genba")
    written, _ = plan_file(project, "exp/flat.genba")
    original, _ = plan_file(project, "exp/tiny-rehearsal.genba")
    assert composed.spec_hash == written.spec_hash != original.spec_hash
    assert composed.spec.train.optimizer.lr == 1e-3
    assert composed.schedule == written.schedule


def test_a_call_over_a_call_of_the_same_name_merges_its_arguments(project):
    # the obvious learning-rate variant keeps the imported weight decay and clipping
    write(project, "exp/tiny-rehearsal.genba", TINY)
    write(project, "exp/lr.genba", 'import "tiny-rehearsal.genba"\n'
                                   'experiment "tiny-lr" { train { optimizer = adamw(lr = 1e-3) } }\n')
    write(project, "exp/flat.genba", tiny(lr="1e-3").replace('"tiny-rehearsal"', '"tiny-lr"'))
    merged, _ = plan_file(project, "exp/lr.genba")
    flat, _ = plan_file(project, "exp/flat.genba")
    opt = merged.spec.train.optimizer
    assert (opt.lr, opt.weight_decay, opt.clip) == (1e-3, 0.1, 1.0)
    assert merged.spec_hash == flat.spec_hash


def test_explain_says_which_file_each_value_came_from(project):
    write(project, "exp/tiny-rehearsal.genba", TINY)
    rel = write(project, "exp/lr.genba", 'import "tiny-rehearsal.genba"\nexperiment "tiny-lr" '
                                         '{ train { optimizer = adamw(lr = 1e-3) } }\n')
    out = subprocess.run([sys.executable, "-m", "genbac", "explain", rel], capture_output=True,
                         text=True, cwd=project)
    assert out.returncode == 0, out.stderr
    section = out.stdout.split("Where the values come from\n", 1)[1].split("\n\n")[0].splitlines()
    assert section[0] == "exp/lr.genba: train.optimizer.lr"
    imported = section[1].removeprefix("exp/tiny-rehearsal.genba: ").split(", ")
    assert {"language bar", "train.optimizer.weight_decay", "train.optimizer.clip",
            "hardware"} <= set(imported) and "train.optimizer.lr" not in imported
    # a spec without imports has no such section
    alone = subprocess.run([sys.executable, "-m", "genbac", "explain", "exp/tiny-rehearsal.genba"],
                           capture_output=True, text=True, cwd=project)
    assert alone.returncode == 0 and "Where the values come from" not in alone.stdout


def test_explain_names_a_phase_written_in_the_importing_file(project):
    write(project, "exp/tiny-rehearsal.genba", TINY)
    rel = write(project, "exp/ph.genba", 'import "tiny-rehearsal.genba"\nexperiment "tiny-ph" {\n'
                '  phase 75% { en = 33.2%  de = 33.2%  bar = 33.6% }\n}\n')
    out = subprocess.run([sys.executable, "-m", "genbac", "explain", rel], capture_output=True,
                         text=True, cwd=project)
    assert out.returncode == 0, out.stderr
    assert "\nexp/ph.genba: phase 75%\n" in out.stdout


def test_a_call_of_another_name_replaces_the_imported_call(project):
    write(project, "exp/tiny-rehearsal.genba", TINY)
    write(project, "exp/sgd.genba", 'import "tiny-rehearsal.genba"\n'
                                    'experiment "tiny-sgd" { train { optimizer = sgd(lr = 1e-2) } }\n')
    opt = plan_file(project, "exp/sgd.genba")[0].spec.train.optimizer
    assert (opt.kind, opt.lr, opt.weight_decay) == ("sgd", 1e-2, 0.0)


def test_a_merged_argument_is_reported_in_the_file_it_came_from(project):
    write(project, "exp/base.genba", TINY.replace("weight_decay = 0.1", "weight_decay = -1"))
    write(project, "exp/lr.genba", 'import "base.genba"\n'
                                   'experiment "tiny-lr" { train { optimizer = adamw(lr = 1e-3) } }\n')
    errors = errors_of(project, "exp/lr.genba")
    assert [(e.span.path, e.span.line) for e in errors] == [
        ("exp/base.genba", next(i for i, line in enumerate(TINY.splitlines(), 1)
                                if "weight_decay" in line))], errors


def test_an_argument_given_twice_in_the_override_is_still_reported(project):
    write(project, "exp/tiny-rehearsal.genba", TINY)
    write(project, "exp/lr.genba", 'import "tiny-rehearsal.genba"\nexperiment "tiny-lr" {\n'
                                   '  train { optimizer = adamw(lr = 1e-3, lr = 2e-3) }\n}\n')
    errors = errors_of(project, "exp/lr.genba")
    assert [(e.code, e.span.path, e.span.line) for e in errors] == [("GB102", "exp/lr.genba", 3)]


def test_a_different_kind_of_block_replaces_the_imported_one(project):
    write(project, "exp/tiny-rehearsal.genba", TINY)
    write(project, "exp/depth.genba", 'import "tiny-rehearsal.genba"\n'
                                      'experiment "tiny-depth" { grow depth { drop = 1 } }\n')
    plan, _ = plan_file(project, "exp/depth.genba")
    assert plan.growth.method == "depth" and plan.growth.layers == 6  # 2 x (4 - 1)


def test_later_imports_override_earlier_ones(project):
    write(project, "shared/catalogue.genba", CATALOGUE)
    write(project, "shared/cs3.genba", "hardware = cs-3 x 4\n")
    text = EXPERIMENT.replace('import "../shared/catalogue.genba"',
                              'import "../shared/catalogue.genba"\nimport "../shared/cs3.genba"')
    text = text.replace("  hardware = cs-3 x 2\n", "")
    plan, _ = plan_file(project, write(project, "exp/genba.genba", text))
    assert plan.spec.hardware.describe() == "cs-3 x 4"


def test_a_block_repeated_in_one_file_is_still_reported_there(project):
    write(project, "shared/catalogue.genba", CATALOGUE)
    text = EXPERIMENT.replace("  hardware = cs-3 x 2\n", "  train { batch = 8 }\n")
    errors = errors_of(project, write(project, "exp/genba.genba", text))
    assert [(e.code, e.span.path, e.span.line) for e in errors] == [("GB102", "exp/genba.genba", 15)]


def test_an_error_inside_an_import_points_into_the_imported_file(project):
    write(project, "shared/catalogue.genba", CATALOGUE.replace("tokens = ~82B }\nlanguage de",
                                                               "tokns = ~82B }\nlanguage de"))
    errors = errors_of(project, write(project, "exp/genba.genba", EXPERIMENT))
    assert [(e.code, str(e.span)) for e in errors] == [
        ("GB101", "shared/catalogue.genba:2:54"),  # the misspelled key
        ("GB104", "shared/catalogue.genba:2:1")]  # so `en` has no budget
    assert "did you mean `tokens`" in " ".join(errors[0].help)


def test_a_syntax_error_inside_an_import_points_into_the_imported_file(project):
    write(project, "shared/catalogue.genba", CATALOGUE.replace("hardware = cs-2 x 1",
                                                               "hardware: cs-2 x 1"))
    sources = {}
    (error,) = errors_of(project, write(project, "exp/genba.genba", EXPERIMENT), sources)
    assert (error.code, str(error.span)) == ("GB001", "shared/catalogue.genba:4:9")
    assert sources["shared/catalogue.genba"].startswith("# a shared data catalogue")


@pytest.mark.parametrize("target, code, message", [
    ("../shared/nothing.genba", "GB105", "import '../shared/nothing.genba': no such file"),
    ("../../outside.genba", "GB107", "leaves the project root"),
    ("/etc/hostname", "GB107", "is an absolute path"),
    ("../shared", "GB105", "cannot be read"),
])
def test_bad_imports_are_errors_at_the_import(project, target, code, message):
    (project.parent / "outside.genba").write_text("hardware = cpu\n")
    text = EXPERIMENT.replace('"../shared/catalogue.genba"', f'"{target}"')
    (error,) = errors_of(project, write(project, "exp/genba.genba", text))
    assert error.code == code and message in error.message
    assert (error.span.path, error.span.line, error.span.col) == ("exp/genba.genba", 1, 8)


def test_a_symlink_out_of_the_project_is_refused(project):
    outside = project.parent / "outside-dir"
    outside.mkdir(exist_ok=True)
    (outside / "catalogue.genba").write_text(CATALOGUE)
    os.symlink(outside / "catalogue.genba", project / "shared" / "catalogue.genba")
    (error,) = errors_of(project, write(project, "exp/genba.genba", EXPERIMENT))
    assert error.code == "GB107" and "leaves the project root" in error.message


def test_import_cycles_are_errors_at_the_import_that_closes_them(project):
    write(project, "shared/a.genba", 'import "b.genba"\nhardware = cpu\n')
    write(project, "shared/b.genba", 'import "a.genba"\n')
    text = EXPERIMENT.replace('"../shared/catalogue.genba"', '"../shared/a.genba"')
    (error,) = errors_of(project, write(project, "exp/genba.genba", text))
    assert error.code == "GB108"
    assert error.message == ("import cycle: shared/a.genba -> shared/b.genba -> shared/a.genba")
    assert (error.span.path, error.span.line) == ("shared/b.genba", 1)


def test_a_file_importing_itself_is_a_cycle(project):
    text = 'import "genba.genba"\n' + EXPERIMENT
    errors = errors_of(project, write(project, "exp/genba.genba", text))
    assert errors[0].code == "GB108" and errors[0].span.line == 1


def test_import_as_is_reserved(project):
    write(project, "shared/catalogue.genba", CATALOGUE)
    text = EXPERIMENT.replace('catalogue.genba"', 'catalogue.genba" as data')
    errors = errors_of(project, write(project, "exp/genba.genba", text))
    assert [(e.code, e.span.col) for e in errors] == [("GB105", 39)]


def test_check_shows_the_imported_files_source_line(project):
    write(project, "shared/catalogue.genba", CATALOGUE.replace("data =", "dta =", 1))
    write(project, "exp/genba.genba", EXPERIMENT)
    (project / ".git").mkdir()  # the project root, as found by the CLI
    r = subprocess.run([sys.executable, "-m", "genbac", "check", "exp/genba.genba"],
                       capture_output=True, text=True, cwd=project, env={**os.environ,
                                                                         "NO_COLOR": "1"})
    assert r.returncode == 1
    assert "--> shared/catalogue.genba:2:25" in r.stderr
    assert '{ dta = "../data/en/*.jsonl"' in r.stderr  # the excerpt comes from the imported file


# --------------------------------------------------------------------------------------------------
# sweeps
# --------------------------------------------------------------------------------------------------

SWEEP = tiny(enter="sweep(70%, 80%, 90%)", lr="sweep(3e-3, 1e-3)")


def test_a_sweep_is_the_product_of_its_values(project):
    planned = plan_all(SWEEP, "exp/sweep.genba")
    assert [p.name for p in planned] == [
        f"tiny-rehearsal-bar-enter{e}-lr{lr}" for e in (70, 80, 90) for lr in ("3e-3", "1e-3")]
    assert planned[0].values == {"language.bar.enter": "70%", "train.optimizer.lr": "3e-3"}
    for p in planned:
        enter = float(p.values["language.bar.enter"].rstrip("%"))
        assert p.plan.spec.language("bar").enter.percent == enter
        assert p.plan.spec.train.optimizer.lr == float(p.values["train.optimizer.lr"])
        assert p.plan.name == p.name == p.plan.spec.name
    assert len({p.plan.spec_hash for p in planned}) == 6
    # each variant is the spec with the value written in: the same hash
    written = tiny(enter="80%").replace(
        'experiment "tiny-rehearsal"', 'experiment "tiny-rehearsal-bar-enter80-lr3e-3"')
    assert plan_spec(written, "w.genba")[0].spec_hash == planned[2].plan.spec_hash


def test_a_sweep_in_an_imported_file_is_expanded(project):
    write(project, "exp/sweep.genba", tiny(enter="sweep(70%, 80%, 90%)"))
    write(project, "exp/x.genba", 'import "sweep.genba"\nexperiment "x" { seed = 1 }\n'
          .replace("seed = 1", "hardware = cpu"))
    planned = plan_all((project / "exp/x.genba").read_text(), "exp/x.genba", Files(project).read)
    assert [p.name for p in planned] == ["x-bar-enter70", "x-bar-enter80", "x-bar-enter90"]


def test_names_fall_back_to_numbers_when_values_make_them_too_long():
    text = SWEEP.replace('experiment "tiny-rehearsal"', 'experiment "' + "t" * 50 + '"')
    assert [p.name for p in plan_all(text, "s.genba")] == [f"{'t' * 50}-{i}" for i in range(1, 7)]


@pytest.mark.parametrize("value, message", [
    ("sweep(70%)", "a sweep needs at least two values"),
    ("sweep(at = 70%, 80%)", "`sweep` takes values, not `name = value`"),
    ("sweep(70%, sweep(80%, 90%))", "a sweep inside a sweep"),
])
def test_malformed_sweeps(value, message):
    with pytest.raises(SpecError) as info:
        plan_all(tiny(enter=value), "s.genba")
    (error,) = info.value.diagnostics
    assert (error.code, error.message, error.span.line) == ("GB109", message, ENTER_LINE)


def test_too_many_variants():
    values = ", ".join(f"{n}%" for n in range(50, 100, 5))  # 10 values x 7 = 70 > 64
    text = tiny(enter=f"sweep({values})", seed="sweep(1, 2, 3, 4, 5, 6, 7)")
    with pytest.raises(SpecError) as info:
        plan_all(text, "s.genba")
    (error,) = info.value.diagnostics
    assert error.code == "GB109" and f"at most {MAX_VARIANTS}" in error.message


def test_an_error_in_one_variant_points_at_its_value():
    text = tiny(enter="sweep(80%, 120%)")
    with pytest.raises(SpecError) as info:
        plan_all(text, "s.genba")
    (error,) = [d for d in info.value.diagnostics if d.is_error]
    line = text.splitlines()[error.span.line - 1]
    assert error.code == "GB130" and line[error.span.col - 1:error.span.end_col - 1] == "120%"


def test_a_command_for_one_experiment_refuses_a_sweep():
    with pytest.raises(SpecError) as info:
        plan_spec(SWEEP, "s.genba")
    assert info.value.diagnostics[0].code == "GB109"
    assert "sweeps 6 variants" in info.value.diagnostics[0].message


def test_compiled_sweep_layout_is_byte_stable_and_keeps_each_variants_work(tmp_path):
    _, files, _ = compile_all(SWEEP, "examples/sweep.genba", project_dir="../examples")
    _, again, _ = compile_all(SWEEP, "examples/sweep.genba", project_dir="../examples")
    assert files == again
    index = json.loads(files["index.json"])
    names = [v["name"] for v in index["variants"]]
    assert len(names) == 6 and all(f"{n}/cszoo/train.yaml" in files for n in names)
    manifest = json.loads(files[f"{names[0]}/manifest.json"])
    assert manifest["project_dir"] == "../../examples"
    assert manifest["spec_hash"] == index["variants"][0]["spec_hash"]
    out = tmp_path / "out"
    write_atomic(out, files)
    (out / names[1] / "work").mkdir()
    (out / names[1] / "work" / "state.json").write_text("{}")
    write_atomic(out, files)
    assert (out / names[1] / "work" / "state.json").read_text() == "{}"


def test_the_composition_example(examples):
    path = ROOT / "examples" / "composition" / "genba-bar-entry.genba"
    shown = "examples/composition/genba-bar-entry.genba"
    planned = plan_all(path.read_text(), shown, Files(ROOT).read)
    genba, _ = plan_spec(examples["llama-genba-10b"].read_text(), "examples/llama-genba-10b.genba")
    assert [p.values["language.bar.enter"] for p in planned] == ["85%", "90%", "95%"]
    at_90 = planned[1].plan
    assert at_90.schedule == genba.schedule and at_90.growth == genba.growth  # only the name differs
    assert at_90.spec.language("en").sources == ("../data/en/*.jsonl",)  # rebased from examples/
    starts = [p.plan.schedule.phases[-1].start_step for p in planned]
    assert starts == [35451, 37536, 39622]  # round(p x 41,707)


def test_check_and_explain_show_every_variant():
    shown = "examples/composition/genba-bar-entry.genba"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "genbac", *args], capture_output=True,
                              text=True, cwd=ROOT)

    check = cli("check", shown)
    assert check.returncode == 0, check.stderr
    assert [line.split(" ")[1] for line in check.stdout.splitlines()] == [
        f"[genba-bar-entry-bar-enter{p}]:" for p in (85, 90, 95)]
    text = cli("explain", shown).stdout
    assert text.startswith("3 variants, sweeping language.bar.enter")
    assert text.count("spec sha256 ") == 3 and text.count("9,775,157,248") >= 3
    plans = json.loads(cli("explain", "--format", "json", shown).stdout)
    _, files, _ = compile_all((ROOT / shown).read_text(), shown, project_dir="..",
                              read=Files(ROOT).read)
    index = json.loads(files["index.json"])
    assert [(v["name"], v["plan"]["spec_hash"]) for v in plans["variants"]] == [
        (v["name"], v["spec_hash"]) for v in index["variants"]]


def test_check_accepts_a_fragment_and_checks_its_imports(project):
    write(project, "shared/catalogue.genba", CATALOGUE)
    write(project, "shared/broken.genba", 'import "missing.genba"\nhardware = cpu\n')
    (project / ".git").mkdir()

    def check(rel):
        return subprocess.run([sys.executable, "-m", "genbac", "check", rel], capture_output=True,
                              text=True, cwd=project)

    ok = check("shared/catalogue.genba")
    assert ok.returncode == 0 and "a fragment" in ok.stdout
    broken = check("shared/broken.genba")
    assert broken.returncode == 1 and "--> shared/broken.genba:1:8" in broken.stderr
