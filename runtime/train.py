"""The local trainer: one phase of a compiled experiment, PyTorch + transformers, in one process or
as one rank of a DDP or FSDP job (runtime/distributed.py launches those).

Features, and what controls them (all from the Plan):
- model: `LlamaForCausalLM` built from the plan's architecture and grown layer count, loaded from the
  grown checkpoint (work/grown) or, for a spec without weights, from the seeded random base;
- data: `runtime.data.Mixer`, a pure function of the global step with the plan's exact per-phase
  sequences per language, one language per sequence, so loss is reported per language;
- optimizer: the spec's AdamW/Adam/SGD; the LR is a pure function of the step (the plan's per-phase
  pieces, the same ones the cszoo target writes), so no scheduler state exists;
- gradient accumulation over micro-batches to reach the global batch; clipping; bf16 autocast when
  the spec says bf16; freezing of the base blocks for `train = new`;
- several processes: the global batch of step s is still the Mixer's batch of step s, rank r trains
  its fixed slice r of it, and the loss is scaled so that the ranks' averaged gradient (DDP's
  all-reduce, FSDP's reduce-scatter) equals the one-process gradient of the whole batch; rank 0
  logs; every rank evaluates an equal share of the validation rows, in micro-batches on its
  device, and the per-sequence losses are gathered (the same means as one process); under DDP
  rank 0 checkpoints, under FSDP/HSDP (runtime/sharding.py) every rank takes part, as each holds
  only its shards;
- on CUDA: fused AdamW, TF32 matmuls, pinned non-blocking batch copies; SDPA attention; optional
  `torch.compile` of the forward pass (`PhaseRun.forward`);
- checkpoints (model, optimizer, step, tokens seen) every `checkpoint every` steps and at the end of
  the phase: DCP directories, atomic, the newest few kept (runtime/checkpoints.py); at the phase's
  end the model also as a Hugging Face checkpoint (`PhaseRun.export_dir`);
- per-language validation loss at step 0 (the baseline: the starting model, and the base model
  before growth), every `eval every` steps and at the end of the phase.

Exact resume: data and LR depend only on the step, the optimizer state is saved, and nothing else is
random (no dropout), so on CPU a run killed and resumed ends with the same weights as one that was not.
A checkpoint does not depend on the number of processes or the strategy (its tensors are stored by
parameter name and DCP reshards them on load), so one written by N processes resumes with any other
number, sharded or not.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from genbac.compiler.plan import KEEP_CHECKPOINTS, Phase, Plan
from genbac import atomic
from genbac.errors import UserError

from . import checkpoints
from . import metrics as names
from .checkpoints import TrainState



class TrainError(UserError):
    pass


# --------------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------------

def hf_config(plan: Plan, layers: int | None = None, vocab: int | None = None):
    """The transformers LlamaConfig of the plan's architecture (grown unless told otherwise)."""
    from transformers import LlamaConfig

    arch = plan.architecture
    rope = None
    if arch.rope_scaling is not None:
        rs = arch.rope_scaling
        rope = {"rope_type": rs.type, "factor": rs.factor, "low_freq_factor": rs.low_freq_factor,
                "high_freq_factor": rs.high_freq_factor,
                "original_max_position_embeddings": rs.original_max_position}
    config = LlamaConfig(
        vocab_size=vocab or plan.growth.vocab,
        hidden_size=arch.hidden,
        intermediate_size=arch.ffn,
        num_hidden_layers=layers or plan.growth.layers,
        num_attention_heads=arch.heads,
        num_key_value_heads=arch.kv_heads,
        head_dim=arch.head_dim,
        max_position_embeddings=max(arch.context, plan.schedule.sequence),
        rms_norm_eps=arch.norm_eps,
        tie_word_embeddings=arch.tie_embeddings,
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
        attn_implementation="sdpa",  # PyTorch's fused attention (flash / memory-efficient kernels)
    )
    # transformers 5 keeps rope settings in rope_parameters; 4.x in rope_theta/rope_scaling
    if hasattr(config, "rope_parameters") and isinstance(getattr(config, "rope_parameters"), dict):
        params = {"rope_type": "default", "rope_theta": arch.rope_theta}
        if rope:
            params |= rope
        config.rope_parameters = params
    else:
        config.rope_theta = arch.rope_theta
        config.rope_scaling = rope
    return config


