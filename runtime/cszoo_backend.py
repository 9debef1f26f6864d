"""The cszoo backend: the step plan's tool steps run through Cerebras Model Zoo's `cszoo` command,
in the same resumable executor as the local backend (runtime/executor.py).

The commands are the step plan's (steps.json), as run.sh runs them: `cszoo data_preprocess run
--config …` per job, `cszoo checkpoint convert … --tgt-fmt cs-2.9` and one `cszoo fit` over the
multi-phase cszoo/train.yaml; genbac's own steps (tokenizer, stage, base, grow) are
runtime/steps.py's, under every backend. That fit is a single process; its phases become
one executor step (and one MLflow child run) each: phase k's step reads the process's output until
Model Zoo reports phase k's trainer done (`Processed N training sample(s) …`) and its checkpoint
at the phase's last step is listed (Model Zoo prints that line also when a fit fails), and the next
step
goes on reading the same process. Output is streamed to the user and to work/logs/, parsed live
(runtime/cszoo_logs.py) and completed from the TensorBoard event files at every checkpoint.

Resume. Model Zoo resumes by loading a checkpoint, but which states to load depends on where the
latest one is, which a static config cannot know: mid-phase every state (model, optimizer, global
step, schedulers, dataloader position) must come back, while at a phase boundary the dataloader
state must not (the mixture changes: reference §4.2), and phase 1 from base weights names the
converted checkpoint in fit.ckpt_path, which would restart phase 1 from the base. So a rerun with a
checkpoint in work/model_dir writes work/resume.yaml: train.yaml without the finished phases, the
first remaining phase pointed at the latest checkpoint (fit.ckpt_path, as Model Zoo's own
autorestart does) with all states mid-phase. Nothing is passed as --checkpoint_path: on the command
line it would apply to every phase (reference §4.2).
"""

from __future__ import annotations

import collections
import copy
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from genbac.compiler.artifact import CONVERTED, GROWN, MODEL_DIR, RESUME_YAML, TRAIN_YAML, Step
from genbac.text import comment_line

from . import cszoo_logs as logs
from . import metrics as names
from .baseline import record as record_baseline
from .context import Backend, Context, RunError
from .lifetime import die_with_parent
from .progress import Progress

CSZOO_ENV = "GENBAC_CSZOO"
MISSING = (
    "the cszoo backend runs `cszoo`, the command of the Cerebras Model Zoo (2.10), which is "
    "installed on Cerebras user nodes (or by hand from a Model Zoo checkout); {where}. "
    "Set " + CSZOO_ENV + "=/path/to/cszoo if it is installed elsewhere, or rehearse the "
    "experiment here with --backend local")


def find_cszoo_or_none() -> str | None:
    try:
        return find_cszoo()
    except RunError:
        return None


def find_cszoo() -> str:
    """The `cszoo` executable: $GENBAC_CSZOO, else the one on PATH."""
    explicit = os.environ.get(CSZOO_ENV)
    if explicit:
        path = shutil.which(explicit)
        if path is None:
            raise RunError(MISSING.format(where=f"{CSZOO_ENV}={explicit} is not an executable"))
        return path
    path = shutil.which("cszoo")
    if path is None:
        raise RunError(MISSING.format(where="it is not on PATH"))
    return path


# --------------------------------------------------------------------------------------------------
# subprocesses: argument lists only, output streamed to the user and to work/logs/<name>.log
# --------------------------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the child: get SIGTERM when genbac dies (even by kill -9), so no orphaned fit keeps
    writing checkpoints under a rerun."""
    die_with_parent(signal.SIGTERM)


class Process:
    """One `cszoo` command with its output teed line by line."""

    TAIL = 400  # lines kept for the error diagnosis

    def __init__(self, ctx: Context, argv: list[str], name: str):
        self.argv = argv
        log_dir = ctx.work / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self.file = self.log_path.open("a", encoding="utf-8")
        self.file.write(f"\n# genbac {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                        f"{shlex.join(argv)}\n")
        self.file.flush()
        self.tail: collections.deque[str] = collections.deque(maxlen=self.TAIL)
        self.echo = ctx.log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            argv, cwd=ctx.compiled, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace", bufsize=1,
            env=env, preexec_fn=_die_with_parent if sys.platform == "linux" else None)

    def lines(self):
        for line in self.proc.stdout:
            self.file.write(line)
            self.file.flush()
            self.tail.append(line)
            self.echo(line.rstrip("\n"))
            yield line

    def finish(self) -> int:
        """Read what is left, wait, close; the exit status."""
        for _ in self.lines():
            pass
        rc = self.proc.wait()
        self.file.close()
        return rc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.file.close()

    def failure(self, rc: int, compiled: Path) -> RunError:
        what = logs.diagnose(list(self.tail)) or "see the output above"
        return RunError(f"`{shlex.join(self.argv)}` failed (exit status {rc}): {what}\n"
                        f"  full output: {self.log_path.relative_to(compiled)}")


def run_command(ctx: Context, argv: list[str], name: str, on_line=None) -> Process:
    """Run to the end (each output line to `on_line` as it comes); a failure raises RunError."""
    process = Process(ctx, argv, name)
    try:
        for line in process.lines():
            if on_line is not None:
                on_line(line)
        rc = process.finish()
    except BaseException:
        process.stop()
        raise
    if rc != 0:
        raise process.failure(rc, ctx.compiled)
    return process


# --------------------------------------------------------------------------------------------------
# the tool's steps: the step plan's command, as run.sh runs it
# --------------------------------------------------------------------------------------------------

def command(step: Step) -> list[str]:
    """The step's argv with its tool found here."""
    return [find_cszoo(), *step.argv[1:]]


