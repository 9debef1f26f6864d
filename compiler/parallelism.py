"""Parallelism: how data-parallel GPUs hold the model, chosen by per-GPU memory.

Per GPU, in bytes (estimates; the README's "Parallelism" says where each number comes from):

- training state: 16 per trained parameter (fp32 weights and gradients, two Adam moments) and 4 per
  frozen one, as the single-device check has always counted (plan.GrowthPlan.state_bytes); under
  FSDP divided over the GPUs that share the shards: all of them, or one node's under HSDP;
- gathered layers (FSDP, HSDP): two decoder layers' bf16 weights unsharded at once, the one
  computing and the one prefetched: 2 x 2 x layer parameters;
- activations kept for the backward pass at a micro-batch of m sequences of s tokens, hidden h, L
  layers: 34 s m h per layer (Korthikanti et al. 2022, 16-bit activations, flash attention: no
  s x s scores; twice that in fp32). With activation checkpointing a layer keeps only its input, 2 s m h, and one
  layer at a time is recomputed: 2 s m h L + 34 s m h;
- logits: s m V x 6 (16-bit logits and their fp32 copy for the loss).

Usable is 90% of the device's memory (the CUDA context, NCCL's buffers, the allocator's
fragmentation). The planner takes the first option that fits, in this order: DDP (a whole copy per
GPU: the least communication), HSDP (on several nodes: shards gathered inside a node only), FSDP;
for each, without activation checkpointing if any micro-batch fits, else with it; and the largest
micro-batch that divides the per-GPU batch (or the spec's `micro_batch`). `train { parallelism = … }`
forces the strategy, and is an error where it does not fit. Pure functions of the Spec and the
growth plan: no I/O.
"""

from __future__ import annotations

from typing import NamedTuple

from genbac.spec.diagnostics import Diagnostic, error
from genbac.spec.ir import Spec

from .hardware import PROFILES
from .plan import GrowthPlan, MemoryUse, Parallelism

USABLE = 0.9  # of a device's memory
ACTIVATION_BYTES = 34  # per token and hidden unit and layer, kept for the backward pass
CHECKPOINTED_BYTES = 2  # per token and hidden unit and layer: the layer's input only
LOGIT_BYTES = 6  # per token and vocabulary entry: 16-bit logits and an fp32 copy for the loss
GIB = 1e9  # GB as the hardware profiles count them (80 GB H100)


class Option(NamedTuple):
    strategy: str
    shard: int  # GPUs a shard group spans (1: no sharding)
    checkpointing: bool
    micro_batch: int
    memory: MemoryUse