def random_base(plan: Plan, out_dir: Path, seed: int) -> None:
    """The base model of a spec without weights: seeded random init, saved like a released model."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(hf_config(plan, layers=plan.growth.base_layers,
                                       vocab=plan.growth.base_vocab))
    with atomic.directory(out_dir, replace=True) as tmp:
        model.save_pretrained(tmp)


def load_model(plan: Plan, weights_dir: Path, layers: int | None = None):
    """The checkpoint in `weights_dir`, which must have `layers` layers (the grown count unless
    told otherwise), whole, in this process."""
    from transformers import LlamaForCausalLM

    check_layers(plan, weights_dir, layers)
    try:
        return LlamaForCausalLM.from_pretrained(weights_dir, dtype=torch.float32,
                                                attn_implementation="sdpa")
    except (OSError, ValueError) as exc:
        raise TrainError(f"cannot load the model from {weights_dir}: {exc}") from None


def check_layers(plan: Plan, weights_dir: Path, layers: int | None = None) -> None:
    """That the checkpoint in `weights_dir` has `layers` layers (the grown count unless told
    otherwise), from its config.json."""
    expected = layers or plan.growth.layers
    try:
        found = json.loads((weights_dir / "config.json").read_text())["num_hidden_layers"]
    except (OSError, ValueError, KeyError) as exc:
        raise TrainError(f"cannot load the model from {weights_dir}: no readable config.json "
                         f"with num_hidden_layers ({exc})") from None
    if found != expected:
        raise TrainError(f"{weights_dir} has {found} layers, the plan {expected}")


def apply_freezing(plan: Plan, model) -> int:
    """`train = new`: only the new blocks (and embeddings when the vocabulary grew) learn."""
    spec = plan.spec
    frozen_base = spec.growth is not None and spec.growth.train == "new"
    for entry, layer in zip(plan.growth.layer_map, model.model.layers):
        for p in layer.parameters():
            p.requires_grad_(entry.trainable)
    outer_trainable = not frozen_base or spec.vocab is not None
    for module in (model.model.embed_tokens, model.model.norm, model.lm_head):
        for p in module.parameters():
            p.requires_grad_(outer_trainable)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_optimizer(plan: Plan, model) -> torch.optim.Optimizer:
    opt = plan.spec.train.optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    if opt.kind == "sgd":
        return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum,
                               weight_decay=opt.weight_decay)
    cls = torch.optim.AdamW if opt.kind == "adamw" else torch.optim.Adam
    # on CUDA one fused kernel updates every parameter (the default launches several per tensor);
    # FSDP's sharded parameters (DTensors) keep the default multi-tensor kernels
    fused = ({"fused": True} if params and params[0].is_cuda and
             type(params[0].data) is torch.Tensor else {})
    return cls(params, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps,
               weight_decay=opt.weight_decay, **fused)


def configure_device(device: torch.device) -> None:
    """TF32 tensor cores for the float32 matmuls left on CUDA (fp32 specs; bf16 autocast is
    unaffected), as nanoGPT does. Process-wide, so called once by whoever picks the device."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


# --------------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------------

def sequence_losses(model, batch: torch.Tensor, autocast) -> torch.Tensor:
    """Mean token loss of every sequence in the batch (one language per sequence)."""
    inputs, labels = batch[:, :-1], batch[:, 1:]
    with autocast():
        logits = model(input_ids=inputs, use_cache=False).logits  # no KV cache to build
    losses = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), reduction="none")
    return losses.view(labels.shape).mean(dim=1)