def prepare(ctx: Context, step: Step):
    out = ctx.path(step.outputs[0])
    if step.fresh:
        shutil.rmtree(out, ignore_errors=True)
    run_command(ctx, command(step), step.name)
    try:
        stats = json.loads((out / "data_params.json").read_text())["post-process"]
    except (OSError, ValueError, KeyError):
        raise RunError(f"cszoo data_preprocess wrote no {step.outputs[0]}/data_params.json; see "
                       "the output above") from None
    if not stats.get("n_examples"):
        raise RunError(f"preprocessing {step.job} produced no sequences: the sources are shorter "
                       f"than one sequence of {ctx.plan.schedule.sequence} tokens")
    return {"metrics": {"sequences": stats["n_examples"], "tokens": stats.get("num_tokens", 0)}}


def convert(ctx: Context, step: Step):
    """Hugging Face -> cs-2.9 (the public 2.10 converter stops there; 2.10 loads it). Its
    config_to_cs-2.9.yaml is not used: train.yaml's model section comes from the plan, without the
    keys 2.10 rejects (norm_first, use_ff_layer1_dropout)."""
    run_command(ctx, command(step), step.name)
    if not ctx.path(CONVERTED).exists():
        raise RunError(f"cszoo checkpoint convert finished but wrote no {CONVERTED}")
    return None


def baseline(ctx: Context, step: Step):
    """`cszoo validate_all` of the converted checkpoint: each language's validation loss before
    the first update, recorded as the local trainer's step-0 baseline is (runtime/baseline.py).
    The log lines give the values as they come; the event files, read after, the unrounded ones."""
    layout = logs.layout_from_plan(ctx.plan)
    out = ctx.path(step.outputs[0])
    if step.fresh:
        shutil.rmtree(out, ignore_errors=True)
    follower, found = logs.LineFollower(layout), {}

    def take(line: str) -> None:
        for point in follower.feed(logs.parse_line(line)):
            found.update(point.metrics)

    process = run_command(ctx, command(step), step.name, on_line=take)
    for path in logs.event_files(out):
        for point in logs.scalar_metrics(layout, logs.read_events(path)):
            found.update(point.metrics)
    missing = [code for code in layout.eval_languages if names.val_loss(code) not in found]
    if missing:
        raise RunError(f"`cszoo validate_all` reported no validation loss for "
                       f"{', '.join(missing)}; see {process.log_path.relative_to(ctx.compiled)}")
    from .grow import read_verification  # light: its torch is imported by its verification

    # Model Zoo evaluates the grown model only; the grow step compared it with the base
    growth_check = read_verification(ctx.path(GROWN)) if ctx.plan.spec.growth else None
    record_baseline(ctx, ctx.run_id, {names.val_loss(code): found[names.val_loss(code)]
                                      for code in layout.eval_languages}, growth_check)
    return None


# --------------------------------------------------------------------------------------------------
# checkpoints and the resume config (pure where possible)
# --------------------------------------------------------------------------------------------------

CHECKPOINT = re.compile(r"checkpoint_(?P<step>\d+)(?:_(?P<ts>\d{8}_\d{6}))?\.mdl$")


def latest_of(paths: list[str]) -> tuple[str, int] | None:
    """Model Zoo's "latest checkpoint": highest step, then newest timestamp suffix (§4.2)."""
    found = []
    for path in paths:
        if m := CHECKPOINT.search(Path(path).name):
            found.append((int(m["step"]), m["ts"] or "", path))
    if not found:
        return None
    step, _, path = max(found)
    return path, step


