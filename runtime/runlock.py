"""One `genbac run` per compiled directory at a time, and whether a run that MLflow still calls
RUNNING has a process behind it.

`work/run.lock` is held with flock(2) for as long as an execution lasts. Two executions of the same
directory would train over each other's checkpoints and state file, so the second one is refused,
naming the first. The kernel drops the lock when its process ends, however it ends (a SIGKILL, an
out-of-memory kill, a node crash for a local disk), which is what makes the lock the reliable sign
of life that MLflow lacks: a killed run stays RUNNING there forever.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from genbac.errors import UserError

LOCK_NAME = "run.lock"


class LockError(UserError):
    """The lock cannot be taken; the message says why (no traceback for the user)."""


class Busy(LockError):
    """Another process holds the directory's lock; the message names it."""


# flock(2) answers these on filesystems without locks (some network mounts): run unguarded there
NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


class RunLock:
    """flock on work/run.lock, with who holds it written inside (for the message a second run
    prints). Use as a context manager; `note()` adds facts such as the MLflow run id."""

    def __init__(self, work: Path):
        self.path = work / LOCK_NAME
        self._fd: int | None = None
        self._info: dict = {}
        self.unguarded = False  # True where the filesystem has no locks

    def __enter__(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LockError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        try:
            _lock_or_wait_briefly(fd)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise Busy(_busy_message(self.path, holder)) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno not in NO_LOCKS:
                raise LockError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
            self.unguarded = True
            return self
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.note(pid=os.getpid(), host=socket.gethostname(),
                  started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
        return self

    def note(self, **facts) -> None:
        self._info.update(facts)
        if self._fd is None:
            return
        data = json.dumps(self._info, sort_keys=True).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock; the file stays for the next run
            self._fd = None


def _lock_or_wait_briefly(fd: int) -> None:
    """An exclusive lock, waiting up to a second: `is_alive` (genbac runs, compare) takes the lock
    shared for an instant, which must not turn a run away."""
    for _ in range(20):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.05)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}


def _busy_message(path: Path, holder: dict) -> str:
    who = f"process {holder['pid']}" if "pid" in holder else "another process"
    if holder.get("host") and holder["host"] != socket.gethostname():
        who += f" on {holder['host']}"
    since = f", running since {holder['started']}" if "started" in holder else ""
    run = f", MLflow run {holder['run_id']}" if "run_id" in holder else ""
    return (f"{path.parent} is in use by another `genbac run` ({who}{since}{run}); two runs of "
            "one directory would overwrite each other's checkpoints. Wait for it to end, or stop "
            "it and rerun to resume")


def is_alive(work: Path) -> bool | None:
    """Whether some process holds work/run.lock: True or False, or None when this machine cannot
    tell (no such directory here, or a run from before the lock existed)."""
    path = Path(work) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return False
