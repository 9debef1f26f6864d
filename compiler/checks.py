"""Checks that need the whole experiment: hardware against precision and size, intervals, context.

Each check is a pure function of the Spec and the parts of the Plan it needs, returning diagnostics.
"""

from __future__ import annotations

from genbac.spec.diagnostics import Diagnostic, error, warning
from genbac.spec.ir import Spec

from .hardware import PROFILES
from .plan import GrowthPlan, Schedule

GPU_FP16 = ("genbac's GPU trainer runs bfloat16 or float32: float16 would need loss scaling, "
            "which it does not do, and these GPUs run bfloat16 as fast")


def check_hardware(spec: Spec, growth: GrowthPlan | None) -> list[Diagnostic]:
    """Precision, memory and batch splits; the memory check needs the growth plan."""
    hw = spec.hardware
    train = spec.train
    profile = PROFILES[hw.kind]
    out = []
    if train.precision not in profile.precisions:
        why = {
            "cs-2": "CS-X systems train in mixed precision (cbfloat16 or float16)",
            "cs-3": "CS-X systems train in mixed precision (cbfloat16 or float16)",
            "cpu": "CPUs have no fast float16 arithmetic and PyTorch's CPU autocast is bfloat16",
            "h100": GPU_FP16, "a100": GPU_FP16,
        }.get(hw.kind, "")
        out.append(error(
            "GB170", f"{hw.describe()} cannot train in {train.precision}: {why}",
            train.where("precision"), "unsupported precision",
            secondary=[(hw.span, "hardware")],
            help=("use one of " + ", ".join(f"`{p}`" for p in profile.precisions),)))
    # whether the model fits on a GPU is the parallelism planner's (compiler/parallelism.py)
    if hw.kind == "cpu" and growth is not None and growth.parameters > 2e9:
        out.append(warning(
            "GB907", f"training {growth.parameters / 1e9:.1f}B parameters on a CPU is only "
            "practical as a dry run", hw.span, "cpu"))
    if hw.is_csx or hw.devices > 1:
        # data parallel: every system (CS-X) or process (GPU, CPU) takes an equal share
        unit = "system" if hw.is_csx else ("process" if hw.kind == "cpu" else "device")
        units = "processes" if unit == "process" else f"{unit}s"
        devices = hw.devices
        if train.batch % devices:
            fits = [n for n in range(devices, 0, -1) if train.batch % n == 0][0]
            out.append(error(
                "GB172", f"batch {train.batch} does not split over {devices} {units}",
                train.where("batch"), f"not a multiple of the {unit} count",
                secondary=[(hw.where("nodes", "count"), f"{devices} {units}")],
                help=("a batch that " + f"{devices} {units} share equally: " + " or ".join(
                    f"{b:,}" for b in (train.batch - train.batch % devices,
                                       train.batch + devices - train.batch % devices) if b)
                    + f"; or {fits} {units}",)))
        elif train.micro_batch and (train.batch // devices) % train.micro_batch:
            out.append(error(
                "GB172", f"the per-{unit} batch {train.batch // devices} is not a multiple of "
                f"micro_batch {train.micro_batch}", train.where("micro_batch"),
                f"does not divide the per-{unit} batch",
                secondary=[(train.where("batch"), "global batch")],
                help=(f"`micro_batch` is sequences per forward pass on each {unit}: one of "
                      + ", ".join(str(d) for d in range(1, train.batch // devices + 1)
                                  if (train.batch // devices) % d == 0)
                      + (", or remove it (the planner chooses for GPUs)" if hw.is_gpu else ""),)))
    elif train.micro_batch and train.batch % train.micro_batch:
        out.append(error(
            "GB172", f"batch {train.batch} is not a multiple of micro_batch {train.micro_batch}",
            train.where("micro_batch"), "does not divide the batch",
            secondary=[(train.where("batch"), "batch")]))
    return out


def check_training(spec: Spec, schedule: Schedule | None) -> list[Diagnostic]:
    """Context, tokenizer and intervals; the intervals need the schedule."""
    train = spec.train
    arch = spec.base.architecture
    out = []
    if train.sequence > arch.context:
        out.append(error(
            "GB150", f"sequence {train.sequence} is longer than {arch.name}'s context of "
            f"{arch.context}", train.where("sequence"), "too long",
            secondary=[(spec.base.where("architecture"), f"context {arch.context}")]))
    training = spec.tokenizer_training
    if training is not None and spec.base.weights is not None:
        out.append(error(
            "GB152", "a newly trained tokenizer cannot match the pretrained embeddings of "
            f"{spec.base.weights}", training.span, "new tokenizer for pretrained weights",
            secondary=[(spec.base.where("weights"), "pretrained weights")],
            help=("use the base model's tokenizer (drop `tokenizer`), or extend it with "
                  "`vocab { add = … }` and a tokenizer path",)))
    elif training is not None and training.vocab != spec.base.architecture.vocab + (
            spec.vocab.add if spec.vocab else 0):
        out.append(error(
            "GB152", f"the tokenizer is trained to {training.vocab:,} tokens, but "
            f"{arch.name} has a vocabulary of {arch.vocab:,}", training.where("vocab"),
            "does not match the model", secondary=[(spec.base.where("architecture"), "model")]))
    if spec.vocab is not None and spec.tokenizer is None:
        out.append(error(
            "GB151", f"the vocabulary grows by {spec.vocab.add:,} tokens, but no tokenizer with "
            "those tokens is given", spec.vocab.where("add"), "needs a tokenizer",
            help=('add `tokenizer = "path/to/extended-tokenizer"` to the experiment',)))
    if schedule is not None and train.checkpoint_every > schedule.total_steps:
        out.append(warning(
            "GB908", f"checkpoint every {train.checkpoint_every} steps, but the run has only "
            f"{schedule.total_steps}: only the end of each phase is saved",
            train.where("checkpoint"), "longer than the run"))
    if schedule is not None and train.eval_every and train.eval_every > schedule.total_steps:
        out.append(warning(
            "GB908", f"evaluation every {train.eval_every} steps, but the run has only "
            f"{schedule.total_steps}", train.where("eval"), "longer than the run"))
    if spec.growth and spec.growth.train == "new" and spec.growth.init == "copy":
        out.append(warning(
            "GB909", "the new blocks start as plain copies and only they train: the grown model "
            "does not start from the base model's function", spec.growth.where("init"),
            "not function-preserving", help=("`init = identity` zeroes o_proj and down_proj",)))
    return out