def memory(spec: Spec, growth: GrowthPlan, shard: int, micro: int,
           checkpointing: bool) -> MemoryUse:
    s, h, layers = spec.train.sequence, spec.base.architecture.hidden, growth.layers
    wide = 2 if spec.train.precision == "fp32" else 1  # the byte counts are for 16-bit tensors
    per_layer = s * micro * h * wide
    activations = (CHECKPOINTED_BYTES * per_layer * layers + ACTIVATION_BYTES * per_layer
                   if checkpointing else ACTIVATION_BYTES * per_layer * layers)
    return MemoryUse.make(
        state=-(-growth.state_bytes // shard),
        gathered=2 * 2 * wide * growth.layer_parameters if shard > 1 else 0,
        activations=activations, logits=(LOGIT_BYTES + 2 * (wide - 1)) * s * micro * growth.vocab)


def _divisors_down(n: int) -> list[int]:
    return [d for d in range(n, 0, -1) if n % d == 0]


def strategies(spec: Spec) -> list[tuple[str, int]]:
    """(strategy, shard group size) in the order the planner prefers them."""
    hw = spec.hardware
    out = [("ddp", 1)]
    if hw.nodes and hw.nodes > 1:
        out.append(("hsdp", hw.count))
    if hw.devices > 1:
        out.append(("fsdp", hw.devices))
    return out


def best_option(spec: Spec, growth: GrowthPlan, strategy: str, shard: int,
                usable: float) -> tuple[Option, bool]:
    """The option the planner would take for this strategy, and whether it fits; where none fits,
    the smallest (activation checkpointing, micro-batch 1)."""
    per_device = spec.train.batch // spec.hardware.devices
    micros = [spec.train.micro_batch] if spec.train.micro_batch else _divisors_down(per_device)
    for checkpointing in (False, True):
        for micro in micros:
            use = memory(spec, growth, shard, micro, checkpointing)
            if use.total <= usable:
                return Option(strategy, shard, checkpointing, micro, use), True
    micro = micros[-1]
    return Option(strategy, shard, True, micro, memory(spec, growth, shard, micro, True)), False


def plan_parallelism(spec: Spec, growth: GrowthPlan | None
                     ) -> tuple[Parallelism | None, list[Diagnostic]]:
    """The parallelism of a GPU experiment (None for CS-X systems and CPUs), or the error that
    says why nothing fits and what would."""
    hw, train = spec.hardware, spec.train
    if train.parallelism is not None and hw.is_csx:
        return None, [error(
            "GB173", f"`parallelism = {train.parallelism}` is for GPUs (and their rehearsal on "
            f"`cpu x N`); {hw.describe()} streams its weights (Model Zoo decides)",
            train.where("parallelism"), "not for this hardware",
            secondary=[(hw.span, "hardware")], help=("remove it",))]
    if train.parallelism == "hsdp" and not hw.is_gpu and (hw.nodes or 1) == 1:
        return None, [error(
            "GB173", "`parallelism = hsdp` shards within a node and replicates across nodes; "
            f"{hw.describe()} is one node", train.where("parallelism"), "one node",
            secondary=[(hw.span, "hardware")], help=("use `fsdp`",))]
    if not hw.is_gpu:
        return None, []  # `cpu x N` trains as the spec says (runtime/sharding.py), unplanned
    if not hw.is_gpu or growth is None or train.batch % hw.devices:
        return None, []  # a batch that does not split is GB172 (compiler/checks.py)
    if train.micro_batch and (train.batch // hw.devices) % train.micro_batch:
        return None, []  # GB172 too
    profile = PROFILES[hw.kind]
    device_bytes = profile.memory_gb * GIB
    usable = USABLE * device_bytes
    candidates = strategies(spec)
    if train.parallelism == "fsdp" and hw.devices == 1:
        candidates = [("fsdp", 1)]  # as asked: on one GPU it shards nothing
    if train.parallelism == "hsdp" and not any(s == "hsdp" for s, _ in candidates):
        return None, [error(
            "GB173", "`parallelism = hsdp` shards within a node and replicates across nodes, "
            f"but {hw.describe()} is one node", train.where("parallelism"), "one node",
            secondary=[(hw.span, "hardware")],
            help=(f"give the nodes: `hardware = {hw.kind} x {hw.count} x 2`, or use `fsdp`",))]
    if train.parallelism is not None:
        candidates = [c for c in candidates if c[0] == train.parallelism]
    tried = [best_option(spec, growth, strategy, shard, usable) for strategy, shard in candidates]
    for option, fits in tried:
        if fits:
            return _parallelism(spec, option, device_bytes, usable), []
    smallest = min((o for o, _ in tried), key=lambda o: o.memory.total)
    return None, [_does_not_fit(spec, growth, smallest, usable, device_bytes)]


def _parallelism(spec: Spec, option: Option, device_bytes: float, usable: float) -> Parallelism:
    per_device = spec.train.batch // spec.hardware.devices
    return Parallelism.make(
        strategy=option.strategy, chosen_by="spec" if spec.train.parallelism else "planner",
        devices=spec.hardware.devices, shard=option.shard,
        replicas=spec.hardware.devices // option.shard, per_device_batch=per_device,
        micro_batch=option.micro_batch, accumulation=per_device // option.micro_batch,
        activation_checkpointing=option.checkpointing, memory=option.memory,
        device_bytes=int(device_bytes), usable_bytes=int(usable))


def _does_not_fit(spec: Spec, growth: GrowthPlan, option: Option, usable: float,
                  device_bytes: float) -> Diagnostic:
    hw, train = spec.hardware, spec.train
    use = option.memory
    how = {"ddp": "a whole copy per GPU (DDP)", "hsdp": f"sharded over each node's {option.shard}",
           "fsdp": f"sharded over all {option.shard}"}[option.strategy]
    if hw.devices == 1:
        how = "on one GPU"
    helps = []
    # the fewest GPUs FSDP would need, at the smallest activations (checkpointing, micro-batch 1)
    smallest = memory(spec, growth, max(2, option.shard), 1, True)
    if train.micro_batch and train.micro_batch > 1 and smallest.total <= usable:
        helps.append(f"a smaller `micro_batch` (1 needs {smallest.total / GIB:.0f} GB here)")
    least = memory(spec, growth, 2, train.micro_batch or 1, True)  # at the spec's micro-batch
    rest = least.activations + least.logits + least.gathered
    need = max(2, -(-growth.state_bytes // int(usable - rest))) if rest < usable else None
    if need is not None and need <= hw.devices:
        pass  # more GPUs would not help: the activations are what does not fit
    elif need is not None:
        splits = [n for n in range(need, 4 * need + 1) if train.batch % n == 0]
        need = splits[0] if splits else need  # a count the batch splits over
        if need <= 8:
            spelled = f"`hardware = {hw.kind} x {need}`"
        else:  # whole nodes of 8 that the batch splits over
            nodes = -(-need // 8)
            nodes = next((n for n in range(nodes, 4 * nodes + 1) if train.batch % (8 * n) == 0),
                         nodes)
            spelled = f"`hardware = {hw.kind} x 8 x {nodes}`: {8 * nodes} GPUs in nodes of 8"
        helps.append(f"FSDP over {need} or more {hw.kind} GPUs would fit ({spelled})")
    elif not helps:
        helps.append(f"even one sequence's activations and logits ({rest / GIB:.1f} GB) do not "
                     f"fit: a shorter `sequence`, or a larger device")
    if train.parallelism:
        helps.append(f"or remove `parallelism = {train.parallelism}` and let the planner choose")
    helps.append("or a smaller base, or `train = new` in `grow` (only the new blocks train)")
    what = (f"{growth.parameters / 1e9:.2f}B parameters do not fit" if use.state > usable / 2 else
            f"training {growth.parameters / 1e9:.2f}B parameters at this micro-batch does not fit")
    return error(
        "GB171", f"{what} on {hw.describe()}: "
        f"{how}, with activation checkpointing and micro-batch {option.micro_batch}, a GPU needs "
        f"{use.total / GIB:.0f} GB (training state {use.state / GIB:.0f} GB, activations "
        f"{use.activations / GIB:.1f} GB, logits {use.logits / GIB:.1f} GB), and {USABLE:.0%} of "
        f"its {device_bytes / GIB:.0f} GB is {usable / GIB:.0f} GB",
        hw.span, "model does not fit",
        secondary=[(spec.base.where("architecture"), f"{growth.parameters:,} parameters")]
        + ([(train.where("parallelism"), "forced here")] if train.parallelism else []),
        help=tuple(helps))
