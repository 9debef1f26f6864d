"""runtime/runlock.py on its own: real flock(2) between real processes, and the two ways a lock can
be unavailable that a user must hear about in one line."""

import errno
import fcntl
import os
import subprocess
import sys
import textwrap

import pytest

from genbac.runtime.runlock import Busy, LockError, RunLock, is_alive

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from genbac.runtime.runlock import RunLock
    with RunLock(Path(sys.argv[1])) as lock:
        lock.note(run_id="abc123")
        print("held", flush=True)
        sys.stdin.read()  # until the test closes our stdin
""")


def test_a_held_lock_turns_others_away_naming_the_holder_and_frees_when_its_process_ends(tmp_path):
    work = tmp_path / "work"
    assert is_alive(work) is None  # no lock file: this machine cannot tell
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(work)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert is_alive(work) is True
        with pytest.raises(Busy, match=rf"process {holder.pid}.*MLflow run abc123"):
            RunLock(work).__enter__()
    finally:
        holder.kill()  # like SIGKILL: no clean-up code runs, the kernel drops the lock
        holder.wait()
    assert is_alive(work) is False
    with RunLock(work) as lock:
        assert not lock.unguarded and is_alive(work) is True


def test_an_unwritable_work_directory_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "work"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(LockError, match=r"cannot write .*run\.lock"):
        RunLock(blocker).__enter__()


def test_a_filesystem_without_locks_runs_unguarded(tmp_path, monkeypatch):
    # Such a filesystem (some network mounts) cannot be made here without root mounts, so flock's
    # answer there, ENOLCK, is simulated; everything else is real.
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with RunLock(tmp_path / "work") as lock:
        assert lock.unguarded
        lock.note(run_id="x")  # nothing to write to, and no error
