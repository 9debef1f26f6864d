r"""Multi-process phases (DDP, FSDP, HSDP): the torchrun launch the executor makes, and each rank's
set-up.

    executor (state file, MLflow), on the first node
      └─ one node:     python -m genbac.runtime.distributed --standalone --nproc-per-node N  (torchrun)
      └─ M nodes:      srun --nodes M --ntasks-per-node 1 \          (in a SLURM job: slurm.sh)
                         python -m genbac.runtime.distributed --nnodes M --nproc-per-node N \
                           --rdzv-backend c10d --rdzv-endpoint HEAD:PORT --rdzv-id ID
                       or M such torchrun agents on this machine (`cpu x N x M` outside SLURM: a
                       rehearsal of the cluster's layout over loopback)
           └─ N × python -m genbac.runtime.worker COMPILED PHASE          (runtime/worker.py)

`hardware = h100 x N` / `a100 x N` runs one process per GPU with NCCL, `cpu x N` N CPU processes
with gloo; `x M` more makes that M nodes, whose torchrun agents meet at the c10d rendezvous on the
first node of the job. The ranks report to the executor through JSON-lines files (`EventLog`, one
per rank, in the work directory, which must be on a filesystem every node shares): rank 0 writes a
line per step's metrics and its log lines, any rank that stops on a user error writes the error.
The executor tails the files while the launch runs and does all MLflow logging itself, so MLflow
stays in one process that also owns the runs' status, a worker never imports mlflow, and a killed
worker cannot leave a half-written MLflow record; the files are plain text anyone can read
afterwards.

When one rank dies, torchrun stops the others on its node and exits non-zero, and so do the other
nodes' agents (the rendezvous closes; srun --kill-on-bad-exit stops them at once);
`failure_summary` turns torchrun's report into one line for the executor's error message.
Processes never outlive their parent: the launcher (this module's `__main__`) gets SIGTERM if its
parent dies, which makes torchrun stop its workers, and each worker gets SIGKILL if torchrun dies,
so a rerun never races an orphan.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

from genbac.compiler.artifact import RDZV_PORT
from genbac.errors import UserError

from .lifetime import die_with_parent, how_it_ended


def world_problem(plan, world: int, gpus: int) -> str | None:
    """Why `world` processes cannot train this plan on a machine with `gpus` CUDA GPUs, if so."""
    hw = plan.spec.hardware  # (a batch that does not split over the world is a spec error, GB172)
    here = world // (hw.nodes or 1)  # every node runs as many
    if hw.is_gpu and gpus < here:
        per_node = " per node" if hw.nodes else ""
        return (f"`hardware = {hw.describe()}` trains with {here} CUDA GPUs{per_node}, this "
                f"machine has {gpus}; rehearse it on the CPU with `hardware = cpu x {hw.count}"
                f"{f' x {hw.nodes}' if hw.nodes else ''}`")
    return None


# --------------------------------------------------------------------------------------------------
# ranks -> executor
# --------------------------------------------------------------------------------------------------

class EventLog:
    """The events of a phase's ranks, one JSON object per line, a file per rank beside `path`
    (phase-1.events.jsonl: phase-1.events.rank-0.jsonl, …). One writer per file: appends from
    several nodes to one file on a network filesystem can interleave (NFS's O_APPEND is not atomic
    across clients), a file of its own cannot. The reader returns only complete lines, so a rank
    killed mid-write never yields half an event; rank 0's events in order, then the others'."""

    def __init__(self, path: Path, rank: int | None = None):
        self.path = path  # the name the files are made from; read_new reads every rank's
        self.rank = rank  # the rank that writes through this log (None: a reader)
        self.offsets: dict[Path, int] = {}

    def file(self, rank: int) -> Path:
        return self.path.with_name(f"{self.path.stem}.rank-{rank}{self.path.suffix}")

    def files(self) -> list[Path]:
        """The rank files there are, in rank order."""
        prefix, suffix = f"{self.path.stem}.rank-", self.path.suffix
        ranks = []
        for found in self.path.parent.glob(f"{prefix}*{suffix}"):
            number = found.name[len(prefix):len(found.name) - len(suffix)]
            if number.isdigit():
                ranks.append(int(number))
        return [self.file(rank) for rank in sorted(ranks)]

    def write(self, **event) -> None:
        with open(self.file(self.rank or 0), "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")

    def read_new(self) -> list[dict]:
        events = []
        for file in self.files():
            offset = self.offsets.get(file, 0)
            try:
                with open(file, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                continue
            complete = data[:data.rfind(b"\n") + 1]
            self.offsets[file] = offset + len(complete)
            events += [self._decode(file, line) for line in complete.splitlines() if line.strip()]
        return events

    @staticmethod
    def _decode(file: Path, line: bytes) -> dict:
        """An event, or for a line that is not one (a damaged file) a log event saying it was
        skipped."""
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict):
            return event
        return {"log": f"genbac: warning: skipped an unreadable line in {file} ({len(line)} bytes)"}

    def clear(self) -> None:
        for file in self.files():
            file.unlink(missing_ok=True)
        self.offsets.clear()


# --------------------------------------------------------------------------------------------------
# the launch (executor side)
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Launch:
    """How a phase's ranks start: `per_node` processes on each of `nodes` nodes."""

    nodes: int
    per_node: int
    # "standalone": one node; "slurm": srun starts one torchrun agent on every node of the job;
    # "local": every node's agent on this machine (a rehearsal of the layout over loopback)
    launcher: str = "standalone"
    endpoint: str | None = None  # host:port of the c10d rendezvous (several nodes)
    rdzv_id: str = "genbac"

    @property
    def world(self) -> int:
        return self.nodes * self.per_node

    @property
    def ranks_per_machine(self) -> int:
        """Ranks on one machine: all of them when every node's agent runs here."""
        return self.world if self.launcher == "local" else self.per_node

    def describe(self) -> str:
        if self.launcher == "standalone":
            return "through torchrun"
        how = "rehearsed here" if self.launcher == "local" else "through srun"
        return (f"on {self.nodes} nodes {how} (torchrun agents, c10d rendezvous at "
                f"{self.endpoint})")


