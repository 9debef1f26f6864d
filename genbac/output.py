"""Writing a compiled directory atomically, so that a kill at any instant loses nothing.

The new files are written to a fresh temporary directory beside the destination (`.NAME.tmp-*`).
An existing output is then replaced in one step: Linux's `renameat2(RENAME_EXCHANGE)` swaps the two
directories atomically, so at every instant `NAME` is either the complete old output or the
complete new one. The runtime's `work/` (data, checkpoints; one per experiment, or per variant of a
sweep) is moved from the old output into the new one right after, and the old one is deleted.

A kill can still land between those steps. Everything a compile leaves behind is named after the
output (`.NAME.tmp-*`, `.NAME.old-*`), and the next compile, or `genbac run`, recovers from it
before doing anything else (`recover`): a `work/` left in an old output goes back into `NAME`, an
output parked aside by the two-rename fallback (filesystems without RENAME_EXCHANGE) is put back,
and what is left holds no runtime state and is removed; each recovery is said. Compiles and
recoveries beside one output take turns (an flock on the parent directory), so a recovery never
touches a compile in progress. A non-empty directory that is not a genbac output is never replaced,
and nothing named `work` is ever deleted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path

from genbac.errors import UserError

KEEP = "work"  # runtime state that belongs to an experiment, not to its compiled files
_LEFTOVER_KINDS = (".tmp-", ".old-")


class OutputError(UserError):
    pass


def write_atomic(out: Path, files: dict[str, bytes], say=None) -> None:
    """Replace (or create) the directory `out` with exactly `files`, keeping its `work/`s.
    `say(line)` is told what was recovered from an earlier, interrupted compile."""
    out = Path(out)
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror}") from None
    with _turn(parent):
        for line in recover(out, locked=True):
            (say or _stderr)(line)
        if out.exists():
            if not out.is_dir():
                raise OutputError(f"{out} exists and is not a directory")
            if any(out.iterdir()) and not (out / "manifest.json").is_file():
                raise OutputError(f"refusing to replace {out}: it is not empty and holds no "
                                  "manifest.json, so it is not a genbac output directory")
            _refuse_if_running(out)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
        except OSError as exc:
            raise OutputError(f"cannot write {out}: {exc.strerror}") from None
        try:
            for rel, data in files.items():
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                if rel.endswith(".sh"):
                    target.chmod(0o755)
            os.chmod(tmp, 0o755)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)  # holds nothing but the new files
            if isinstance(exc, OSError):
                raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
            raise
        try:
            if not out.exists():
                os.rename(tmp, out)
                return
            if _exchange(tmp, out):
                old = tmp  # after the swap it holds the previous output
            else:  # no RENAME_EXCHANGE here: park the old output, then move the new one in
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
                os.rmdir(old)
                os.rename(out, old)
                os.rename(tmp, out)
        except OSError as exc:
            # nothing was swapped, or the swap is undone by the recovery below
            for line in recover(out, locked=True):
                (say or _stderr)(line)
            if tmp.exists() and not _works(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
        _carry_work(old, out)  # the old output's runtime state into the new one
        if not _works(old):
            shutil.rmtree(old, ignore_errors=True)


def recover(out: Path, *, locked: bool = False) -> list[str]:
    """Put right what an interrupted compile left beside `out`; returns what was done, in words."""
    out = Path(out)
    parent = out.absolute().parent
    if not parent.is_dir():
        return []
    if not locked:
        with _turn(parent):
            return recover(out, locked=True)
    said = []
    leftovers = _leftovers(out)
    if not out.exists():
        # the fallback was killed between its two renames: the old output is parked aside
        parked = [p for p in leftovers if ".old-" in p.name and (p / "manifest.json").is_file()]
        if parked:
            os.rename(parked[0], out)
            leftovers.remove(parked[0])
            said.append(f"genbac: restored {out} from {parked[0].name}, left by an interrupted "
                        "compile")
    for leftover in leftovers:
        if out.is_dir():
            said += [f"genbac: moved {rel}/ back into {out} from {leftover.name}, left by an "
                     "interrupted compile" for rel in _carry_work(leftover, out)]
        if _works(leftover):
            said.append(f"genbac: kept {leftover}: it holds runtime state (work/) that {out} "
                        "has no place for; move it back by hand if it is still wanted")
            continue
        shutil.rmtree(leftover, ignore_errors=True)
        said.append(f"genbac: removed {leftover.name}, left by an interrupted compile of {out}")
    return said


def _leftovers(out: Path) -> list[Path]:
    parent = out.absolute().parent
    prefix = f".{out.name}"
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return []
    return [parent / n for n in names
            if any(n.startswith(prefix + kind) for kind in _LEFTOVER_KINDS)
            and (parent / n).is_dir() and not (parent / n).is_symlink()]


def _work_dirs(root: Path) -> list[str]:
    """`work` and `VARIANT/work` inside an output directory, relative to it."""
    found = [KEEP] if (root / KEEP).is_dir() else []
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return found
    return found + [f"{name}/{KEEP}" for name in entries
                    if name != KEEP and (root / name / KEEP).is_dir()]


def _works(root: Path) -> bool:
    return bool(_work_dirs(root))


def _carry_work(source: Path, out: Path) -> list[str]:
    """Move each `work/` of `source` to the same place in `out`, where that place exists and is
    free; what cannot be moved stays where it is (and `source` with it). Returns what moved."""
    moved = []
    for rel in _work_dirs(source):
        target = out / rel
        if target.exists() or not target.parent.is_dir():
            continue
        os.rename(source / rel, target)
        moved.append(rel)
    return moved


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux renameat2 RENAME_EXCHANGE); False where the system
    or the filesystem cannot, so the caller falls back to two renames."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library without it (glibc < 2.28, musl < 1.2.?)
        return False
    sys.audit("genbac.exchange", str(a), str(b))  # seen by the kill-at-every-operation test
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


@contextlib.contextmanager
def _turn(directory: Path):
    """One compile (or recovery) at a time beside an output: an exclusive flock on the parent
    directory itself, so no lock file is left behind; released by the kernel however we end."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no guard
        yield
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a filesystem without locks: go on unguarded
            pass
        yield
    finally:
        os.close(fd)


def _refuse_if_running(out: Path) -> None:
    """Moving a directory away under a live `genbac run` would break its checkpoint writes (and
    change the plan it is executing), so a compile waits for the run to end."""
    for name in _work_dirs(out):
        if (out / name / "run.lock").exists():
            from genbac.runtime.runlock import is_alive

            if is_alive(out / name):
                raise OutputError(f"refusing to replace {out}: a `genbac run` is executing it "
                                  f"({out / name / 'run.lock'} is held); compile elsewhere with "
                                  "-o, or wait for the run to end")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)
