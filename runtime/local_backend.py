"""The local backend: the step plan's tool steps done by genbac itself, with PyTorch and
transformers on this machine (CPU, or CUDA devices; several processes through torchrun).

    prepare   genbac's tokenization and packing (runtime/data.py) instead of Model Zoo's HDF5
    convert   nothing: the local trainer reads the Hugging Face checkpoint in work/grown itself
    phase     one phase of the local trainer (runtime/train.py), resumed from its checkpoints

genbac's own steps (tokenizer, stage, base, grow) are runtime/steps.py's, as under every backend.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from genbac.compiler import artifact as layout
from genbac.compiler.artifact import Step
from genbac.compiler.plan import KEEP_CHECKPOINTS

from .context import Backend, Context, RunError
from .progress import Progress
from .steps import input_path


def tokenizer_dir(ctx: Context, step: Step | None = None):
    """The tokenizer a prepare step reads (the tokenizer step's output)."""
    steps = [step] if step is not None else [s for s in ctx.artifact.steps.steps
                                             if s.kind == "prepare"]
    for s in steps:
        for item in s.inputs:
            if item.holds == "tokenizer":
                return input_path(ctx, item)
    raise RunError("the spec names no tokenizer and its base has no weights to take one from")


def _patterns(ctx: Context, step: Step) -> list[str]:
    lang = ctx.plan.spec.language(step.language)
    return list(lang.sources if step.split == "train" else lang.eval)


def _packed(ctx: Context, code: str, patterns: list[str], tokenizer, split: str, log):
    """A language's packed sequences in the compiled directory's cache: the prepare step packs
    them, the phases read the same call's cached result."""
    from .data import prepare_language

    return prepare_language(code, patterns, ctx.project, tokenizer, ctx.plan.schedule.sequence,
                            ctx.path(layout.PACKED), split=split,
                            model_vocab=ctx.plan.growth.vocab, log=log)


def prepare(ctx: Context, step: Step):
    packed = _packed(ctx, step.language, _patterns(ctx, step), tokenizer_dir(ctx, step),
                     step.split, ctx.log)
    return {"metrics": {"sequences": packed.n_sequences, "tokens": packed.n_tokens}}


def convert(ctx: Context, step: Step):
    ctx.log(f"genbac: {step.name}: nothing to do under the local backend, which trains "
            f"{layout.GROWN} (Hugging Face format) itself")
    return {"params": {"skipped": "local backend: no Model Zoo checkpoint"}}


def baseline(ctx: Context, step: Step):
    ctx.log(f"genbac: {step.name}: the local trainer evaluates it at step 0 of phase-1, with the "
            "base model before growth beside it")
    return {"params": {"skipped": "local backend: evaluated at step 0 of phase-1"}}


class LocalBackend(Backend):
    """The step plan's tool steps done by genbac here."""

    name = "local"

    def prepare(self, ctx: Context, step: Step):
        return prepare(ctx, step)

    def convert(self, ctx: Context, step: Step):
        return convert(ctx, step)

    def baseline(self, ctx: Context, step: Step):
        return baseline(ctx, step)

    def phase(self, ctx: Context, step: Step):
        return _train_phase(ctx, ctx.run_id, step.phase)


def _load_data(ctx: Context):
    from .data import eval_batches

    plan = ctx.plan
    tok = tokenizer_dir(ctx)
    quiet = lambda *_: None  # noqa: E731
    train, evals = {}, {}
    for lang in plan.spec.languages:
        # prepared in the prepare steps: these calls read the cache
        train[lang.code] = _packed(ctx, lang.code, list(lang.sources), tok, "train", quiet)
        if lang.eval:
            packed = _packed(ctx, lang.code, list(lang.eval), tok, "val", quiet)
            evals[lang.code] = eval_batches(packed, plan.schedule.batch, plan.spec.train.eval_steps)
    return train, evals


def _train_phase(ctx: Context, run_id: str, index: int):
    """Phase `index` in this process, or in N processes through torchrun (`hardware = … x N`)."""
    # keep this step's MLflow run id now: a rerun after a crash or kill reopens the same run
    ctx.save_state()
    device = ctx.device  # chosen by preflight
    world = device.count if device is not None else 1
    from .sharding import sharding_of

    strategy = sharding_of(ctx.plan, world).strategy
    if world > 1 or strategy != "single":  # FSDP on one device still needs a process group
        return _train_phase_torchrun(ctx, run_id, index, world, strategy)

    import torch

    from .train import train_phase

    device = torch.device("cuda" if device is not None and device.kind == "cuda" else "cpu")
    run, state = setup_phase(ctx, index, device)
    if run is None:
        return None
    progress = Progress(run.phase, state.step, write=ctx.log)
    run.log_metrics, run.progress = _metric_logger(ctx, run_id), progress.update
    try:
        train_phase(run, state)
    finally:
        progress.close()
    return None


def _metric_logger(ctx: Context, run_id: str):
    """Each step's metrics to the phase's run and to the parent run (one curve over all phases);
    the step-0 baseline as runtime/baseline.py records it."""
    from . import metrics as names
    from .baseline import record as record_baseline

    parent = ctx.state["mlflow"]["parent"]

    def log_metrics(step: int, metrics: dict[str, float]) -> None:
        if step == names.BASELINE_STEP:
            record_baseline(ctx, run_id, metrics)
            return
        ctx.tracker.metrics(run_id, step, metrics)
        ctx.tracker.metrics(parent, step, metrics)

    return log_metrics


def base_before_growth(ctx: Context) -> Path | None:
    """The base model's weights where a grow step made the starting model, if the base can read
    the training tokenizer's ids (the vocabulary did not grow); else None."""
    plan = ctx.plan
    if plan.spec.growth is None or plan.growth.vocab != plan.growth.base_vocab:
        return None  # without growth the grow step copies the base: it is the starting model
    grow = next((s for s in ctx.artifact.steps.steps if s.kind == "grow"), None)
    return input_path(ctx, grow.inputs[0]) if grow is not None and grow.inputs else None


def setup_phase(ctx: Context, index: int, device, *, rank: int = 0, world: int = 1):
    """The model (resumed from the latest checkpoint), optimizer and data of phase `index` in this
    process, as a PhaseRun without callbacks, and the TrainState; (None, state) if the phase is
    already done. One process, or one rank of `world` (DDP or FSDP; runtime/worker.py)."""
    import torch

    from . import checkpoints
    from .data import Mixer
    from .sharding import build_sharded, enable_activation_checkpointing, sharding_of
    from .train import (PhaseRun, TrainState, apply_freezing, configure_device, load_model,
                        make_optimizer)

    plan = ctx.plan
    phase = plan.schedule.phases[index - 1]
    configure_device(device)
    torch.manual_seed(plan.spec.train.seed)
    sharding = sharding_of(plan, world)
    grown = ctx.path(layout.GROWN)
    if sharding.sharded:
        model = build_sharded(plan, grown, device, sharding)
    else:
        model = load_model(plan, grown)
        apply_freezing(plan, model)
        model.to(device)
        if sharding.activation_checkpointing:
            enable_activation_checkpointing(model)
    model.train()
    optimizer = make_optimizer(plan, model)
    saved = ctx.path(layout.CHECKPOINTS)
    state = TrainState()
    if rank == 0:  # what a kill mid-write left (under the run's lock: no one writes there now)
        from genbac import atomic
        atomic.clean_leftovers(saved, "step_")
        atomic.clean_leftovers(ctx.path(layout.export_dir(index)).parent, "phase-")
    latest = checkpoints.latest(saved)  # rank 0's, broadcast: after the tidy-up
    if world > 1:  # rank 0's choice for all: on a network filesystem listings can lag
        import torch.distributed as dist

        box = [None if latest is None else str(latest)]
        dist.broadcast_object_list(box, src=0)
        latest = None if box[0] is None else Path(box[0])
    if latest is not None:
        state = checkpoints.load(latest, plan, model, optimizer,
                                 checkpoints.Layout.of(sharding.strategy, rank, world))
        how = "resuming from" if state.step > phase.start_step else "starting from"
        ctx.log(f"{how} {latest.relative_to(ctx.compiled)} (step {state.step})")
    if state.step >= phase.end_step:
        return None, state
    train_data, eval_data = _load_data(ctx)
    mixer = Mixer(json.loads(plan.model_dump_json()), train_data, plan.spec.train.seed)
    ddp = None
    if sharding.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    forward = ddp
    if os.environ.get("GENBAC_COMPILE") == "1":  # `genbac run --compile`
        # under FSDP the sharded root module is compiled: its hooks gather each layer's shards
        forward = torch.compile(ddp if ddp is not None else model)
        ctx.log("torch.compile: the training forward pass is compiled (the first step waits "
                "for it)")
    base_dir = base_before_growth(ctx)

    def load_base():  # held as the trained model is: whole, or sharded like it
        layers = plan.growth.base_layers
        if sharding.sharded:
            return build_sharded(plan, base_dir, device, sharding, layers=layers)
        return load_model(plan, base_dir, layers=layers).to(device)

    run = PhaseRun(plan=plan, phase=phase, model=model, optimizer=optimizer, mixer=mixer,
                   eval_data=eval_data, checkpoint_dir=saved, device=device,
                   load_base=load_base if base_dir is not None else None,
                   micro_batch=sharding.micro_batch,
                   keep_checkpoints=plan.spec.train.keep_checkpoints or KEEP_CHECKPOINTS, rank=rank,
                   world=world, strategy=sharding.strategy, ddp=ddp, forward=forward,
                   export_dir=ctx.path(layout.export_dir(index)), config_dir=grown)
    return run, state


def _train_phase_torchrun(ctx: Context, run_id: str, index: int, world: int, strategy: str):
    """Launch the phase's ranks through torchrun and turn their events into MLflow records; the
    state file is only touched by execute(), after this returns."""
    import torch

    from .distributed import (EventLog, failure_summary, launch_commands, launch_for,
                              run_torchrun, world_problem)

    plan = ctx.plan
    hw = plan.spec.hardware
    problem = world_problem(plan, world, torch.cuda.device_count())
    if problem:
        raise RunError(problem)
    logs = ctx.path(layout.LOGS)
    logs.mkdir(parents=True, exist_ok=True)
    events = EventLog(logs / f"phase-{index}.events.jsonl")
    log_path = logs / f"phase-{index}.log"
    phase = plan.schedule.phases[index - 1]
    log_metrics = _metric_logger(ctx, run_id)
    # metrics an earlier attempt wrote but its executor, killed, did not log (others are skipped)
    for event in events.read_new():
        if "metrics" in event:
            log_metrics(event["step"], event["metrics"])
    events.clear()
    errors = []
    progress = Progress(phase, phase.start_step, write=ctx.log)

    def on_event(event: dict) -> None:
        if "metrics" in event:
            log_metrics(event["step"], event["metrics"])
            progress.update(event["step"], event["metrics"])
        elif "log" in event:
            ctx.log(event["log"])
        elif "error" in event:
            errors.append(event["error"])

    nodes = ctx.device.nodes if ctx.device is not None else 1
    launch = launch_for(nodes, world // nodes, f"phase{index}-{os.getpid()}-{time.time_ns()}")
    commands = launch_commands(launch, "genbac.runtime.worker", [
        str(ctx.compiled), str(index), "--project", str(ctx.project), "--events", str(events.path)])
    ctx.log(f"{world} process{'es' if world > 1 else ''}, {strategy.upper()} "
            f"({'NCCL' if hw.is_gpu else 'gloo'}), {launch.describe()}; their output: "
            f"{log_path.relative_to(ctx.compiled)}")
    logged_before = log_path.stat().st_size if log_path.exists() else 0
    try:
        status = run_torchrun(commands, launch.ranks_per_machine, log_path, events, on_event,
                              direct=launch.launcher != "slurm")
    finally:
        progress.close()
    if status == 0:
        return None
    if errors:
        raise RunError(errors[0])
    # killed or crashed: nothing was recorded as done, so a rerun resumes from the last checkpoint
    from .checkpoints import latest as latest_checkpoint

    latest = latest_checkpoint(ctx.path(layout.CHECKPOINTS))
    resume = (f"a rerun resumes from {latest.relative_to(ctx.compiled)}" if latest else
              "a rerun starts the phase again")
    with open(log_path, "rb") as f:  # this attempt's part of the log
        f.seek(logged_before)
        report = failure_summary(f.read().decode(errors="replace"))
    raise RunError(f"training stopped: {report}. "
                   f"The state file and checkpoints are intact; {resume}. Worker output: "
                   f"{log_path.relative_to(ctx.compiled)}")
