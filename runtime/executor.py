"""Execute a compiled directory with the local backend: a list of steps, a state file, resume.

    tokenizer -> base -> grow -> prepare-<lang>[-val] ... -> phase-1 ... phase-N

`work/state.json` records the spec hash and every finished step. A rerun skips finished steps and
resumes an interrupted phase from its latest checkpoint; a compiled directory whose spec hash differs
from the state's is refused (`--restart` starts over). Every step is a child run of one MLflow parent
run, reopened on resume.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from genbac.compiler.plan import Plan

from .runs import WORK_DIR_TAG


class RunError(Exception):
    """A problem the user can fix (bad input, mismatched state); reported without a traceback."""


@dataclass
class Context:
    compiled: Path
    project: Path
    plan: Plan
    state: dict
    tracker: object
    log: Callable[[str], None]

    @property
    def work(self) -> Path:
        return self.compiled / "work"

    def save_state(self) -> None:
        path = self.work / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True))
        os.replace(tmp, path)


@dataclass
class Step:
    name: str
    run: Callable[[Context, str], dict | None]  # (context, mlflow run id) -> metrics/params to log


# --------------------------------------------------------------------------------------------------
# steps
# --------------------------------------------------------------------------------------------------

def _tokenizer_dir(ctx: Context) -> Path:
    plan = ctx.plan
    if plan.tokenizer_training is not None:
        return ctx.work / "tokenizer"
    tok = plan.tokenizer
    if tok is None:
        raise RunError("the spec names no tokenizer and its base has no weights to take one from")
    if tok.startswith("hf:"):
        raise RunError(f"tokenizer {tok} is on the Hugging Face Hub, which is not reached at run "
                       "time: download it and give its directory as `tokenizer = \"…\"`")
    return (ctx.project / tok).resolve()


def _base_dir(ctx: Context) -> Path:
    weights = ctx.plan.base_weights
    if weights is None:
        return ctx.work / "base"
    if weights.startswith("hf:"):
        raise RunError(f"base weights {weights} are on the Hugging Face Hub, which is not reached "
                       "at run time: download them and give the directory in `base = … from "
                       "\"path\"`")
    return (ctx.project / weights).resolve()


def _grows(plan: Plan) -> bool:
    return plan.growth.method != "none" or plan.growth.vocab != plan.growth.base_vocab


def _weights_dir(ctx: Context) -> Path:
    return ctx.work / "grown" if _grows(ctx.plan) else _base_dir(ctx)


def step_tokenizer(ctx: Context, run_id: str):
    from .data import resolve_sources
    from .tokenizer import train_bpe_tokenizer

    files = []
    for lang in ctx.plan.spec.languages:
        files += resolve_sources(list(lang.sources), ctx.project)
    train_bpe_tokenizer(files, ctx.plan.tokenizer_training, ctx.work / "tokenizer")
    return {"params": {"vocab": str(ctx.plan.tokenizer_training), "files": str(len(files))}}


def step_base(ctx: Context, run_id: str):
    from .train import random_base

    random_base(ctx.plan, ctx.work / "base", ctx.plan.spec.train.seed)
    return {"params": {"init": "random", "seed": str(ctx.plan.spec.train.seed)}}


def step_grow(ctx: Context, run_id: str):
    from .grow import GrowError, run_grow

    try:
        report = run_grow(ctx.compiled / "plan.json", _base_dir(ctx), ctx.work / "grown",
                          log=ctx.log)
    except GrowError as exc:
        raise RunError(str(exc)) from None
    ctx.tracker.artifact(run_id, ctx.work / "grown" / "growth_report.json")
    verification = report.get("verification") or {}
    metrics = {}
    if verification.get("max_abs_diff") is not None:
        metrics["function_preservation_max_abs_diff"] = verification["max_abs_diff"]
    return {"metrics": metrics}


def step_prepare(code: str, split: str):
    def run(ctx: Context, run_id: str):
        from .data import DataError, prepare_language

        lang = ctx.plan.spec.language(code)
        patterns = list(lang.sources if split == "train" else lang.eval)
        try:
            packed = prepare_language(code, patterns, ctx.project, _tokenizer_dir(ctx),
                                      ctx.plan.schedule.sequence, ctx.work / "data", split=split,
                                      model_vocab=ctx.plan.growth.vocab, log=ctx.log)
        except DataError as exc:
            raise RunError(str(exc)) from None
        return {"metrics": {"sequences": packed.n_sequences, "tokens": packed.n_tokens}}

    return run


def step_phase(index: int):
    def run(ctx: Context, run_id: str):
        return _train_phase(ctx, run_id, index)

    return run


def _load_data(ctx: Context):
    from .data import eval_batches, prepare_language

    plan = ctx.plan
    tok = _tokenizer_dir(ctx)
    train, evals = {}, {}
    for lang in plan.spec.languages:
        # prepared in the prepare steps: these calls read the cache
        train[lang.code] = prepare_language(lang.code, list(lang.sources), ctx.project, tok,
                                            plan.schedule.sequence, ctx.work / "data",
                                            model_vocab=plan.growth.vocab, log=lambda *_: None)
        if lang.eval:
            packed = prepare_language(lang.code, list(lang.eval), ctx.project, tok,
                                      plan.schedule.sequence, ctx.work / "data", split="val",
                                      model_vocab=plan.growth.vocab, log=lambda *_: None)
            evals[lang.code] = eval_batches(packed, plan.schedule.batch, plan.spec.train.eval_steps)
    return train, evals


def _train_phase(ctx: Context, run_id: str, index: int):
    """Phase `index` in this process, or in N processes through torchrun (`hardware = … x N`)."""
    from .distributed import world_size

    # keep this step's MLflow run id now: a rerun after a crash or kill reopens the same run
    ctx.save_state()
    world = world_size(ctx.plan)
    if world > 1:
        return _train_phase_torchrun(ctx, run_id, index, world)

    import torch

    from .train import train_phase

    plan = ctx.plan
    device = torch.device("cuda" if torch.cuda.is_available() and plan.spec.hardware.kind in
                          ("h100", "a100") else "cpu")
    run, state = setup_phase(ctx, index, device)
    if run is None:
        return None
    bar = _Bar(run.phase, state.step)
    run.log_metrics, run.progress = _metric_logger(ctx, run_id), bar.update_to
    try:
        train_phase(run, state)
    finally:
        bar.close()
    return None


def _metric_logger(ctx: Context, run_id: str):
    """Each step's metrics to the phase's run and to the parent run (one curve over all phases)."""
    parent = ctx.state["mlflow"]["parent"]

    def log_metrics(step: int, metrics: dict[str, float]) -> None:
        ctx.tracker.metrics(run_id, step, metrics)
        ctx.tracker.metrics(parent, step, metrics)

    return log_metrics


def setup_phase(ctx: Context, index: int, device, *, rank: int = 0, world: int = 1):
    """The model (resumed from the latest checkpoint), optimizer and data of phase `index` in this
    process, as a PhaseRun without callbacks, and the TrainState; (None, state) if the phase is
    already done. One process, or one rank of `world` (DDP; runtime/worker.py)."""
    import torch

    from .data import Mixer
    from .train import (PhaseRun, TrainState, apply_freezing, configure_device, latest_checkpoint,
                        load_checkpoint, load_model, make_optimizer)

    plan = ctx.plan
    phase = plan.schedule.phases[index - 1]
    configure_device(device)
    torch.manual_seed(plan.spec.train.seed)
    model = load_model(plan, _weights_dir(ctx))
    apply_freezing(plan, model)
    model.to(device)
    model.train()
    optimizer = make_optimizer(plan, model)
    checkpoints = ctx.work / "checkpoints"
    state = TrainState()
    latest = latest_checkpoint(checkpoints)
    if latest is not None:
        state = load_checkpoint(latest, plan, model, optimizer)
        how = "resuming from" if state.step > phase.start_step else "starting from"
        ctx.log(f"{how} {latest.relative_to(ctx.compiled)} (step {state.step})")
    if state.step >= phase.end_step:
        return None, state
    train_data, eval_data = _load_data(ctx)
    mixer = Mixer(json.loads(plan.model_dump_json()), train_data, plan.spec.train.seed)
    ddp = None
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    forward = ddp
    if os.environ.get("GENBAC_COMPILE") == "1":  # `genbac run --compile`
        forward = torch.compile(ddp if ddp is not None else model)
    run = PhaseRun(plan=plan, phase=phase, model=model, optimizer=optimizer, mixer=mixer,
                   eval_data=eval_data, checkpoint_dir=checkpoints, device=device,
                   keep_checkpoints=plan.spec.train.keep_checkpoints or 3, rank=rank,
                   world=world, ddp=ddp, forward=forward)
    return run, state


def _train_phase_torchrun(ctx: Context, run_id: str, index: int, world: int):
    """Launch the phase's ranks through torchrun and turn their events into MLflow records; the
    state file is only touched by execute(), after this returns."""
    import torch

    from .distributed import (GPU_KINDS, EventLog, failure_summary, run_torchrun,
                              torchrun_command, world_problem)

    plan = ctx.plan
    hw = plan.spec.hardware
    problem = world_problem(plan, world, torch.cuda.device_count())
    if problem:
        raise RunError(problem)
    logs = ctx.work / "logs"
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
    bar = _Bar(phase, phase.start_step)

    def on_event(event: dict) -> None:
        if "metrics" in event:
            log_metrics(event["step"], event["metrics"])
            bar.update_to(event["step"])
        elif "log" in event:
            ctx.log(event["log"])
        elif "error" in event:
            errors.append(event["error"])

    command = torchrun_command(world, "genbac.runtime.worker", [
        str(ctx.compiled), str(index), "--project", str(ctx.project), "--events", str(events.path)])
    ctx.log(f"{world} processes ({'NCCL' if hw.kind in GPU_KINDS else 'gloo'}) through torchrun; "
            f"their output: {log_path.relative_to(ctx.compiled)}")
    logged_before = log_path.stat().st_size if log_path.exists() else 0
    try:
        status = run_torchrun(command, world, log_path, events, on_event)
    finally:
        bar.close()
    if status == 0:
        return None
    if errors:
        raise RunError(errors[0])
    # killed or crashed: nothing was recorded as done, so a rerun resumes from the last checkpoint
    from .train import latest_checkpoint

    latest = latest_checkpoint(ctx.work / "checkpoints")
    resume = (f"a rerun resumes from {latest.relative_to(ctx.compiled)}" if latest else
              "a rerun starts the phase again")
    with open(log_path, "rb") as f:  # this attempt's part of the log
        f.seek(logged_before)
        report = failure_summary(f.read().decode(errors="replace"))
    raise RunError(f"training stopped: {report}. "
                   f"The state file and checkpoints are intact; {resume}. Worker output: "
                   f"{log_path.relative_to(ctx.compiled)}")


class _Bar:
    def __init__(self, phase, start):
        from tqdm import tqdm

        self.tqdm = tqdm(total=phase.steps, initial=max(0, start - phase.start_step),
                         desc=f"phase {phase.index}", unit="step", leave=False,
                         disable=None)  # None: off when not a terminal
        self.base = phase.start_step

    def update_to(self, step: int) -> None:
        self.tqdm.update(step - self.base - self.tqdm.n)

    def close(self) -> None:
        self.tqdm.close()


def steps_for(plan: Plan) -> list[Step]:
    steps = []
    if plan.tokenizer_training is not None:
        steps.append(Step("tokenizer", step_tokenizer))
    if plan.base_weights is None:
        steps.append(Step("base", step_base))
    if _grows(plan):
        steps.append(Step("grow", step_grow))
    for lang in plan.spec.languages:
        steps.append(Step(f"prepare-{lang.code}", step_prepare(lang.code, "train")))
        if lang.eval:
            steps.append(Step(f"prepare-{lang.code}-val", step_prepare(lang.code, "val")))
    for phase in plan.schedule.phases:
        steps.append(Step(f"phase-{phase.index}", step_phase(phase.index)))
    return steps


# --------------------------------------------------------------------------------------------------
# the executor
# --------------------------------------------------------------------------------------------------

def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that mean bad input (a missing file, a mismatched tokenizer), not a genbac bug."""
    from .data import DataError
    from .grow import GrowError
    from .train import TrainError

    return (DataError, GrowError, TrainError, RunError)


