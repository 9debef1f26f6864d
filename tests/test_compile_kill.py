"""A compile into an existing output, SIGKILLed at each of its file-system operations in turn.

At the instant of every kill the output directory holds the complete old output or the complete
new one; the runtime's work/ (state, checkpoints) is in it or in what the killed compile left
beside it; and the next compile recovers: the new output with the same work/, nothing left over.
Both ways of replacing a directory are tested: the atomic exchange and the two-rename fallback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genbac.cli import main

HERE = Path(__file__).resolve().parent
SPEC = HERE.parent / "examples" / "tiny-rehearsal.genba"


def compiled_files(out: Path) -> dict[str, bytes]:
    """The compiled files of an output (its work/ aside)."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
            if p.is_file() and not p.relative_to(out).as_posix().startswith("work/")}


def work_of(directory: Path) -> dict[str, bytes]:
    work = directory / "work"
    return {p.relative_to(work).as_posix(): p.read_bytes() for p in work.rglob("*") if p.is_file()}


def leftovers(out: Path) -> list[Path]:
    return sorted(p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def killed_compile(spec: Path, out: Path, kill_at: int, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HERE / "kill_compile.py"), "compile", str(spec),
                           "-o", str(out)], env={**env, "KILL_AT": str(kill_at)},
                          capture_output=True, text=True, cwd=spec.parent, timeout=120)


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_sigkill_at_every_operation_keeps_an_output_and_its_work(tmp_path, exchange):
    project = tmp_path / "project"
    project.mkdir()
    spec = project / "exp.genba"
    spec.write_text(SPEC.read_text())
    out = project / "out"
    assert main(["compile", str(spec), "-o", str(out)]) == 0
    (out / "work" / "ckpt").mkdir(parents=True)
    (out / "work" / "state.json").write_text('{"done": ["tokenizer"]}')
    (out / "work" / "ckpt" / "model.bin").write_bytes(os.urandom(4096))
    old, work = compiled_files(out), work_of(out)
    spec.write_text(SPEC.read_text().replace("lr = 3e-3", "lr = 1e-3"))
    assert main(["compile", str(spec), "-o", str(project / "expected")]) == 0
    new = compiled_files(project / "expected")
    assert new != old
    pristine = tmp_path / "pristine"
    shutil.copytree(out, pristine, symlinks=True)

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    if not exchange:
        env["NO_EXCHANGE"] = "1"
    counted = killed_compile(spec, out, 0, env)
    assert counted.returncode == 0, counted.stderr
    operations = int(counted.stdout.split()[-1])
    assert operations > 20  # every file written, the swap, the clean-up
    for k in range(1, operations + 1):
        shutil.rmtree(out)
        for p in leftovers(out):
            shutil.rmtree(p)
        shutil.copytree(pristine, out, symlinks=True)
        result = killed_compile(spec, out, k, env)
        assert result.returncode == -9, (k, result.returncode, result.stderr)
        # at the instant of the kill: a complete output, old or new, and work/ somewhere
        now = compiled_files(out) if out.is_dir() else None
        if exchange:
            assert now in (old, new), f"operation {k}: neither the old nor the new output"
        else:  # between the two renames the old output is parked aside, whole
            parked = [p for p in leftovers(out) if compiled_files(p) == old]
            assert now in (old, new) or (now is None and parked), f"operation {k}"
        assert work_of(out) == work or any(work_of(p) == work for p in leftovers(out)), k
        # the next compile (or genbac run) puts everything right
        assert main(["compile", str(spec), "-o", str(out)]) == 0, k
        assert compiled_files(out) == new, k
        assert work_of(out) == work, f"operation {k}: work/ lost"
        assert leftovers(out) == [], k