def latest_checkpoint(compiled: Path) -> tuple[str, int] | None:
    """The latest complete checkpoint in work/model_dir, as a path relative to the compiled
    directory. Model Zoo lists a checkpoint in checkpoints_index.yaml once it is written, so a file
    cut short by a kill is not in it."""
    model_dir = compiled / MODEL_DIR
    index = model_dir / "checkpoints_index.yaml"
    if index.exists():
        try:
            listed = yaml.safe_load(index.read_text()) or []
        except yaml.YAMLError:
            listed = []
        paths = [p for p in listed if isinstance(p, str) and (compiled / p).is_file()]
    else:
        paths = [str(p.relative_to(compiled)) for p in model_dir.glob("checkpoint_*.mdl")]
    return latest_of(paths)


def resume_trainers(trainers: list[dict], phases: tuple[logs.PhaseSpan, ...], ckpt: str,
                    step: int) -> list[dict]:
    """The multi-phase trainer list that continues from checkpoint `ckpt` at global step `step`:
    finished phases dropped; the first remaining one loads `ckpt` explicitly, all of its states if
    the checkpoint is from inside that phase, or what the compiled phase loads (no dataloader
    state: the mixture changed) if it is the previous phase's last."""
    out = []
    for trainer, phase in zip(trainers, phases):
        if phase.end_step <= step:
            continue
        trainer = copy.deepcopy(trainer)
        if not out:
            init, fit = trainer["trainer"]["init"], trainer["trainer"]["fit"]
            fit["ckpt_path"] = ckpt
            callbacks = [c for c in init.get("callbacks", []) if "LoadCheckpointStates" not in c]
            states = "all" if step > phase.start_step else next(
                (c["LoadCheckpointStates"]["load_checkpoint_states"]
                 for c in init.get("callbacks", []) if "LoadCheckpointStates" in c), "all")
            init["callbacks"] = callbacks + [
                {"LoadCheckpointStates": {"load_checkpoint_states": states}}]
        out.append(trainer)
    return out


# --------------------------------------------------------------------------------------------------
# metrics into MLflow
# --------------------------------------------------------------------------------------------------

class MetricSink:
    """Logs points to MLflow runs, never a (metric, step) the run already holds: a rerun that reads
    the event files again, or a line and an event with the same metric, adds nothing. (The
    tracker's rule, per metric: Model Zoo reports validation after the training step it follows.)"""

    def __init__(self, client):
        self.client = client
        self._last: dict[tuple[str, str], int] = {}

    def last(self, run_id: str, key: str) -> int:
        if (run_id, key) not in self._last:
            history = self.client.get_metric_history(run_id, key)
            self._last[run_id, key] = max((m.step for m in history), default=-1)
        return self._last[run_id, key]

    def log(self, run_id: str, points: list[logs.Point]) -> int:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = []
        for step, metrics in points:
            for key, value in sorted(metrics.items()):
                if step > self.last(run_id, key):
                    batch.append(Metric(key, float(value), now, step))
                    self._last[run_id, key] = step
        for i in range(0, len(batch), 500):
            self.client.log_batch(run_id, metrics=batch[i:i + 500])
        return len(batch)


# --------------------------------------------------------------------------------------------------
# the fit: one process, one step per phase
# --------------------------------------------------------------------------------------------------