def load_compiled(compiled: Path) -> tuple[Plan, dict]:
    try:
        manifest = json.loads((compiled / "manifest.json").read_text())
        plan = Plan.model_validate_json((compiled / "plan.json").read_text())
    except FileNotFoundError as exc:
        raise RunError(f"{compiled} is not a compiled experiment (no {Path(exc.filename).name}); "
                       "run `genbac compile` first") from None
    except ValueError as exc:
        raise RunError(f"{compiled}/plan.json cannot be read: {str(exc).splitlines()[0]}") from None
    if manifest.get("spec_hash") != plan.spec_hash:
        raise RunError(f"{compiled}: manifest.json and plan.json disagree on the spec hash; "
                       "recompile")
    return plan, manifest


def execute(compiled: Path, *, tracking_uri: str, restart: bool = False,
            log: Callable[[str], None] = print, backend: str = "local") -> dict:
    """Run the compiled experiment's steps; `backend` picks them: "local" (this module) or "cszoo"
    (runtime/cszoo_backend.py: Model Zoo's `cszoo` commands). One execution per directory at a
    time (runtime/runlock.py)."""
    from .runlock import LockError, RunLock

    compiled = compiled.resolve()
    plan, manifest = load_compiled(compiled)
    try:  # (only the lock raises LockError)
        with RunLock(compiled / "work") as lock:
            if lock.unguarded:
                log(f"genbac: warning: {lock.path.parent} is on a filesystem without file locks; "
                    "nothing stops a second `genbac run` of this directory")
            return _execute(compiled, plan, manifest, lock, tracking_uri=tracking_uri,
                            restart=restart, log=log, backend=backend)
    except LockError as exc:
        raise RunError(str(exc)) from None


