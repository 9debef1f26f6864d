"""Writing a compiled directory atomically.

Files are written to a fresh temporary directory beside the destination and moved into place with
renames, so a failed compile never leaves a half-written output, and an existing output stays as it
was until the new one is complete. The runtime's `work/` directory inside an existing output (data,
checkpoints) is carried over, never deleted. A non-empty directory that is not a genbac output is
never replaced.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

KEEP = "work"  # runtime state that belongs to an experiment, not to its compiled files


def _kept(files: dict[str, bytes]) -> list[str]:
    """`work/` of every experiment in the output: the top one, or each variant of a sweep."""
    experiments = {os.path.dirname(r) for r in files if os.path.basename(r) == "manifest.json"}
    return sorted(os.path.join(d, KEEP) if d else KEEP for d in experiments | {""})


class OutputError(Exception):
    pass


def write_atomic(out: Path, files: dict[str, bytes]) -> None:
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"{out} exists and is not a directory")
        if any(out.iterdir()) and not (out / "manifest.json").is_file():
            raise OutputError(f"refusing to replace {out}: it is not empty and holds no "
                              "manifest.json, so it is not a genbac output directory")
        _refuse_if_running(out, _kept(files))
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror}") from None
    old = None
    kept = _kept(files)
    try:
        for rel, data in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            if rel.endswith(".sh"):
                target.chmod(0o755)
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            old.rmdir()
            os.rename(out, old)
            for name in kept:
                if (old / name).exists() and (tmp / name).parent.is_dir():
                    os.rename(old / name, tmp / name)
        os.rename(tmp, out)
    except BaseException as exc:
        _roll_back(out, tmp, old, kept)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _refuse_if_running(out: Path, kept: list[str]) -> None:
    """Moving a directory away under a live `genbac run` would break its checkpoint writes (and
    change the plan it is executing), so a compile waits for the run to end."""
    for name in kept:
        if (out / name / "run.lock").exists():
            from genbac.runtime.runlock import is_alive

            if is_alive(out / name):
                raise OutputError(f"refusing to replace {out}: a `genbac run` is executing it "
                                  f"({out / name / 'run.lock'} is held); compile elsewhere with "
                                  "-o, or wait for the run to end")


def _roll_back(out: Path, tmp: Path, old: Path | None, kept: list[str]) -> None:
    """Put the previous output (and its runtime state) back as it was."""
    if old is not None and old.exists():
        for name in kept:
            if (tmp / name).exists() and not (old / name).exists():
                os.rename(tmp / name, old / name)
        if not out.exists():
            os.rename(old, out)
    shutil.rmtree(tmp, ignore_errors=True)
