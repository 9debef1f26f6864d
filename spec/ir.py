"""The IR: a validated experiment spec as typed, frozen pydantic models.

Every node remembers where it was written: `span` for the node, `spans` for each of its fields
(`node.where("tokens")`). Both are excluded from serialisation, so they never reach plan.json, the
spec hash or any generated file, but every later check can still point at the source.

The compiler builds these models with `make`, not with pydantic's validating constructor: lowering
has already checked every value, with its location, and building pydantic's validators and
serialisers costs more than the rest of a `genbac compile` (about 150 ms at start-up, measured with
bench/compile_startup.py). Validation stays available on demand: `Plan.model_validate_json` reads
plan.json at run time, and tests/compiler/test_models.py checks that what `make` builds validates to
the same values of the same types and serialises to the same bytes.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, SkipValidation

from .span import Span


# How data-parallel GPUs hold the model: each a whole copy (DDP), sharded over all of them (FSDP),
# or sharded within a node and replicated across nodes (HSDP).
PARALLELISMS = ("ddp", "fsdp", "hsdp")

def _unset(value) -> bool:
    return value is None


# A field added after specs were compiled and hashed: absent from the JSON (plan.json, the spec
# hash) while unset, so that a spec that does not use it keeps its hash across genbac versions.
OMITTED_WHILE_UNSET = {"default": None, "exclude_if": _unset}


class Model(BaseModel):
    """Base of the IR and Plan models: frozen, no unknown fields, validators built when used."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    @classmethod
    def make(cls, **values: Any):
        """An instance from values that are already valid (see the module docstring)."""
        unknown = values.keys() - cls.__pydantic_fields__.keys()
        if unknown:  # a genbac bug, not a spec mistake: model_construct would drop them silently
            raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
        return cls.model_construct(**values)

    def to_json(self) -> dict[str, Any]:
        """What `model_dump(mode="json")` gives, without building pydantic's serialiser."""
        out = {}
        for name, field in type(self).__pydantic_fields__.items():
            value = getattr(self, name)
            if field.exclude or (field.exclude_if is not None and field.exclude_if(value)):
                continue
            out[name] = _jsonable(value)
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Model):
        return value.to_json()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class Node(Model):

    span: SkipValidation[Optional[Span]] = Field(default=None, exclude=True, repr=False)
    spans: SkipValidation[dict[str, Any]] = Field(default_factory=dict, exclude=True, repr=False)

    def where(self, *fields: str) -> Span | None:
        """The span of the first of `fields` that was written, else of the whole node."""
        for field in fields:
            if field in self.spans:
                return self.spans[field]
        return self.span


class RopeScaling(Node):
    type: Literal["llama3", "linear", "yarn"] = "llama3"
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position: int = 8192


class Architecture(Node):
    """A Llama-family decoder, as much as the parameter count and the target configs need."""

    name: str
    family: Literal["llama"] = "llama"
    hidden: int = Field(gt=0)
    layers: int = Field(gt=0)
    heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    ffn: int = Field(gt=0)
    vocab: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    context: int = Field(gt=0)  # max_position_embeddings of the released model
    tie_embeddings: bool = False
    rope_theta: float = 500000.0
    rope_scaling: Optional[RopeScaling] = None
    norm_eps: float = 1e-5
    builtin: bool = True  # from genbac's table, or declared in the spec


class Base(Node):
    architecture: Architecture
    weights: Optional[str] = None  # "hf:org/name", a local directory, or None for random init


class Growth(Node):
    method: Literal["blocks", "depth"]
    # blocks (LLaMA Pro): `add` identity-initialised copies, placed by `placement` or after `after`.
    add: int = 0
    placement: Literal["interleave", "top", "bottom", "explicit"] = "interleave"
    after: tuple[int, ...] = ()
    init: Literal["identity", "copy"] = "identity"
    train: Literal["all", "new"] = "all"
    # depth (SOLAR depth up-scaling): two copies of the base, the last `drop` layers of the first and
    # the first `drop` layers of the second removed, concatenated.
    drop: int = 0


class VocabExtension(Node):
    add: int = Field(gt=0)
    init: Literal["mean"] = "mean"


class Point(Node):
    """A position in training: a percentage of the total tokens, or an absolute token count."""

    percent: Optional[float] = None
    tokens: Optional[int] = None

    def describe(self) -> str:
        if self.percent is not None:
            return f"{self.percent:g}%"
        return f"{self.tokens:,} tokens"


