"""The bridge from Cerebras Model Zoo's output to genbac's metrics: pure parsing and mapping.

Model Zoo has no MLflow logger (reference §6.1), so genbac reads what it writes:

- console lines (§6.5), parsed as they stream: `| Train Device=…, Step=…, Loss=…, Rate=…` for
  training, `Starting val_dataloader_<n> loop`, `| Eval … GlobalStep=…`, `Avg Eval Loss: …` and
  `  - eval/<metric> = …` for validation, `Starting train loop … from global step a to b` and
  `Processed N training sample(s) in S seconds.` around each phase;
- TensorBoard event files under `<model_dir>/events/` (§6.3), read when a phase ends or on resume:
  the complete, unrounded record (loss, `lr/0`, grad norm, sample rates, `validate_<k>/…`).

Both become `(global step, {metric: value})` points under the local backend's metric names (`loss`,
`lr`, `grad_norm`, `tokens_per_sec`, `step_time_s`, `val_loss/<lang>`: runtime/metrics.py),
so runs of either backend compare in MLflow. Nothing here does I/O except `read_events`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple

from . import metrics as names

_NUM = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)"

# ProgressLogger.print_training_progress (reference §6.5); every field after Step is optional.
TRAIN = re.compile(
    r"\| Train Device=(?P<device>\S+), Step=(?P<step>\d+)"
    rf"(?:, Loss=(?P<loss>{_NUM}))?"
    rf"(?:, Rate=(?P<rate>{_NUM}) samples/sec)?"
    rf"(?:, GlobalRate=(?P<global_rate>{_NUM}) samples/sec)?")
EVAL = re.compile(rf"\| Eval Device=(?P<device>\S+), GlobalStep=(?P<step>\d+), Batch=(?P<batch>\d+)"
                  rf"(?:, Loss=(?P<loss>{_NUM}))?")
EVAL_START = re.compile(r"Starting (?P<name>\S+) loop \d+ of \d+")
TRAIN_START = re.compile(r"Starting train loop (?P<loop>\d+) of \d+, from global step (?P<first>\d+) "
                         r"to (?P<last>\d+)")
AVG_EVAL = re.compile(rf"Avg Eval Loss: (?P<value>{_NUM})")
EVAL_METRIC = re.compile(rf"^\s*- eval/(?P<name>[\w.]+) = (?P<value>{_NUM})\s*$")
PROCESSED = re.compile(r"Processed (?P<samples>\d+) training sample\(s\) in "
                       rf"(?P<seconds>{_NUM}) seconds")
SAVED = re.compile(r"Saved checkpoint (?P<path>\S+?checkpoint_(?P<step>\d+)(?:_\d{8}_\d{6})?\.mdl)")
# the logging prefix, "%(asctime)s %(levelname)s:   " (reference §6.5); absent with
# USE_SHORT_INFO_LOGGING
PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+:\s{3}")


# --------------------------------------------------------------------------------------------------
# records: one parsed line
# --------------------------------------------------------------------------------------------------

class Train(NamedTuple):
    step: int
    loss: float | None
    rate: float | None  # samples/s, Model Zoo's smoothed recent rate
    global_rate: float | None  # samples/s since the trainer started


class EvalBatch(NamedTuple):
    step: int  # the global (training) step being evaluated
    batch: int
    loss: float | None


class EvalStart(NamedTuple):
    dataloader: str  # e.g. val_dataloader_2: numbered per process, not per phase


class EvalAverage(NamedTuple):
    loss: float


class EvalMetric(NamedTuple):
    name: str  # lm_perplexity, accuracy
    value: float


class TrainStart(NamedTuple):
    loop: int  # 1 = a new Trainer: a phase starts (or resumes)
    first: int
    last: int


class PhaseDone(NamedTuple):
    samples: int
    seconds: float


class CheckpointSaved(NamedTuple):
    path: str
    step: int


Record = Train | EvalBatch | EvalStart | EvalAverage | EvalMetric | TrainStart | PhaseDone | \
    CheckpointSaved


def _f(text: str | None) -> float | None:
    return None if text is None else float(text)


def parse_line(line: str) -> Record | None:
    """One console line -> a record, or None for everything genbac does not read."""
    if m := TRAIN.search(line):
        return Train(int(m["step"]), _f(m["loss"]), _f(m["rate"]), _f(m["global_rate"]))
    if m := EVAL.search(line):
        return EvalBatch(int(m["step"]), int(m["batch"]), _f(m["loss"]))
    message = PREFIX.sub("", line.rstrip("\n"))
    if m := TRAIN_START.search(message):
        return TrainStart(int(m["loop"]), int(m["first"]), int(m["last"]))
    if m := EVAL_START.search(message):
        return EvalStart(m["name"])
    if m := AVG_EVAL.search(message):
        return EvalAverage(float(m["value"]))
    if m := EVAL_METRIC.match(message):
        return EvalMetric(m["name"], float(m["value"]))
    if m := PROCESSED.search(message):
        return PhaseDone(int(m["samples"]), float(m["seconds"]))
    if m := SAVED.search(message):
        return CheckpointSaved(m["path"], int(m["step"]))
    return None


# --------------------------------------------------------------------------------------------------
# what a run needs to turn records into metrics
# --------------------------------------------------------------------------------------------------

class PhaseSpan(NamedTuple):
    index: int
    start_step: int  # exclusive: the step before the phase's first update
    end_step: int  # inclusive: Model Zoo's loop.max_steps


@dataclass(frozen=True)
class Layout:
    """The plan facts the mapping needs (built from plan.json by the backend)."""

    phases: tuple[PhaseSpan, ...]
    eval_languages: tuple[str, ...]  # codes in the order of fit.val_dataloader
    batch: int
    sequence: int

    def phase_of(self, step: int) -> int | None:
        for p in self.phases:
            if p.start_step < step <= p.end_step:
                return p.index
        return None


def layout_from_plan(plan) -> Layout:
    """A Layout from a genbac Plan (the compiled plan.json)."""
    s = plan.schedule
    return Layout(
        phases=tuple(PhaseSpan(p.index, p.start_step, p.end_step) for p in s.phases),
        eval_languages=tuple(lang.code for lang in plan.spec.languages if lang.eval),
        batch=s.batch, sequence=s.sequence)


def rate_metrics(layout: Layout, samples_per_sec: float | None) -> dict[str, float]:
    """Samples/s -> tokens/s and achieved seconds per step."""
    if samples_per_sec is None or not math.isfinite(samples_per_sec) or samples_per_sec <= 0:
        return {}
    return {names.SAMPLES_PER_SEC: samples_per_sec,
            names.TOKENS_PER_SEC: samples_per_sec * layout.sequence,
            names.STEP_TIME: layout.batch / samples_per_sec}


class Point(NamedTuple):
    step: int
    metrics: dict[str, float]


@dataclass
class LineFollower:
    """Folds streamed records into metric points. Keeps only the little state the log needs: which
    validation loop is running (its dataloader name -> the language, by order within the phase) and
    the step it evaluates."""

    layout: Layout
    _loaders: list[str] = field(default_factory=list)
    _current: str | None = None
    _eval_step: int | None = None

    def feed(self, record: Record | None) -> list[Point]:
        if isinstance(record, Train):
            metrics = rate_metrics(self.layout, record.rate)
            if record.loss is not None:
                metrics[names.LOSS] = record.loss
            return [Point(record.step, metrics)] if metrics else []
        if isinstance(record, TrainStart) and record.loop == 1:
            self._loaders = []  # a new Trainer (phase) numbers its val dataloaders afresh
        elif isinstance(record, EvalStart) and record.dataloader.startswith("val_dataloader"):
            if record.dataloader not in self._loaders:
                self._loaders.append(record.dataloader)
            self._current, self._eval_step = record.dataloader, None
        elif isinstance(record, EvalBatch):
            self._eval_step = record.step
        elif isinstance(record, (EvalAverage, EvalMetric)):
            code = self._language()
            if code is None or self._eval_step is None:
                return []
            if isinstance(record, EvalAverage):
                return [Point(self._eval_step, {names.val_loss(code): record.loss})]
            name = EVAL_NAMES.get(record.name)
            if name:
                return [Point(self._eval_step, {names.val_metric(name, code): record.value})]
        return []

    def _language(self) -> str | None:
        if self._current is None:
            return None
        k = self._loaders.index(self._current)
        langs = self.layout.eval_languages
        return langs[k] if k < len(langs) else None


EVAL_NAMES = {"lm_perplexity": names.VAL_PERPLEXITY, "accuracy": names.VAL_ACCURACY}


# --------------------------------------------------------------------------------------------------
# TensorBoard events
# --------------------------------------------------------------------------------------------------

class Scalar(NamedTuple):
    tag: str
    step: int
    value: float
    wall_time: float


def event_files(model_dir: Path) -> list[Path]:
    """Model Zoo's event files, oldest first (one per phase per process, §6.4)."""
    files = list((model_dir / "events").glob("events.out.tfevents.*"))
    return sorted(files, key=lambda p: (_event_time(p), p.name))


