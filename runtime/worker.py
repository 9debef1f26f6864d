"""One rank of a multi-process phase; torchrun starts N of these (see runtime/distributed.py):

    python -m torch.distributed.run --standalone --nproc-per-node N \\
        -m genbac.runtime.worker COMPILED_DIR PHASE --project DIR --events FILE

Every rank builds the same model, optimizer and data as a one-process run (executor.setup_phase)
and trains its slice of each global batch; rank 0 reports metrics and log lines to the executor
through its events file, and every rank writes its part of each checkpoint. A user error (bad
data, an unwritable directory) ends the rank with status 2 and the message in its events file,
never a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genbac.runtime.worker", description=__doc__)
    parser.add_argument("compiled", type=Path, help="the compiled experiment directory")
    parser.add_argument("phase", type=int, help="the phase index (1-based)")
    parser.add_argument("--project", type=Path, required=True, help="where the spec's paths start")
    parser.add_argument("--events", type=Path, required=True,
                        help="the name the events files (one per rank) are made from")
    args = parser.parse_args(argv)

    from .distributed import AGENT_PID, EventLog
    from .lifetime import die_with_parent

    # never outlive torchrun (see runtime/distributed.py), even one that died as this started
    agent = os.environ.get(AGENT_PID)
    die_with_parent(signal.SIGKILL, int(agent) if agent else None)
    # torchrun says each worker's rank before it joins the group: an error of the set-up is
    # written to that rank's own events file too
    events = EventLog(args.events, rank=int(os.environ.get("RANK", "0")))

    import torch.distributed as dist

    from genbac.compiler.artifact import Artifact
    from genbac.errors import UserError

    from .context import Context
    from .distributed import init_rank
    from .local_backend import setup_phase
    from .progress import Progress
    from .train import train_phase

    os.environ["GENBAC_PROJECT_DIR"] = str(args.project)  # as the executor resolved it
    rank = 0
    try:
        artifact = Artifact.load(args.compiled)
        rank, world, device = init_rank(artifact.plan)
        log = (lambda line: events.write(log=line)) if rank == 0 else (lambda line: None)
        ctx = Context(artifact, log=log)
        run, state = setup_phase(ctx, args.phase, device, rank=rank, world=world)
        if run is not None:
            run.log_metrics = lambda step, metrics: events.write(step=step, metrics=metrics)
            if rank == 0:  # a progress line in this rank's log (work/logs/phase-N.log)
                run.progress = Progress(run.phase, state.step, terminal=False,
                                        write=lambda line: print(line, flush=True)).update
            train_phase(run, state)
        # every rank leaves together: a rank that tears down its gloo connections while another
        # still talks to it makes that one abort (SIGABRT, seen once in a loaded test run)
        dist.barrier()
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        return _fail(events, rank, f"cannot write or read{where}: {exc.strerror or exc}")
    except UserError as exc:
        return _fail(events, rank, str(exc))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def _fail(events, rank: int, message: str) -> int:
    events.write(error=message, rank=rank)
    print(f"genbac: error: rank {rank}: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