def launch_for(nodes: int, per_node: int, name: str, env=os.environ) -> Launch:
    """The launch of `per_node` processes on each of `nodes` nodes; `name` makes the rendezvous
    id unique per attempt."""
    if nodes == 1:
        return Launch(1, per_node)
    if env.get("SLURM_JOB_ID"):
        port = env.get("GENBAC_RDZV_PORT", str(RDZV_PORT))
        return Launch(nodes, per_node, "slurm", f"{slurm_head(env)}:{port}",
                      f"genbac-{env['SLURM_JOB_ID']}-{name}")
    return Launch(nodes, per_node, "local", f"127.0.0.1:{free_port()}", f"genbac-local-{name}")


def slurm_head(env=os.environ) -> str:
    """The first node of the SLURM job (where the executor, and the rendezvous store, run)."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", env.get("SLURM_JOB_NODELIST", "")],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise LaunchError(f"cannot list the SLURM job's nodes with `scontrol show hostnames`: "
                          f"{exc}") from None
    hosts = out.split()
    if not hosts:
        raise LaunchError("`scontrol show hostnames $SLURM_JOB_NODELIST` listed no node")
    return hosts[0]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LaunchError(UserError):
    """The cluster around this process cannot start the phase's nodes."""


def torchrun_command(launch: Launch, module: str, args: list[str]) -> list[str]:
    """One node's torchrun agent."""
    if launch.nodes == 1:
        where = ["--standalone", "--nproc-per-node", str(launch.per_node)]
    else:
        where = ["--nnodes", str(launch.nodes), "--nproc-per-node", str(launch.per_node),
                 "--rdzv-backend", "c10d", "--rdzv-endpoint", launch.endpoint,
                 "--rdzv-id", launch.rdzv_id]
    # --max-restarts 0: a failed rank fails the phase; the rerun resumes from the last checkpoint
    return [sys.executable, "-m", "genbac.runtime.distributed", *where, "--max-restarts", "0",
            "-m", module, *args]


def launch_commands(launch: Launch, module: str, args: list[str]) -> list[list[str]]:
    """The processes the executor starts for a phase: one torchrun, M of them here, or srun."""
    agent = torchrun_command(launch, module, args)
    if launch.launcher == "slurm":
        return [["srun", f"--nodes={launch.nodes}", "--ntasks-per-node=1",
                 "--kill-on-bad-exit=1", *agent]]
    return [agent] * (launch.nodes if launch.launcher == "local" else 1)


STOP_GRACE_S = 60  # torchrun's own wait for its workers after SIGTERM is 30 s