def _event_time(path: Path) -> int:
    parts = path.name.split(".")
    return int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0


def read_events(path: Path) -> list[Scalar]:
    """The scalars in one event file.

    tensorboard's `EventFileLoader` reads the TFRecord framing (with CRC checks, and tolerating a
    truncated last record of a file still being written) and migrates old `simple_value` summaries
    to the tensor form Model Zoo writes, all without TensorFlow; the `EventAccumulator` on top of it
    would downsample scalars (reservoir sampling), which a metrics bridge must not do.
    """
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    out = []
    for event in EventFileLoader(str(path)).Load():
        for value in event.summary.value:
            if value.WhichOneof("value") != "tensor":
                continue
            array = tensor_util.make_ndarray(value.tensor)
            if array.size != 1 or array.dtype.kind not in "fiu":
                continue  # images, histograms, text: not metrics
            out.append(Scalar(value.tag, int(event.step), float(array.reshape(())),
                              float(event.wall_time)))
    return out


# tag -> genbac metric name (reference §6.3); validation tags are validate_<k>/<name>
TRAIN_TAGS = {"loss": names.LOSS, "lr/0": names.LR, "model_wise_grad_norm": names.GRAD_NORM,
              "avg_samples_per_sec": names.AVG_SAMPLES_PER_SEC}
