"""The local trainer's checkpoints: torch.distributed.checkpoint (DCP) directories, and the Hugging
Face export at the end of each phase.

    work/checkpoints/step_00000040/
        .metadata          DCP's index: every tensor's shape, dtype and which file holds which slice
        __0_0.distcp …     the tensors, one file per writing rank
        state.json         step, tokens seen per language, spec hash, architecture, world size,
                           parallelism (the last two informational)

One format for every way of training: the model and optimizer states are keyed by parameter name
(torch.distributed.checkpoint.state_dict), not by position or by rank, so a checkpoint written by
one process, by DDP ranks or by FSDP shards resumes under any of them at any world size (DCP
reshards on load). Under FSDP every rank writes its own shards in parallel; otherwise the ranks hold
identical copies and rank 0 writes alone.

Atomic: the ranks write into one temporary directory beside step_N/ that rank 0 made (and told the
others); DCP writes .metadata last, when every rank's files are complete; then rank 0 adds
state.json and renames the directory to step_N/ (genbac.atomic). A crash at any point leaves either
no step_N/ or a complete one, and latest() only takes directories with state.json.

Checkpoints written by genbac before DCP (format 1: model.safetensors + optimizer.pt) still resume
without sharding.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genbac import atomic
from genbac.compiler.plan import Plan

from genbac.errors import UserError

FORMAT = "genbac.checkpoint/2"
FORMAT_1 = "genbac.checkpoint/1"
STATE = "state.json"
EXPORT_SHARD_BYTES = 5 * 1024**3  # per safetensors file of a phase's Hugging Face export


class CheckpointError(UserError):
    """A checkpoint that does not fit the plan or cannot be read."""


@dataclass
class TrainState:
    step: int = 0
    tokens_seen: dict[str, int] = field(default_factory=dict)


SHARDED = ("fsdp", "hsdp")  # the strategies whose ranks each hold only their shards


@dataclass(frozen=True)
class Layout:
    """How this process takes part: rank `rank` of `world`; `sharded` when each rank holds only
    its shards (FSDP, HSDP), so that saving and loading are collective."""

    rank: int = 0
    world: int = 1
    sharded: bool = False
    parallelism: str = "single"  # recorded in state.json: single, ddp, fsdp or hsdp

    @classmethod
    def of(cls, strategy: str, rank: int = 0, world: int = 1) -> "Layout":
        return cls(rank=rank, world=world, sharded=strategy in SHARDED, parallelism=strategy)

    @property
    def writes(self) -> bool:
        """Whether this rank writes files (all do when sharded, rank 0 otherwise)."""
        return self.sharded or self.rank == 0


def architecture_keys(plan: Plan) -> dict:
    a = plan.architecture
    return {"hidden": a.hidden, "layers": plan.growth.layers, "heads": a.heads,
            "kv_heads": a.kv_heads, "ffn": a.ffn, "vocab": plan.growth.vocab}


def step_dir(directory: Path, step: int) -> Path:
    return directory / f"step_{step:08d}"


def latest(directory: Path) -> Path | None:
    """The newest complete checkpoint (a step_N/ with state.json), or None."""
    done = [p for p in sorted(directory.glob("step_*")) if (p / STATE).is_file()]
    return done[-1] if done else None


# --------------------------------------------------------------------------------------------------
# save
# --------------------------------------------------------------------------------------------------

def save(directory: Path, plan: Plan, model, optimizer, state: TrainState, keep: int,
         layout: Layout) -> Path:
    """Write step_N/ for `state.step`, keep the newest `keep`; call it on every rank that
    layout.writes (collective when sharded). Returns the checkpoint's path."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    final = step_dir(directory, state.step)
    model_state, optim_state = get_state_dict(model, optimizer)  # collective when sharded
    with contextlib.ExitStack() as stack:
        tmp = None
        if layout.rank == 0:
            tmp = stack.enter_context(atomic.directory(final, replace=True))
        if layout.sharded:
            tmp = _broadcast_path(tmp)
        _dcp().save({"model": model_state, "optim": optim_state}, checkpoint_id=tmp,
                    no_dist=not layout.sharded)
        if layout.rank == 0:
            atomic.write_file(tmp / STATE, json.dumps({
                "format": FORMAT, "step": state.step, "tokens_seen": state.tokens_seen,
                "spec_hash": plan.spec_hash, "architecture": architecture_keys(plan),
                "world_size": layout.world, "parallelism": layout.parallelism}, indent=2))
    # leaving the block renamed it into place on rank 0
    if layout.rank == 0:
        for old in [p for p in sorted(directory.glob("step_*")) if (p / STATE).is_file()][:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    if layout.sharded:
        # the others wait here, on the default group (its long timeout), while rank 0 deletes:
        # HSDP's mesh groups keep NCCL's 10 minutes, too short for a large delete on Lustre
        import torch.distributed as dist
        dist.barrier()
    return final


def _broadcast_path(path: Path | None) -> Path:
    import torch.distributed as dist

    box = [str(path) if path is not None else None]
    dist.broadcast_object_list(box, src=0)
    return Path(box[0])


def _dcp():
    import warnings

    import torch.distributed.checkpoint as dcp

    # DCP warns on every call in one process that it "assumes the intent is to save/load in a
    # single process": that is the intent here
    warnings.filterwarnings("ignore", message=".*single process.*", category=UserWarning)
    return dcp


# --------------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------------

def load(path: Path, plan: Plan, model, optimizer, layout: Layout) -> TrainState:
    """Restore the model and optimizer (on every rank; collective when sharded)."""
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    meta = read_state(path)
    if meta.get("architecture") != architecture_keys(plan):
        raise CheckpointError(f"checkpoint {path} was made for another architecture: "
                         f"{meta.get('architecture')} vs {architecture_keys(plan)}")
    if meta.get("format") == FORMAT_1:
        if layout.sharded:
            raise CheckpointError(f"checkpoint {path} is in genbac's format before sharded training "
                             "(model.safetensors): resume it without `parallelism = fsdp`/`hsdp`"
                             ", and the next checkpoint can be resumed either way")
        _load_format_1(path, plan, model, optimizer)
    else:
        model_state, optim_state = get_state_dict(model, optimizer)
        try:
            _dcp().load({"model": model_state, "optim": optim_state}, checkpoint_id=path,
                        no_dist=not layout.sharded)
        except (Exception, _dcp().CheckpointException) as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {dcp_failure(exc)}") from None
        set_state_dict(model, optimizer, model_state_dict=model_state,
                       optim_state_dict=optim_state)
    return TrainState(step=meta["step"], tokens_seen=meta["tokens_seen"])


def read_state(path: Path) -> dict:
    try:
        meta = json.loads((path / STATE).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has no readable {STATE}: {exc}") from None
    if meta.get("format") not in (FORMAT, FORMAT_1):
        raise CheckpointError(f"checkpoint {path} is in format {meta.get('format')!r}, which this "
                         f"genbac does not read (it reads {FORMAT})")
    return meta


def _load_format_1(path: Path, plan: Plan, model, optimizer) -> None:
    from safetensors.torch import load_file

    missing, unexpected = model.load_state_dict(load_file(str(path / "model.safetensors")),
                                                strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise CheckpointError(f"checkpoint {path} does not match the model: missing {missing}, "
                         f"unexpected {unexpected}")
    if plan.architecture.tie_embeddings:
        model.tie_weights()
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))


def dcp_failure(exc: BaseException) -> str:
    """What went wrong in a DCP call, in one line: the first failed rank's own exception (DCP
    raises CheckpointException, a BaseException, with every rank's failure inside)."""
    failures = getattr(exc, "failures", None)
    if failures:
        rank = min(failures)
        inner = failures[rank]
        inner = inner[0] if isinstance(inner, tuple) else inner
        return f"rank {rank}: {_one_line(inner)}"
    return _one_line(exc)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    if isinstance(exc, EOFError):
        return f"{name}: a file ends early (truncated, or still being written)"
    return f"{name}: {text.splitlines()[0]}" if text else name


def weights(path: Path) -> dict[str, torch.Tensor]:
    """The model's full tensors in a checkpoint, by parameter name, read in this one process
    (for comparing runs and for tools; the trainer loads through `load`)."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    if read_state(path).get("format") == FORMAT_1:
        from safetensors.torch import load_file

        return load_file(str(path / "model.safetensors"))
    stored = FileSystemReader(str(path)).read_metadata().state_dict_metadata
    template = {key[len("model."):]: torch.empty(meta.size, dtype=meta.properties.dtype)
                for key, meta in stored.items()
                if key.startswith("model.") and isinstance(meta, TensorStorageMetadata)}
    box = {"model": template}
    _dcp().load(box, checkpoint_id=path, no_dist=True)
    return box["model"]


# --------------------------------------------------------------------------------------------------
# the Hugging Face export of a phase
# --------------------------------------------------------------------------------------------------

def export(out_dir: Path, plan: Plan, model, config_dir: Path, layout: Layout) -> Path | None:
    """The trained model as a Hugging Face checkpoint in `out_dir`: config.json and the tokenizer
    and generation files of `config_dir` (the grown checkpoint), the weights as sharded
    safetensors with model.safetensors.index.json (what transformers loads as it is, and what
    Model Zoo's converter takes). Call on every rank (collective when sharded); rank 0 gathers the
    full tensors one at a time into host memory and writes them. Returns out_dir on rank 0."""
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(
        full_state_dict=layout.sharded, cpu_offload=True))
    if layout.rank != 0:
        return None
    if plan.architecture.tie_embeddings:
        full.pop("lm_head.weight", None)  # transformers ties it to the embeddings on load
    tensors = {name: t.detach().contiguous().cpu() for name, t in sorted(full.items())}
    groups: list[list[str]] = [[]]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if groups[-1] and size + nbytes > EXPORT_SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    from .grow import copy_side_files
    from .safetensors_stream import INDEX_NAME, shard_filename

    with atomic.directory(out_dir, replace=True) as tmp:
        weight_map = {}
        for i, names in enumerate(groups):
            filename = shard_filename(i + 1, len(groups))
            save_file({n: tensors[n] for n in names}, str(tmp / filename),
                      metadata={"format": "pt"})
            weight_map |= {n: filename for n in names}
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size()
                                                for t in tensors.values())},
                 "weight_map": weight_map}
        (tmp / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        shutil.copyfile(config_dir / "config.json", tmp / "config.json")
        # the grown checkpoint's tokenizer and generation files are the trained model's too
        copy_side_files(config_dir, tmp, vocab_extended=False)
    return out_dir
