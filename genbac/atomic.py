"""Atomic writes, the one definition: a reader (or a process killed halfway) sees the old content
or the new, never a half-written file or directory.

    write_file(path, data)       a file: a temporary file beside it, flushed, then renamed over it
    symlink(path, target)        a symbolic link: made beside it, then renamed over it
    directory(final, replace=)   a directory: yielded empty beside `final`, renamed into place
                                 when the block succeeds, removed when it fails

A compiled output directory, which must also survive a kill between two renames and be recovered
by the next command, has its own protocol on top of these (genbac/output.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def write_file(path: Path, data: bytes | str, *, mode: int | None = None) -> None:
    """Replace `path` with `data` (str is written as UTF-8). `mode` defaults to the file's own
    (a rewritten file keeps its permissions), else 0644 less the umask."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def symlink(path: Path, target: Path) -> None:
    """Make `path` a symbolic link to `target`, replacing what was there (a link or a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.link.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def directory(final: Path, replace: bool = False, *, complete: str | None = None
              ) -> Iterator[Path]:
    """Yield an empty temporary directory beside `final`; on success it becomes `final`.

    On an error nothing changes at `final`. An existing `final` is replaced when `replace` is
    true; otherwise, if it holds `complete` (a file name: another process did the same work
    meanwhile), it is kept and ours discarded, and if not, it is replaced too.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)  # mkdtemp's 0700 would hide the result from other users
    try:
        yield work
        _publish(work, final, replace, complete)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def clean_leftovers(parent: Path, prefix: str = "") -> list[Path]:
    """Tidy what `directory` leaves in `parent` when its process is killed (SIGKILL skips its
    cleanup), for final names starting with `prefix`: the temporary directories of unfinished
    writes go, and a final directory caught between _publish's two renames is put back. Only
    where nothing else writes in `parent` now (the run's lock). Returns what was removed."""
    removed = []
    for kept in sorted(Path(parent).glob(f".{prefix}*.old")):
        final = Path(parent) / kept.name[1:].rsplit(".", 2)[0]
        if (kept / "previous").is_dir() and not final.exists():
            os.rename(kept / "previous", final)
        shutil.rmtree(kept, ignore_errors=True)
        removed.append(kept)
    for work in sorted(Path(parent).glob(f".{prefix}*.tmp")):
        shutil.rmtree(work, ignore_errors=True)
        removed.append(work)
    return removed


def _publish(work: Path, final: Path, replace: bool, complete: str | None) -> None:
    if not final.exists() and not final.is_symlink():
        os.rename(work, final)
        return
    if not replace and complete is not None and (final / complete).is_file():
        return  # an identical result is already there
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
    os.rename(final, old / "previous")
    try:
        os.rename(work, final)
    except OSError:
        os.rename(old / "previous", final)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