VALIDATE_TAGS = {"loss": names.VAL_LOSS, "eval/lm_perplexity": names.VAL_PERPLEXITY,
                 "eval/accuracy": names.VAL_ACCURACY}
VALIDATE = re.compile(r"^validate_(?P<k>\d+)/(?P<name>.+)$")


def scalar_metrics(layout: Layout, scalars: Iterable[Scalar]) -> list[Point]:
    """Event scalars -> points, one per step in step order (the first value of a tag at a step
    wins: a resumed phase rewrites steps after its checkpoint in a new file)."""
    by_step: dict[int, dict[str, float]] = {}
    for s in scalars:
        if not math.isfinite(s.value):
            continue
        metrics = by_step.setdefault(s.step, {})
        if s.tag in TRAIN_TAGS:
            metrics.setdefault(TRAIN_TAGS[s.tag], s.value)
        elif s.tag == "local_samples_per_sec":
            for k, v in rate_metrics(layout, s.value).items():
                metrics.setdefault(k, v)
        elif m := VALIDATE.match(s.tag):
            k = int(m["k"])
            name = VALIDATE_TAGS.get(m["name"])
            if name and k < len(layout.eval_languages):
                metrics.setdefault(names.val_metric(name, layout.eval_languages[k]), s.value)
    return [Point(step, m) for step, m in sorted(by_step.items()) if m]


def by_phase(layout: Layout, points: Iterable[Point]) -> dict[int, list[Point]]:
    """Points grouped by the phase whose step range holds them (steps outside every phase, such as
    an initial checkpoint's step 0, are dropped)."""
    out: dict[int, list[Point]] = {}
    for point in points:
        phase = layout.phase_of(point.step)
        if phase is not None:
            out.setdefault(phase, []).append(point)
    return out


# --------------------------------------------------------------------------------------------------
# failures: Model Zoo's real error texts (reference §2, §3.1, §4, §5, §7.1) -> what to do
# --------------------------------------------------------------------------------------------------

class Known(NamedTuple):
    pattern: re.Pattern
    meaning: str  # may use the match's named groups


