"""The Plan: everything the compiler decided, resolved to numbers. Targets see only this.

A Plan is a pure function of the Spec (see `compiler.planner.plan`). It is frozen, serialises to
plan.json, and is what `explain`, the cszoo target and the runtime read.
"""

from __future__ import annotations

import math

from typing import Literal, NamedTuple, Optional

from pydantic import Field

from genbac.spec.ir import OMITTED_WHILE_UNSET, Architecture, Model, Spec


KEEP_CHECKPOINTS = 3  # checkpoints the local trainer keeps when the spec sets no keep_checkpoints

# bytes per parameter for mixed-precision training with Adam-style optimizers:
# fp32 master weights (4) + gradients (4) + two moments (8); frozen parameters keep only weights (4).
BYTES_PER_TRAINABLE = 16
BYTES_PER_FROZEN = 4


class LayerEntry(Model):
    index: int  # position in the grown model
    source: int  # base layer whose weights it starts from
    init: Literal["copy", "identity"]  # identity: o_proj and down_proj zeroed
    trainable: bool
    new: bool  # added by growth (not the base layer at its own position)


class GrowthPlan(Model):
    method: Literal["none", "blocks", "depth"]
    base_layers: int
    layers: int
    layer_map: tuple[LayerEntry, ...]
    base_vocab: int
    vocab: int
    base_parameters: int
    parameters: int
    layer_parameters: int  # one decoder layer
    added_layer_parameters: int
    vocab_parameters: int  # cost of the vocabulary extension
    trainable_parameters: int
    function_preserving: bool

    @property
    def new_indices(self) -> tuple[int, ...]:
        return tuple(e.index for e in self.layer_map if e.new)

    @property
    def state_bytes(self) -> int:
        """Weights, gradients and optimizer state while training (not the activations)."""
        return (BYTES_PER_TRAINABLE * self.trainable_parameters +
                BYTES_PER_FROZEN * (self.parameters - self.trainable_parameters))


class LanguageShare(Model):
    """One language in one phase."""

    code: str
    weight: float  # Model Zoo mixture weight: sequences of this language / sequences of the phase
    sequences: int
    tokens: int  # compiled: sequences x sequence length
    requested_tokens: float  # what the allocation rule asked for before rounding


def piece_value(kind: str, a: float, b: float, frac: float) -> float:
    """An LR piece's value `frac` of the way from its start (a) to its end (b)."""
    if kind == "cosine":
        return b + (a - b) * 0.5 * (1 + math.cos(math.pi * frac))
    if kind == "constant":
        return a
    return a + (b - a) * frac


class LrPiece(Model):
    """The LR over a range of steps within one phase: linear, cosine or constant."""

    kind: Literal["linear", "cosine", "constant"]
    start_step: int  # global step of the first update in the piece (exclusive start, see lr_at)
    steps: int
    start_lr: float
    end_lr: float


class Phase(Model):
    index: int  # 1-based
    start_step: int  # global step before the phase's first update
    end_step: int  # = Model Zoo's absolute loop.max_steps for the phase
    start_percent: float
    end_percent: float
    explicit: bool  # mixture given in the spec (`phase … { }`), not solved
    shares: tuple[LanguageShare, ...]  # every language, active or not, in spec order
    lr: tuple[LrPiece, ...]

    @property
    def steps(self) -> int:
        return self.end_step - self.start_step

    def share(self, code: str) -> LanguageShare:
        return next(s for s in self.shares if s.code == code)

    @property
    def active(self) -> tuple[LanguageShare, ...]:
        return tuple(s for s in self.shares if s.sequences > 0)

    def lr_at(self, step: int) -> float:
        """The LR used for the update that starts at global step `step` (0-based) inside the
        phase."""
        for piece in self.lr:
            if piece.start_step <= step < piece.start_step + piece.steps:
                return piece_value(piece.kind, piece.start_lr, piece.end_lr,
                                   (step - piece.start_step) / piece.steps)
        return self.lr[-1].end_lr


class LanguageTotal(Model):
    code: str
    name: str
    written_tokens: int  # as written in the spec
    approx: bool
    target_tokens: float  # after fitting approximate budgets to the declared total
    compiled_tokens: int
    enter_percent: float
    exit_percent: float
    first_step: Optional[int]  # first global step that can draw this language
    corpus: Optional[int]
    epochs: Optional[float]


class Schedule(Model):
    requested_tokens: int  # the declared total (or the sum of the budgets)
    tokens_per_step: int
    sequence: int
    batch: int
    total_steps: int
    compiled_tokens: int
    phases: tuple[Phase, ...]
    languages: tuple[LanguageTotal, ...]
    lr_peak: float
    lr_max_deviation: float  # largest relative gap between per-phase pieces and the one schedule


class Estimate(Model):
    """Estimates, not measurements: FLOPs from the architecture, time and energy from a profile."""

    flops: float
    flops_per_token: float
    attention_share: float
    hardware: str
    count: int
    peak_flops: float  # per device, dense bf16/fp16
    utilisation: float  # assumed
    seconds: float
    energy_kwh: float
    power_kw: float  # per device, assumed
    source: str  # where the profile's numbers come from


class Measurement(NamedTuple):
    """A run's measured training rate (runtime/calibrate.py reads it from MLflow), which
    compiler/calibrate.py sets against an estimate."""

    run_id: str
    experiment: str  # the measured run's spec name
    hardware: str  # its hardware profile
    count: int
    flops_per_token: float  # of the measured run's model, from its plan
    tokens_per_sec: float  # median over its training steps
    steps: int  # how many steps the median is over


class MemoryUse(Model):
    """Estimated bytes per GPU while training (compiler/parallelism.py)."""

    state: int  # weights, gradients and optimizer state (this GPU's shard)
    gathered: int  # unsharded layers held at once under FSDP
    activations: int  # kept for the backward pass
    logits: int

    @property
    def total(self) -> int:
        return self.state + self.gathered + self.activations + self.logits


class Parallelism(Model):
    """How the GPUs hold the model (compiler/parallelism.py)."""

    strategy: Literal["ddp", "fsdp", "hsdp"]
    chosen_by: Literal["planner", "spec"]
    devices: int
    shard: int  # GPUs a shard group spans (1 for DDP)
    replicas: int  # shard groups (copies of the model)
    per_device_batch: int  # sequences per step per GPU
    micro_batch: int  # sequences per forward pass
    accumulation: int  # micro-batches per step
    activation_checkpointing: bool
    memory: MemoryUse
    device_bytes: int
    usable_bytes: int


class Plan(Model):
    genbac_version: str
    spec_hash: str
    name: str
    spec: Spec
    architecture: Architecture
    growth: GrowthPlan
    schedule: Schedule
    estimate: Estimate
    checkpoint_every: int
    eval_every: int
    tokenizer: Optional[str]  # a local directory (spec-relative) or "hf:org/name"
    tokenizer_training: Optional[int]  # train a BPE tokenizer of this vocabulary size instead
    base_weights: Optional[str]
    parallelism: Optional[Parallelism] = Field(**OMITTED_WHILE_UNSET)
    format: Literal["genbac.plan/1"] = "genbac.plan/1"
