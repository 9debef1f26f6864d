"""A child process's life tied to its parent's: Linux's parent-death signal, for every process
genbac starts that must not outlive it (torchrun agents and their workers, Model Zoo's fit,
tokenising processes). Standard library only: a freshly started child imports this first."""

from __future__ import annotations

import os
import signal


def die_with_parent(sig: int, parent: int | None = None) -> None:
    """Ask Linux to send `sig` to this process when its parent exits (no-op elsewhere). With the
    `parent` this process was started by: if that one is gone already (it died before the
    request was made, and no signal will come), `sig` now."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)


def how_it_ended(status: int) -> str:
    """A child's exit status (Popen.returncode: negative for a signal) in words."""
    if status >= 0:
        return f"exited with status {status}"
    try:
        return f"was killed by {signal.Signals(-status).name}"
    except ValueError:
        return f"was killed by signal {-status}"
