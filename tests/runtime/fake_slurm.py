"""A stand-in for SLURM's `srun` and `scontrol` on one machine, for the tests of slurm.sh and the
multi-node launch (tests/runtime/test_multinode.py); SLURM itself cannot run here.

    fake_slurm.py srun [--nodes=M | -N M] [--ntasks-per-node=1] [--kill-on-bad-exit=1] CMD...
    fake_slurm.py scontrol show hostnames [NODELIST]

It behaves as the real ones do where genbac depends on them: srun only runs inside a job
(SLURM_JOB_ID), refuses more nodes than the job has, starts one task per node with SLURM_NODEID,
SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS, SLURM_STEP_ID and SLURMD_NODENAME set (all on this
machine: the "nodes" share its loopback interface and filesystem), passes the tasks' output through,
forwards SIGINT/SIGTERM to them, and when a task fails reports it as srun does ("srun: error: NODE:
task N: Exited with exit code C" or "...: Killed"), stops the others under --kill-on-bad-exit
(SIGTERM, then SIGKILL after a grace period), and exits with the highest task status (128 + the
signal for a killed task). scontrol expands `a,b` and `node[0-3,7]` lists. Every srun call is
appended to $FAKE_SLURM_LOG as a JSON line (its argv and node count) for the tests to read.

$FAKE_SLURM_NODE_LOCAL=DIR makes DIR a node-local disk rather than a shared filesystem: on every
node but the first, a task's arguments under DIR name that node's own (empty) directory instead,
so a file written there on the first node is missing on the others, as on a cluster whose job
was submitted from a node's local /tmp.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

GRACE_S = 5  # real srun waits up to KillWait (often 30 s) before SIGKILL


def hostnames(nodelist: str) -> list[str]:
    out = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?", nodelist):
        m = re.fullmatch(r"(.*)\[(.*)\]", part)
        if not m:
            out.append(part)
            continue
        prefix, ranges = m.groups()
        for r in ranges.split(","):
            lo, _, hi = r.partition("-")
            for i in range(int(lo), int(hi or lo) + 1):
                out.append(f"{prefix}{str(i).zfill(len(lo))}")
    return out


def scontrol(args: list[str]) -> int:
    if args[:2] != ["show", "hostnames"]:
        print(f"scontrol: error: fake_slurm does not do {' '.join(args)}", file=sys.stderr)
        return 1
    nodelist = args[2] if len(args) > 2 else os.environ.get("SLURM_JOB_NODELIST", "")
    for host in hostnames(nodelist):
        print(host)
    return 0


def srun(args: list[str]) -> int:
    nodes, kill_on_bad_exit = None, False
    while args and args[0].startswith("-"):
        arg = args.pop(0)
        if arg.startswith("--nodes="):
            nodes = int(arg.split("=", 1)[1])
        elif arg == "-N":
            nodes = int(args.pop(0))
        elif arg in ("--kill-on-bad-exit=1", "--kill-on-bad-exit", "-K"):
            kill_on_bad_exit = True
        elif arg.startswith("--ntasks-per-node="):
            if arg != "--ntasks-per-node=1":
                print("srun: error: fake_slurm runs one task per node", file=sys.stderr)
                return 1
        else:
            print(f"srun: unrecognized option '{arg}'", file=sys.stderr)
            return 1
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        print("srun: error: Unable to allocate resources: no SLURM job here (fake_slurm runs "
              "inside a job only)", file=sys.stderr)
        return 1
    hosts = hostnames(os.environ.get("SLURM_JOB_NODELIST", ""))
    nodes = nodes or len(hosts)
    if nodes > len(hosts):
        print(f"srun: error: Only allocated {len(hosts)} nodes asked for {nodes}",
              file=sys.stderr)
        return 1
    step = _next_step()
    if os.environ.get("FAKE_SLURM_LOG"):
        with open(os.environ["FAKE_SLURM_LOG"], "a") as f:
            f.write(json.dumps({"nodes": nodes, "argv": args, "step": step}) + "\n")
    tasks = []
    for i in range(nodes):
        env = {**os.environ, "SLURM_NODEID": str(i), "SLURM_PROCID": str(i),
               "SLURM_LOCALID": "0", "SLURM_NTASKS": str(nodes), "SLURM_STEP_ID": str(step),
               "SLURMD_NODENAME": hosts[i]}
        tasks.append(subprocess.Popen(_as_seen_on(i, args), env=env))

    def forward(sig, _frame):
        for t in tasks:
            if t.poll() is None:
                t.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    reported = set()
    aborted = False
    while any(t.poll() is None for t in tasks) or len(reported) < len(
            [t for t in tasks if t.returncode]):
        for i, t in enumerate(tasks):
            if t.poll() not in (None, 0) and i not in reported:
                reported.add(i)
                how = ("Killed" if t.returncode < 0 else
                       f"Exited with exit code {t.returncode}")
                print(f"srun: error: {hosts[i]}: task {i}: {how}", file=sys.stderr, flush=True)
                if kill_on_bad_exit and not aborted:
                    aborted = True
                    print("srun: Job step aborted: Waiting up to 32 seconds for job step to "
                          "finish.", file=sys.stderr, flush=True)
                    _stop([x for x in tasks if x.poll() is None])
                    print(f"slurmstepd: error: *** STEP {job}.{step} ON {hosts[0]} CANCELLED AT "
                          f"{time.strftime('%Y-%m-%dT%H:%M:%S')} ***", file=sys.stderr,
                          flush=True)
        time.sleep(0.1)
    return max((128 - t.returncode if t.returncode < 0 else t.returncode) for t in tasks)


def _as_seen_on(node: int, args: list[str]) -> list[str]:
    """The task's arguments on node `node`: paths under a node-local $FAKE_SLURM_NODE_LOCAL name
    that node's own directory (on the first node, the one the job was submitted from, they are
    the same)."""
    local = os.environ.get("FAKE_SLURM_NODE_LOCAL")
    if not local or node == 0:
        return args
    local = os.path.abspath(local)
    own = os.path.join(os.path.dirname(local), f".fake-slurm-node{node}", os.path.basename(local))
    os.makedirs(own, exist_ok=True)
    return [own + arg[len(local):] if arg == local or arg.startswith(local + os.sep) else arg
            for arg in args]


def _stop(tasks) -> None:
    for t in tasks:
        t.terminate()
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and any(t.poll() is None for t in tasks):
        time.sleep(0.1)
    for t in tasks:
        if t.poll() is None:
            t.kill()
            t.wait()


def _next_step() -> int:
    """Job steps count up within a job, as SLURM numbers them."""
    path = os.environ.get("FAKE_SLURM_LOG")
    if not path or not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for _ in f)


if __name__ == "__main__":
    tool, *rest = sys.argv[1:]
    sys.exit({"srun": srun, "scontrol": scontrol}[tool](rest))