def _execute(compiled: Path, plan: Plan, manifest: dict, lock, *, tracking_uri: str,
             restart: bool, log: Callable[[str], None], backend: str) -> dict:
    from genbac import __version__

    from .runlock import LOCK_NAME
    from .tracking import Tracker, flatten, git_commit

    project = Path(os.environ.get("GENBAC_PROJECT_DIR") or
                   compiled / manifest.get("project_dir", ".")).resolve()
    work = compiled / "work"
    state_path = work / "state.json"
    if restart and work.exists():
        _abandon_previous(state_path, log)
        for child in work.iterdir():
            if child.name == LOCK_NAME:
                continue  # held by this execution
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state and state.get("spec_hash") != plan.spec_hash:
        raise RunError(
            f"{work} holds a run of another version of this experiment (spec "
            f"{state.get('spec_hash', '?')[:12]}, now {plan.spec_hash[:12]}); its checkpoints do "
            "not fit the new plan. Rerun with --restart to start over (this deletes work/).")
    if state and state.get("backend", "local") != backend:
        raise RunError(
            f"{work} holds a run of the {state.get('backend', 'local')} backend; its steps and "
            f"checkpoints are not the {backend} backend's. Rerun with --backend "
            f"{state.get('backend', 'local')}, or with --restart to start over (this deletes "
            "work/).")
    state.setdefault("spec_hash", plan.spec_hash)
    state.setdefault("done", [])
    state.setdefault("backend", backend)
    if backend == "cszoo":
        from .cszoo_backend import steps_for as backend_steps
    else:
        backend_steps = steps_for
    tracker = Tracker(tracking_uri, plan.name, state)
    ctx = Context(compiled, project, plan, state, tracker, log)
    parent = tracker.parent(plan.name, {
        "genbac.spec_hash": plan.spec_hash, "genbac.version": __version__,
        "genbac.backend": backend, "genbac.hardware": plan.spec.hardware.describe(),
        WORK_DIR_TAG: str(work),
        **({"mlflow.source.git.commit": c} if (c := git_commit(project)) else {})})
    lock.note(run_id=parent)
    ctx.save_state()
    if not state.get("logged_inputs"):
        tracker.params(parent, flatten("", json.loads(plan.spec.model_dump_json()), {}))
        for name in ("spec.genba", "plan.json"):
            tracker.artifact(parent, compiled / name)
        for path in sorted((compiled / "cszoo").rglob("*.yaml")):
            tracker.artifact(parent, path, "configs/" + str(path.parent.relative_to(compiled)))
        from .plot import mixture_plot

        png = work / "mixture.png"
        mixture_plot(plan, png)
        tracker.artifact(parent, png)
        state["logged_inputs"] = True
        ctx.save_state()

    try:
        for step in backend_steps(plan):
            if step.name in state["done"]:
                log(f"genbac: skip {step.name} (done)")
                continue
            started = time.perf_counter()
            log(f"genbac: {step.name} ...")
            run_id = tracker.child(step.name)
            try:
                result = step.run(ctx, run_id) or {}
            except OSError as exc:
                tracker.finish(run_id, status="FAILED")
                where = f" {exc.filename}" if exc.filename else ""
                raise RunError(f"{step.name}: cannot write or read{where}: "
                               f"{exc.strerror or exc}") from None
            except Exception as exc:
                tracker.finish(run_id, status="FAILED")
                if isinstance(exc, _user_errors()):
                    raise RunError(f"{step.name}: {exc}") from None
                raise
            except BaseException:  # Ctrl-C, SIGTERM (see cli), SystemExit
                tracker.finish(run_id, status="KILLED")
                raise
            if result.get("params"):
                tracker.params(run_id, result["params"])
            if result.get("metrics"):
                tracker.metrics(run_id, 0, result["metrics"])
            tracker.finish(run_id)
            state["done"].append(step.name)
            ctx.save_state()
            log(f"genbac: {step.name} done in {time.perf_counter() - started:.1f} s")
    except BaseException as exc:
        interrupted = not isinstance(exc, Exception)
        tracker.finish(parent, status="KILLED" if interrupted else "FAILED")
        raise
    tracker.finish(parent)
    return state


def _abandon_previous(state_path: Path, log: Callable[[str], None]) -> None:
    """Before --restart wipes work/: the earlier execution's MLflow runs that are still RUNNING
    (killed without a chance to say so; this process holds the lock, so none is alive) become
    KILLED, so that the store does not show them running forever."""
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        return
    from .tracking import close_abandoned

    runs = state.get("mlflow", {})
    ids = [runs.get("parent"), *runs.get("children", {}).values()]
    if runs.get("tracking_uri") and any(ids):
        closed = close_abandoned(runs["tracking_uri"], [i for i in ids if i])
        if closed:
            log(f"genbac: marked {closed} MLflow run(s) of the interrupted execution as KILLED")