def run_torchrun(commands: list[list[str]], ranks_here: int, log_path: Path, events: EventLog,
                 on_event: Callable[[dict], None], poll_s: float = 0.2,
                 direct: bool = True) -> int:
    """Run the launch's processes (their and the workers' output to log_path), feed every event to
    on_event while they run and after they end; return the first failure's exit status, or 0.
    When one fails the others are stopped, as srun --kill-on-bad-exit does on a cluster.
    `direct`: the commands are torchrun agents (this process is their parent), not srun."""
    env = dict(os.environ)
    env.pop(EXECUTOR_PID, None)
    if direct:  # srun passes its environment on to agents whose parent is not this process
        env[EXECUTOR_PID] = str(os.getpid())
    # torch's own threads per rank: a machine's cores shared out over the ranks it runs (torchrun
    # would say 1 and warn)
    from .data import usable_cpus  # light: numpy, which the executor has loaded already

    env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cpus() // max(1, ranks_here))))
    status = 0
    with open(log_path, "ab") as log:
        procs = [subprocess.Popen(c, stdout=log, stderr=subprocess.STDOUT, env=env)
                 for c in commands]
        try:
            while any(p.poll() is None for p in procs):
                for event in events.read_new():
                    on_event(event)
                failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
                if failed and not status:
                    status = failed[0]
                    for p in procs:
                        if p.poll() is None:
                            p.terminate()
                time.sleep(poll_s)
        except BaseException:
            # Ctrl-C or an error in on_event: stop the job (torchrun stops its workers) first,
            # and kill what has not stopped in STOP_GRACE_S
            for p in procs:
                p.terminate()
            deadline = time.monotonic() + STOP_GRACE_S
            for p in procs:
                try:
                    p.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            raise
    for event in events.read_new():
        on_event(event)
    return status or next((p.returncode for p in procs if p.returncode), 0)


KILLED_BY = (signal.SIGKILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE)


def failure_summary(log_text: str) -> str:
    """What torchrun's failure report says about the rank that failed first, in one line. With
    several nodes each agent reports its own "Root Cause": a rank killed (SIGKILL: a person, the
    OOM killer; or crashed: SIGSEGV, SIGBUS) is the cause, as the ranks whose peer vanished fail
    their next collective about then (gloo: exit 1; NCCL's watchdog: SIGABRT); then a rank that
    exited or aborted, before one a launcher stopped (SIGTERM, SIGINT); among equals the
    earliest report."""
    reports = []
    for order, section in enumerate(log_text.split("Root Cause")[1:]):
        code = re.search(r"^\s*exitcode\s*:\s*(-?\d+)(?:\s*\(pid:\s*(\d+)\))?", section, re.M)
        if not code:
            continue
        rank = re.search(r"^\s*rank\s*:\s*(\d+)", section, re.M)
        when = re.search(r"^\s*time\s*:\s*(\S+)", section, re.M)
        status = int(code.group(1))
        if status < 0 and -status in KILLED_BY:
            kind = 0  # killed from outside or crashed: the cause
        elif status < 0 and -status in (signal.SIGTERM, signal.SIGINT):
            kind = 2  # stopped by a launcher: a consequence
        else:
            kind = 1  # exited, or aborted (NCCL's watchdog aborts a rank whose peer is gone)
        reports.append((kind, when.group(1) if when else "", order, status,
                        rank.group(1) if rank else None, code.group(2)))
    if not reports:
        return "the training processes stopped"
    _, _, _, status, rank, pid = min(reports)
    who = f"rank {rank}" if rank else "a rank"
    if pid:
        who += f" (pid {pid})"
    return f"{who} {how_it_ended(status)}; torchrun stopped the other ranks"


# --------------------------------------------------------------------------------------------------
# a rank (worker side)
# --------------------------------------------------------------------------------------------------

AGENT_PID = "GENBAC_AGENT_PID"  # the torchrun agent's pid, in its workers' environment
EXECUTOR_PID = "GENBAC_EXECUTOR_PID"  # the executor's, in the agents' it starts itself (not srun's)


COLLECTIVE_TIMEOUT = timedelta(hours=1)  # the longest a rank waits for the others


def init_rank(plan):
    """Join torchrun's process group: NCCL with one GPU per rank, or gloo on the CPU.
    Returns (rank, world size, device)."""
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    # Rank 0 alone writes the phase's Hugging Face export and removes old checkpoints while the
    # others wait in the next collective: tens of GB on a shared filesystem can outlast NCCL's
    # 10-minute default, whose watchdog would then abort the job at every rerun.
    timeout = COLLECTIVE_TIMEOUT
    if plan.spec.hardware.is_gpu:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device, timeout=timeout)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", timeout=timeout)
    return rank, world, device


if __name__ == "__main__":
    # the launcher: torchrun itself, stopped (and so its workers) when the executor dies, even
    # one that died as this started; under srun the parent is slurmstepd, and SLURM ends the steps
    executor = os.environ.pop(EXECUTOR_PID, None)
    die_with_parent(signal.SIGTERM, int(executor) if executor else None)
    os.environ[AGENT_PID] = str(os.getpid())  # the workers' parent (runtime/worker.py)
    from torch.distributed.run import main

    main()