class Fit:
    """The `cszoo fit` process shared by the phase steps."""

    def __init__(self, layout: logs.Layout):
        self.layout = layout
        self.process: Process | None = None
        self.follower = logs.LineFollower(self.layout)
        self.sink: MetricSink | None = None

    def _runs(self, ctx: Context, index: int, run_id: str) -> dict[int, str]:
        children = ctx.state["mlflow"].get("children", {})
        runs = {p.index: children[f"phase-{p.index}"] for p in self.layout.phases
                if f"phase-{p.index}" in children}
        runs[index] = run_id
        return runs

    def _log(self, ctx: Context, runs: dict[int, str], points: list[logs.Point]) -> None:
        if self.sink is None:
            self.sink = MetricSink(ctx.tracker.client)
        self.sink.log(ctx.state["mlflow"]["parent"], points)
        for phase, phase_points in logs.by_phase(self.layout, points).items():
            if phase in runs:
                self.sink.log(runs[phase], phase_points)

    def ingest_events(self, ctx: Context, runs: dict[int, str]) -> None:
        scalars = []
        for path in logs.event_files(ctx.compiled / MODEL_DIR):
            scalars += logs.read_events(path)
        self._log(ctx, runs, logs.scalar_metrics(self.layout, scalars))

    def _start(self, ctx: Context, step: Step) -> bool:
        """Start the fit for the step's phase onwards; False if that phase is already trained."""
        index = step.phase
        phase = self.layout.phases[index - 1]
        latest = latest_checkpoint(ctx.compiled)
        if latest is None and index > 1:
            raise RunError(f"phase-{index - 1} is done but {MODEL_DIR} holds no checkpoint to "
                           "continue from; rerun with --restart")
        if latest is not None and latest[1] >= phase.end_step:
            ctx.log(f"genbac: {latest[0]} is at step {latest[1]}: phase {index} is trained")
            return False
        config = step.argv[-1]  # the compiled train.yaml
        if latest is not None:
            path, at = latest
            trainers = yaml.safe_load((ctx.compiled / TRAIN_YAML).read_text())["trainer"]
            resumed = resume_trainers(trainers, self.layout.phases, path, at)
            how = "resuming phase" if at > phase.start_step else "starting phase"
            ctx.log(f"genbac: {how} {index} from {path} (step {at}); config {RESUME_YAML}")
            (ctx.compiled / RESUME_YAML).write_text(  # the path may hold any character
                "# written by genbac run --backend cszoo: cszoo/train.yaml continued from "
                f"{comment_line(path)}\n" + yaml.safe_dump({"trainer": resumed}, sort_keys=False))
            config = RESUME_YAML
        self.process = Process(ctx, [*command(step)[:-1], config], step.process or step.name)
        self.follower = logs.LineFollower(self.layout)
        return True

    def run_phase(self, ctx: Context, step: Step):
        ctx.save_state()  # the phase's run id: a rerun after a crash reopens this run
        index, run_id = step.phase, ctx.run_id
        phase = self.layout.phases[index - 1]
        runs = self._runs(ctx, index, run_id)
        last = index == len(self.layout.phases)
        if self.process is None and not self._start(ctx, step):
            self.ingest_events(ctx, runs)
            return None
        process = self.process
        # Model Zoo prints its own step lines; genbac adds the phase's share, tokens/s and time
        # left every 30 s, as under the local backend, never a bar among Model Zoo's lines
        saved = latest_checkpoint(ctx.compiled)  # where this attempt starts
        progress = Progress(ctx.plan.schedule.phases[index - 1],
                            saved[1] if saved else phase.start_step, write=ctx.log,
                            terminal=False)
        try:
            for line in process.lines():
                record = logs.parse_line(line)
                points = self.follower.feed(record)
                if points:
                    self._log(ctx, runs, points)
                    for point in points:
                        if names.LOSS in point.metrics and \
                                phase.start_step < point.step <= phase.end_step:
                            progress.update(point.step, point.metrics)
                if isinstance(record, logs.CheckpointSaved):
                    self.ingest_events(ctx, runs)
                elif isinstance(record, logs.PhaseDone) and self._trained(ctx, phase):
                    # Model Zoo prints this line also when a fit fails (`Processed 0 training
                    # sample(s)`): only a checkpoint at the phase's last step says it is done
                    ctx.tracker.params(run_id, {"processed_samples": str(record.samples),
                                                "processed_seconds": f"{record.seconds:.1f}"})
                    if not last:
                        self.ingest_events(ctx, runs)
                        return None
            rc = process.finish()
        except BaseException:
            process.stop()
            self.process = None
            raise
        self.process = None
        self.ingest_events(ctx, runs)
        if rc != 0:
            raise process.failure(rc, ctx.compiled)
        latest = latest_checkpoint(ctx.compiled)
        if not last or latest is None or latest[1] < self.layout.phases[-1].end_step:
            raise RunError(f"`cszoo fit` ended before phase {index} was trained (latest "
                           f"checkpoint: {latest[0] if latest else 'none'}); see "
                           f"{process.log_path.relative_to(ctx.compiled)}")
        return None

    @staticmethod
    def _trained(ctx: Context, phase: logs.PhaseSpan) -> bool:
        latest = latest_checkpoint(ctx.compiled)
        return latest is not None and latest[1] >= phase.end_step


class CszooBackend(Backend):
    """The step plan's tool steps through Model Zoo's `cszoo`."""

    name = "cszoo"

    def __init__(self, plan):
        super().__init__(plan)
        self.fit = Fit(logs.layout_from_plan(plan))

    def prepare(self, ctx: Context, step: Step):
        return prepare(ctx, step)

    def convert(self, ctx: Context, step: Step):
        return convert(ctx, step)

    def baseline(self, ctx: Context, step: Step):
        return baseline(ctx, step)

    def phase(self, ctx: Context, step: Step):
        return self.fit.run_phase(ctx, step)