KNOWN_ERRORS = (
    Known(re.compile(r"No device specified\. Please specify a device"),
          "the trainer config names no device (init.backend.backend_type): it was not written by "
          "this genbac; recompile the spec"),
    Known(re.compile(r"Cannot instantiate multiple backends"),
          "the phases of cszoo/train.yaml ask for different backends; recompile the spec"),
    Known(re.compile(r"Detected mismatching arguments for CSX backend"),
          "phases differ in a backend argument other than cluster_config; recompile the spec"),
    Known(re.compile(r"Mount dir (?P<dir>.*?) does not exist"),
          "a mount directory of the cluster config is missing on this node: {dir}"),
    Known(re.compile(r"Expected data_processor to be one of the following values"),
          "this Model Zoo does not know the data processor GptHDF5MapDataProcessor; genbac writes "
          "configs for Model Zoo 2.10: check `cszoo --version`"),
    Known(re.compile(r"Path (?P<path>\S+) does not exist\."),
          "{path} is missing: the preprocessed data is not where the config expects it; rerun "
          "with --restart, or delete work/state.json's prepare-* entries to preprocess again"),
    Known(re.compile(r"(?P<loc>\S+)\s*\n?\s*Extra inputs are not permitted"),
          "this Model Zoo rejects the key {loc} of the trainer config: genbac writes configs for "
          "Model Zoo 2.10; check `cszoo --version`"),
    Known(re.compile(r"Fit requested but config is missing `fit` section"),
          "cszoo/train.yaml has no fit section; recompile the spec"),
    Known(re.compile(r"state_dict is incompatible with the dataset settings"),
          "a checkpoint was loaded together with the dataloader state of a different mixture: "
          "work/model_dir holds checkpoints this plan did not write there; rerun with --restart"),
    Known(re.compile(r"Unexpected keys specified via `load_checkpoint_states`"),
          "the checkpoint lacks a state the config asks to load (a converted checkpoint holds only "
          "the model); rerun with --restart"),
    Known(re.compile(r"Checkpoint version is incompatible with Modelzoo version"),
          "a checkpoint in work/model_dir was written by another Model Zoo version; convert it "
          "with `cszoo checkpoint convert` or rerun with --restart"),
    Known(re.compile(r"Cannot convert llama from hf to (?P<fmt>cs-[\d.]+)"),
          "this Model Zoo's Llama converter cannot write {fmt} (the public 2.10 converter stops at "
          "cs-2.9, which is what genbac asks for)"),
    Known(re.compile(r"\.safetensor files are only supported for sharded checkpoints"),
          "the converter needs a sharded checkpoint (model.safetensors.index.json); the grow "
          "step writes one: rerun it with --restart"),
    Known(re.compile(r"Parameter '(?P<key>[^']+)' in section '(?P<section>[^']+)' is misplaced"),
          "the preprocessing config puts {key} in section {section}, which this Model Zoo does "
          "not accept: check `cszoo --version` (genbac writes for 2.10)"),
    Known(re.compile(r'Missing key\(s\) in state_dict: (?P<keys>"[^"]+"(?:, "[^"]+")*)'),
          "the checkpoint phase 1 loads lacks {keys}: it was not converted from the grow step's "
          "output by this genbac (which writes every key Model Zoo loads, lm_head.weight of a "
          "tied model too); rerun with --restart"),
    Known(re.compile(r"Tokenizer class (?P<name>\S+) does not exist or is not currently imported"),
          "Model Zoo's transformers cannot load the tokenizer class {name} named in "
          "work/tokenizer/tokenizer_config.json (a newer transformers wrote it); the tokenizer "
          "step writes a portable one: rerun with --restart"),
    Known(re.compile(r"Only one of `data_dir` or `mixture` must be specified"),
          "a dataloader names both data_dir and mixture; recompile the spec"),
)

EXCEPTION = re.compile(r"^(?:[\w.]+\.)?(?P<type>[A-Z]\w*(?:Error|Exception|Interrupt))"
                       r"(?::\s*(?P<message>.*))?$")


def diagnose(lines: list[str]) -> str | None:
    """What a failed Model Zoo command's output means: the known error it contains, explained, with
    the line that shows it; else its last exception line; None if neither is there."""
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    for known in KNOWN_ERRORS:
        if m := known.pattern.search(text):
            quoted = " ".join(m.group(0).split())
            return f"{known.meaning.format(**m.groupdict())}\n  Model Zoo said: {quoted}"
    for line in reversed(lines):
        if m := EXCEPTION.match(PREFIX.sub("", line.strip())):
            return f"Model Zoo failed with {m['type']}: {m['message'] or '(no message)'}"
    return None
