"""Multi-process (DDP) phases: the torchrun launch the executor makes, and each rank's set-up.

    executor (state file, MLflow)
      └─ python -m genbac.runtime.distributed --standalone --nproc-per-node N   (torchrun)
           └─ N × python -m genbac.runtime.worker COMPILED PHASE               (runtime/worker.py)

`hardware = h100 x N` / `a100 x N` runs one process per GPU with NCCL, `cpu x N` N CPU processes
with gloo. The ranks report to the executor through one JSON-lines file (`EventLog`): rank 0 writes
a line per step's metrics and its log lines, any rank that stops on a user error writes the error.
The executor tails the file while torchrun runs and does all MLflow logging itself, so MLflow stays
in one process that also owns the runs' status, a worker never imports mlflow, and a killed worker
cannot leave a half-written MLflow record; the file is plain text anyone can read afterwards.

When one rank dies, torchrun stops the others and exits non-zero; `failure_summary` turns its
report into one line for the executor's error message. Processes never outlive their parent: the
launcher (this module's `__main__`) gets SIGTERM if the executor dies, which makes torchrun stop
its workers, and each worker gets SIGKILL if torchrun dies, so a rerun never races an orphan.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable


def world_problem(plan, world: int, gpus: int) -> str | None:
    """Why `world` processes cannot train this plan on a machine with `gpus` CUDA GPUs, if so."""
    hw = plan.spec.hardware  # (a batch that does not split over the world is a spec error, GB172)
    if hw.is_gpu and gpus < world:
        return (f"`hardware = {hw.kind} x {hw.count}` trains with {world} CUDA GPUs, this machine "
                f"has {gpus}; rehearse it on the CPU with `hardware = cpu x {world}`")
    return None


# --------------------------------------------------------------------------------------------------
# ranks -> executor
# --------------------------------------------------------------------------------------------------

class EventLog:
    """One JSON object per line. Writers append whole lines (atomic for lines this short); the
    reader returns only complete lines, so a rank killed mid-write never yields half an event."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0

    def write(self, **event) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")

    def read_new(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        complete = data[:data.rfind(b"\n") + 1]
        self.offset += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.offset = 0


# --------------------------------------------------------------------------------------------------
# the launch (executor side)
# --------------------------------------------------------------------------------------------------

def torchrun_command(world: int, module: str, args: list[str]) -> list[str]:
    # --max-restarts 0: a failed rank fails the phase; the rerun resumes from the last checkpoint
    return [sys.executable, "-m", "genbac.runtime.distributed", "--standalone",
            "--nproc-per-node", str(world), "--max-restarts", "0", "-m", module, *args]


def run_torchrun(command: list[str], world: int, log_path: Path, events: EventLog,
                 on_event: Callable[[dict], None], poll_s: float = 0.2) -> int:
    """Run torchrun (its and the workers' output to log_path), feed every event to on_event while
    it runs and after it ends; return its exit status."""
    env = dict(os.environ)
    # torch's own threads per rank: the machine's cores shared out (torchrun would say 1 and warn)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // world)))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while proc.poll() is None:
                for event in events.read_new():
                    on_event(event)
                time.sleep(poll_s)
        except BaseException:
            # Ctrl-C or an error in on_event: stop the job (torchrun stops its workers) first
            proc.terminate()
            proc.wait()
            raise
    for event in events.read_new():
        on_event(event)
    return proc.returncode


def failure_summary(log_text: str) -> str:
    """What torchrun's failure report says about the first failed rank, in one line."""
    root = log_text.rfind("Root Cause")  # torchrun's section on the first rank that failed
    if root >= 0:
        log_text = log_text[root:]
    rank = re.search(r"^\s*rank\s*:\s*(\d+)", log_text, re.M)
    code = re.search(r"^\s*exitcode\s*:\s*(-?\d+)(?:\s*\(pid:\s*(\d+)\))?", log_text, re.M)
    if not code:
        return "the training processes stopped"
    who = f"rank {rank.group(1)}" if rank else "a rank"
    if code.group(2):
        who += f" (pid {code.group(2)})"
    status = int(code.group(1))
    if status < 0:
        try:
            how = f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            how = f"was killed by signal {-status}"
    else:
        how = f"exited with status {status}"
    return f"{who} {how}; torchrun stopped the other ranks"


# --------------------------------------------------------------------------------------------------
# a rank (worker side)
# --------------------------------------------------------------------------------------------------

def die_with_parent(sig: int) -> None:
    """Ask Linux to send `sig` to this process when its parent exits (no-op elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def init_rank(plan):
    """Join torchrun's process group: NCCL with one GPU per rank, or gloo on the CPU.
    Returns (rank, world size, device)."""
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if plan.spec.hardware.is_gpu:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    return rank, world, device


if __name__ == "__main__":
    # the launcher: torchrun itself, stopped (and so its workers) when the executor dies
    die_with_parent(signal.SIGTERM)
    from torch.distributed.run import main

    main()