@torch.no_grad()
def evaluate(model, eval_data: dict[str, list], autocast, device: torch.device,
             micro: int | None = None, rank: int = 0, world: int = 1) -> dict[str, float]:
    """Mean validation loss per language over all its rows, as one process computes it. Each of
    `world` ranks runs its share of the rows (`rank_share`), `micro` rows per forward pass, on
    `device`; the per-sequence losses are gathered in row order and the padding dropped."""
    model.eval()
    out = {}
    for code, batches in eval_data.items():
        total = sum(len(b) for b in batches)
        if total == 0:
            continue
        per = -(-total // world)
        step = min(micro or per, per)
        losses = torch.cat([sequence_losses(model, to_device(rows, device), autocast)
                            for rows in rank_share(batches, rank, world, step)])
        if world > 1:
            losses = gather_ranks(losses, world)
        out[code] = losses[:total].float().mean().item()
    model.train()
    return out


def rank_share(batches: list, rank: int, world: int, step: int) -> Iterator:
    """Rank `rank`'s equal share of the rows of `batches` (taken as one list of rows), `step` rows
    at a time: rows [rank·per, (rank+1)·per) with per = ceil(rows / world), the last shares
    padded with copies of the last row. Equal shares: under FSDP every rank must run as many
    forward passes, each of which gathers the layers' shards from all of them. Only a step's
    rows are copied out of the (memory-mapped) batches."""
    import numpy as np

    total = sum(len(b) for b in batches)
    per = -(-total // world)
    starts = np.cumsum([0] + [len(b) for b in batches])
    last = batches[-1][-1:]
    for first in range(rank * per, (rank + 1) * per, step):
        stop = min(first + step, (rank + 1) * per)
        parts = [batches[i][max(first - starts[i], 0):min(stop, starts[i + 1]) - starts[i]]
                 for i in range(len(batches)) if starts[i] < stop and starts[i + 1] > first]
        short = stop - first - sum(len(p) for p in parts)
        yield np.concatenate(parts + [np.repeat(last, short, axis=0)] * (short > 0))


def baseline(run: "PhaseRun", autocast, micro: int | None = None) -> dict[str, float]:
    """Validation before the first update, the reference of a continual-pretraining run: the loss
    per language of the model training starts from (val_loss at step 0) and, where the model was
    grown, of the base model before growth (base_val_loss), which function-preserving growth keeps
    equal (runtime/baseline.py says whether it did). Every rank takes part; the base is held as
    the trained model is (whole under DDP, sharded under FSDP/HSDP)."""
    def losses(model) -> dict[str, float]:
        return evaluate(model, run.eval_data, autocast, run.device, micro, run.rank, run.world)

    metrics = {names.val_loss(code): value for code, value in losses(run.model).items()}
    if run.load_base is not None:
        base = run.load_base()
        metrics |= {names.base_val_loss(code): value for code, value in losses(base).items()}
        del base
    return metrics


@dataclass
class PhaseRun:
    """Everything train_phase needs; built by the executor."""

    plan: Plan
    phase: Phase
    model: object
    optimizer: torch.optim.Optimizer
    mixer: object  # runtime.data.Mixer
    eval_data: dict[str, list]
    checkpoint_dir: Path
    device: torch.device
    log_metrics: Callable[[int, dict[str, float]], None] = lambda step, metrics: None
    on_checkpoint: Callable[[int], None] = lambda step: None
    progress: Callable[[int, dict[str, float]], None] = lambda step, metrics: None  # every rank
    micro_batch: int | None = None
    # the base before growth, evaluated beside the grown at step 0: loads it on this rank, held
    # as the trained model is (whole, or sharded under FSDP/HSDP); None: no growth
    load_base: Callable[[], object] | None = None
    keep_checkpoints: int = KEEP_CHECKPOINTS
    stop_after: int | None = None  # for tests and benchmarks: stop (without saving) after this step
    # several processes: this one is rank `rank` of `world`, and `strategy` (runtime/sharding.py)
    # says how they hold the model; under DDP `ddp` (DistributedDataParallel around `model`)
    # all-reduces the gradients and `model` itself saves and evaluates
    rank: int = 0
    world: int = 1
    strategy: str = "single"  # single, ddp, fsdp or hsdp
    ddp: object | None = None
    forward: object | None = None  # what the training forward runs (DDP, torch.compile); or model
    # the phase's trained model as a Hugging Face checkpoint, written at its end (with the config
    # and tokenizer files of `config_dir`); None: no export
    export_dir: Path | None = None
    config_dir: Path | None = None

    @property
    def layout(self) -> checkpoints.Layout:
        return checkpoints.Layout.of(self.strategy, self.rank, self.world)


def train_phase(run: PhaseRun, state: TrainState) -> TrainState:
    """Train from state.step to the phase's end step; returns the final state."""
    plan, phase, model, optimizer = run.plan, run.phase, run.model, run.optimizer
    train = plan.spec.train
    batch_size = plan.schedule.batch
    # this rank's fixed slice of every global batch (all of it in one process)
    per_rank = batch_size // run.world
    mine = slice(run.rank * per_rank, (run.rank + 1) * per_rank)
    micro = min(run.micro_batch or train.micro_batch or per_rank, per_rank)
    leader = run.rank == 0  # logs, and writes the checkpoints' state.json
    layout = run.layout
    forward = run.forward if run.forward is not None else model
    use_bf16 = train.precision == "bf16"
    device_type = run.device.type

    def autocast():
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=use_bf16)

    tokens_per_row = plan.schedule.sequence
    trainable = [p for p in model.parameters() if p.requires_grad]
    step = max(state.step, phase.start_step)
    # every rank evaluates its share of the rows (evaluate), in step with the others
    if step == names.BASELINE_STEP and run.eval_data:
        metrics = baseline(run, autocast, micro)
        if leader:
            run.log_metrics(step, metrics)
    while step < phase.end_step:
        # 1. LR is a pure function of the step
        lr = phase.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # 2. one optimizer step over the global batch, in micro-batches
        started = time.perf_counter()
        rows, codes = run.mixer.batch(step)  # the global batch; `codes` covers all of it
        rows = to_device(rows[mine], run.device)
        total_tokens = rows.shape[0] * (rows.shape[1] - 1)
        per_seq = []
        for i in range(0, rows.shape[0], micro):
            if run.ddp is not None:
                # all-reduce the gradients once, in the backward of the last micro-batch
                run.ddp.require_backward_grad_sync = i + micro >= rows.shape[0]
            losses = sequence_losses(forward, rows[i:i + micro], autocast)
            # every token of this rank's rows weighs the same, whatever the micro-batch split;
            # DDP then averages the ranks' equal-sized slices: the mean over the global batch
            (losses.sum() * (rows.shape[1] - 1) / total_tokens).backward()
            per_seq.append(losses.detach())
        if train.optimizer.clip:
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, train.optimizer.clip)
        else:
            grad_norm = None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        elapsed = time.perf_counter() - started
        # 3. bookkeeping and logging (step = number of optimizer steps done)
        losses = torch.cat(per_seq)
        if run.world > 1:  # every rank sees the whole batch's losses, in the batch's order
            losses = gather_ranks(losses, run.world)
        losses = losses.float().cpu()
        for code in codes:
            state.tokens_seen[code] = state.tokens_seen.get(code, 0) + tokens_per_row
        metrics = {names.LOSS: losses.mean().item(), names.LR: lr, names.STEP_TIME: elapsed,
                   names.TOKENS_PER_SEC: batch_size * tokens_per_row / elapsed}
        if grad_norm is not None:
            metrics[names.GRAD_NORM] = float(grad_norm)
        for code in sorted(set(codes)):
            mask = torch.tensor([c == code for c in codes])
            metrics[names.loss_of(code)] = losses[mask].mean().item()
        for lang in plan.spec.languages:
            metrics[names.tokens_of(lang.code)] = float(state.tokens_seen.get(lang.code, 0))
        if not all(math.isfinite(v) for v in metrics.values()):
            raise TrainError(f"loss became {metrics[names.LOSS]} at step {step}")
        state.step = step
        at_end = step == phase.end_step
        if run.eval_data and (at_end or (step - phase.start_step) % plan.eval_every == 0):
            for code, value in evaluate(model, run.eval_data, autocast, run.device, micro,
                                        run.rank, run.world).items():
                metrics[names.val_loss(code)] = value
        if leader:
            run.log_metrics(step, metrics)
        run.progress(step, metrics)
        if run.stop_after is not None and step >= run.stop_after:
            return state
        # like Model Zoo: intervals count from the start of the phase
        if at_end and run.export_dir is not None and layout.writes:
            # before the last checkpoint: a run killed in between trains the last steps again
            # and exports again, where one killed after would find the phase done, unexported
            checkpoints.export(run.export_dir, plan, model, run.config_dir, layout)
        if layout.writes and (at_end or (step - phase.start_step) % plan.checkpoint_every == 0):
            checkpoints.save(run.checkpoint_dir, plan, model, optimizer, state,
                             run.keep_checkpoints, layout)
            run.on_checkpoint(step)
    return state


def to_device(rows, device: torch.device) -> torch.Tensor:
    rows = torch.as_tensor(rows, dtype=torch.long)
    if device.type == "cuda":
        # from page-locked memory the copy runs asynchronously; the forward pass queues behind it
        return rows.pin_memory().to(device, non_blocking=True)
    return rows.to(device)


def gather_ranks(values: torch.Tensor, world: int) -> torch.Tensor:
    """Every rank's equal-length `values`, concatenated in rank order, on every rank."""
    import torch.distributed as dist

    parts = [torch.empty_like(values) for _ in range(world)]
    dist.all_gather(parts, values.contiguous())
    return torch.cat(parts)