class Language(Node):
    code: str
    name: str
    sources: tuple[str, ...]
    tokens: int = Field(gt=0)  # the budget
    approx: bool = False  # `~82B`: may absorb the difference to the declared total
    corpus: Optional[int] = None  # unique tokens available, if known
    enter: Point = Point.make(percent=0.0)
    exit: Point = Point.make(percent=100.0)
    eval: tuple[str, ...] = ()


class PhaseMixture(Node):
    """An explicit mixture for the phase that starts at `start`, overriding the solver there."""

    start: Point
    weights: dict[str, float]


class Optimizer(Node):
    kind: Literal["adamw", "adam", "sgd"]
    lr: float = Field(gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0
    clip: Optional[float] = None


class ScheduleSegment(Node):
    """One piece of the LR schedule: `warmup(1%)`, `constant`, `linear(to = 0)`, `cosine(to = 10%)`.

    `length` is a share of the run (percent) or a step count; the last segment takes what is left.
    `to` is the LR at the end of the segment, relative to the peak (fraction 0..1).
    """

    kind: Literal["warmup", "constant", "linear", "cosine"]
    length_percent: Optional[float] = None
    length_steps: Optional[int] = None
    to: float = 1.0


class Train(Node):
    tokens: Optional[int] = None  # the declared total; None = the sum of the budgets
    sequence: int = Field(gt=0)
    batch: int = Field(gt=0)
    optimizer: Optimizer
    schedule: tuple[ScheduleSegment, ...]
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    checkpoint_every: int = Field(gt=0)
    keep_checkpoints: Optional[int] = None
    eval_every: Optional[int] = None
    eval_steps: int = 50
    seed: int = 1
    micro_batch: Optional[int] = None
    # how GPUs share the model (compiler/parallelism.py); None: the planner chooses
    parallelism: Optional[Literal[PARALLELISMS]] = Field(  # type: ignore[valid-type]
        **OMITTED_WHILE_UNSET)


# The hardware kinds, the one definition (the grammar's choices, the profiles, the targets and the
# runtime all read these).
CSX_KINDS = ("cs-2", "cs-3")  # Cerebras systems: Model Zoo's CSX backend, weight streaming
GPU_KINDS = ("h100", "a100")  # CUDA devices
HARDWARE_KINDS = (*CSX_KINDS, *GPU_KINDS, "cpu")


class Hardware(Node):
    """`hardware = h100 x 8`: a kind and a count (systems, or devices per node); `h100 x 8 x 4`:
    8 GPUs on each of 4 nodes; `cpu x 2 x 2`: 2 processes on each of 2 nodes (a CPU cluster, or
    a cluster's layout rehearsed on this machine)."""

    kind: Literal[HARDWARE_KINDS]  # type: ignore[valid-type]  (Literal of the tuple's values)
    count: int = Field(default=1, gt=0)
    nodes: Optional[int] = Field(gt=0, **OMITTED_WHILE_UNSET)

    @property
    def devices(self) -> int:
        """All devices (systems, GPUs or processes) over all nodes."""
        return self.count * (self.nodes or 1)

    @property
    def is_csx(self) -> bool:
        return self.kind in CSX_KINDS

    @property
    def is_gpu(self) -> bool:
        return self.kind in GPU_KINDS

    def describe(self) -> str:
        if self.nodes:
            return f"{self.kind} x {self.count} x {self.nodes}"
        return "cpu" if (self.kind, self.count) == ("cpu", 1) else f"{self.kind} x {self.count}"


class TokenizerTraining(Node):
    """`tokenizer = bpe(vocab = 1024)`: train a byte-level BPE tokenizer on the training sources."""

    algorithm: Literal["bpe"] = "bpe"
    vocab: int = Field(gt=0)


class Spec(Node):
    name: str
    base: Base
    growth: Optional[Growth] = None
    vocab: Optional[VocabExtension] = None
    tokenizer: Optional[str] = None  # a local directory or "hf:org/name"
    tokenizer_training: Optional[TokenizerTraining] = None
    languages: tuple[Language, ...]
    phases: tuple[PhaseMixture, ...] = ()
    train: Train
    hardware: Hardware

    def language(self, code: str) -> Language:
        return next(lang for lang in self.languages if lang.code == code)
