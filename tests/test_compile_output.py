"""`genbac compile` writes byte-stable output, atomically, and never loses what was there."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def genbac(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, "-m", "genbac", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def copy_project(dst: Path) -> Path:
    (dst / "examples").mkdir(parents=True)
    for spec in (ROOT / "examples").glob("*.genba"):
        (dst / "examples" / spec.name).write_bytes(spec.read_bytes())
    return dst


@pytest.mark.parametrize("example", ["llama-genba-10b", "tiny-rehearsal"])
def test_same_spec_same_bytes_anywhere(tmp_path, example):
    """Two checkouts in different places, different hash seeds: identical output."""
    outs = []
    for i, seed in enumerate(("0", "12345")):
        project = copy_project(tmp_path / f"checkout{i}" / ("deeper/" * i))
        r = genbac("compile", f"examples/{example}.genba", "-o", "out", cwd=project,
                   env={"PYTHONHASHSEED": seed})
        assert r.returncode == 0, r.stderr
        outs.append(tree(project / "out"))
    assert outs[0] == outs[1]
    blob = b"".join(outs[0].values())
    assert str(tmp_path).encode() not in blob  # no absolute path the spec did not give
    assert b"2026-" not in blob  # no timestamps


def test_failed_compile_leaves_existing_output_untouched(tmp_path):
    project = copy_project(tmp_path)
    assert genbac("compile", "examples/tiny-rehearsal.genba", "-o", "out", cwd=project).returncode == 0
    before = tree(project / "out")
    broken = project / "examples" / "tiny-rehearsal.genba"
    broken.write_text(broken.read_text().replace("batch     = 8", "batch     = eight"))
    r = genbac("compile", "examples/tiny-rehearsal.genba", "-o", "out", cwd=project)
    assert r.returncode == 1
    assert "nothing written" in r.stderr
    assert tree(project / "out") == before
    assert not [p for p in project.iterdir() if p.name.startswith(".out.")]  # no temp leftovers


def test_a_write_failing_midway_restores_the_previous_output(tmp_path):
    from genbac.output import OutputError, write_atomic

    out = tmp_path / "out"
    write_atomic(out, {"manifest.json": b"{}", "run.sh": b"old", "work/ckpt.mdl": b"state"})
    before = tree(out)
    # "a" is written as a file, so "a/b" cannot be created: the write fails half-way through
    with pytest.raises(OutputError):
        write_atomic(out, {"manifest.json": b"{}", "a": b"x", "a/b": b"y"})
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_parent_that_is_a_file_is_a_usage_error(tmp_path):
    project = copy_project(tmp_path)
    (project / "blocker").write_text("")
    r = genbac("compile", "examples/tiny-rehearsal.genba", "-o", "blocker/out", cwd=project)
    assert r.returncode == 2
    assert "genbac: error: cannot write" in r.stderr and "Traceback" not in r.stderr


def test_recompile_replaces_files_but_keeps_runtime_state(tmp_path):
    project = copy_project(tmp_path)
    assert genbac("compile", "examples/tiny-rehearsal.genba", "-o", "out", cwd=project).returncode == 0
    state = project / "out" / "work" / "model_dir" / "checkpoint_20.mdl"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"weights")
    stale = project / "out" / "cszoo" / "stale.yaml"
    stale.write_text("left over")
    spec = project / "examples" / "tiny-rehearsal.genba"
    spec.write_text(spec.read_text().replace("batch     = 8", "batch     = 16"))
    assert genbac("compile", "examples/tiny-rehearsal.genba", "-o", "out", cwd=project).returncode == 0
    assert state.read_bytes() == b"weights"
    assert not stale.exists()
    assert b"batch_size: 16" in (project / "out" / "cszoo" / "train.yaml").read_bytes()


def test_refuses_to_replace_a_directory_that_is_not_genbac_output(tmp_path):
    project = copy_project(tmp_path)
    precious = project / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    r = genbac("compile", "examples/tiny-rehearsal.genba", "-o", "notes", cwd=project)
    assert r.returncode == 2
    assert "not a genbac output directory" in r.stderr
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_manifest_hashes_every_file(tmp_path):
    import hashlib
    import json

    project = copy_project(tmp_path)
    assert genbac("compile", "examples/llama-genba-10b.genba", "-o", "out", cwd=project).returncode == 0
    files = tree(project / "out")
    manifest = json.loads(files.pop("manifest.json"))
    assert manifest["files"] == {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    plan = json.loads(files["plan.json"])
    assert manifest["spec_hash"] == plan["spec_hash"]
    assert manifest["genbac_version"] == plan["genbac_version"]


def test_spec_hash_ignores_formatting_and_comments(examples):
    from genbac.compiler.compile import plan_spec

    text = examples["llama-genba-10b"].read_text()
    plan, _ = plan_spec(text, "a.genba")
    reformatted = "\n".join(line.split("#")[0].strip() for line in text.splitlines())
    reformatted = reformatted.replace("tokens = 80M", "tokens = 80_000_000") \
                             .replace("164B", "0.164T")
    other, _ = plan_spec("# a different comment\n" + reformatted, "b.genba")
    assert other.spec_hash == plan.spec_hash
    changed, _ = plan_spec(text.replace("enter  = 90%", "enter  = 85%"), "a.genba")
    assert changed.spec_hash != plan.spec_hash
