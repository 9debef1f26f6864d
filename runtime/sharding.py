"""How the local trainer holds the model over its ranks: a whole copy per process (one process,
DDP) or PyTorch's FSDP2 shards.

    single   one process, the whole model
    ddp      N processes, a whole copy each; DistributedDataParallel all-reduces the gradients
    fsdp     N processes, each holding 1/N of every parameter, gradient and optimizer moment:
             `fully_shard` on every decoder layer (its weights are gathered for its forward and
             backward only, the next one's gathered meanwhile) and at the root (embeddings, final
             norm, head); gradients are reduce-scattered
    hsdp     FSDP inside each node, replicas across nodes: a 2-D device mesh (replicate, shard),
             so parameters are gathered over the fast links inside a node only

The strategy, activation checkpointing and micro-batch come from the plan on GPUs (compiler/
parallelism.py chose them by memory) and from the spec on `cpu x N` (`parallelism = fsdp`: a
rehearsal of the GPU path on gloo). Under bf16 FSDP keeps fp32 shards and computes with bf16
copies (MixedPrecisionPolicy: bf16 parameters, fp32 gradient reduction). That is close to, not
the same as, DDP's fp32 weights under bf16 autocast: there the norms' weights, the embeddings'
output and the residual stream stay fp32, so a bf16 run resumed under the other strategy
continues on a slightly different loss curve.

A sharded model is built on the meta device (no memory), sharded, then materialised: each rank
allocates only its shards and reads only its slices of the grown Hugging Face checkpoint through
DCP's Hugging Face storage reader, by parameter name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from genbac.compiler.plan import Plan

from .checkpoints import SHARDED


@dataclass(frozen=True)
class Sharding:
    strategy: str  # single, ddp, fsdp or hsdp
    world: int
    replicas: int = 1  # HSDP: copies of the model (nodes); shards span world // replicas ranks
    activation_checkpointing: bool = False
    micro_batch: int | None = None  # the plan's choice on GPUs; None: the spec's or the whole slice

    @property
    def sharded(self) -> bool:
        return self.strategy in SHARDED


def sharding_of(plan: Plan, world: int) -> Sharding:
    """The plan's way of holding the model over `world` processes."""
    p = plan.parallelism
    if p is not None and p.devices == world:  # GPUs as planned
        strategy = p.strategy if (p.strategy != "ddp" or world > 1) else "single"
        return Sharding(strategy, world, replicas=p.replicas if p.strategy == "hsdp" else 1,
                        activation_checkpointing=p.activation_checkpointing,
                        micro_batch=p.micro_batch)
    asked = plan.spec.train.parallelism  # cpu x N, or a rehearsal on fewer devices than planned
    if asked in SHARDED:
        nodes = plan.spec.hardware.nodes or 1
        replicas = nodes if asked == "hsdp" and world % nodes == 0 else 1
        return Sharding(asked, world, replicas=replicas)
    return Sharding("ddp" if world > 1 else "single", world)


def build_sharded(plan: Plan, grown_dir: Path, device: torch.device, sharding: Sharding,
                  layers: int | None = None):
    """The grown model, sharded over the process group as `sharding` says, its slices read from
    `grown_dir`; trainable parameters as `train = all/new` says (set before sharding: FSDP
    keeps each parameter's requires_grad). With `layers`, the base before growth in `grown_dir`
    instead (its own vocabulary; for evaluation: nothing frozen)."""
    import torch.distributed.checkpoint as dcp
    from transformers import LlamaForCausalLM

    from .train import apply_freezing, check_layers, hf_config

    check_layers(plan, grown_dir, layers)
    config = hf_config(plan, layers=layers,
                       vocab=plan.growth.base_vocab if layers is not None else None)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    if layers is None:
        apply_freezing(plan, model)
    shard(model, plan, device, sharding)
    model.to_empty(device=device)
    # buffers are not in checkpoints (rotary frequencies): computed again on the real device
    model.model.rotary_emb = type(model.model.rotary_emb)(config=config).to(device)
    state = {k: v for k, v in model.state_dict().items()
             if not (plan.architecture.tie_embeddings and k == "lm_head.weight")}
    try:
        dcp.load(state, storage_reader=dcp.HuggingFaceStorageReader(str(grown_dir)))
    except (Exception, dcp.CheckpointException) as exc:  # every rank's failure, wrapped by DCP
        from .checkpoints import dcp_failure
        from .train import TrainError

        raise TrainError(f"cannot load the model from {grown_dir}: {dcp_failure(exc)}") from None
    return model  # tied embeddings stay one parameter: fully_shard and to_empty keep it shared


def shard(model, plan: Plan, device: torch.device, sharding: Sharding) -> None:
    """FSDP2 on `model` in place (on the meta device, or materialised: then each rank keeps its
    slices of the values it has): `fully_shard` per decoder layer, then at the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if sharding.activation_checkpointing:
        enable_activation_checkpointing(model)
    if sharding.strategy == "hsdp":
        mesh = init_device_mesh(device.type, (sharding.replicas, sharding.world // sharding.replicas),
                                mesh_dim_names=("replicate", "shard"))
    else:
        mesh = init_device_mesh(device.type, (sharding.world,))
    options = {"mesh": mesh}
    if plan.spec.train.precision == "bf16":
        options["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16,
                                                    reduce_dtype=torch.float32)
    for layer in model.model.layers:
        fully_shard(layer, **options)
    fully_shard(model, **options)


def enable_activation_checkpointing(model) -> None:
    """Each decoder layer keeps only its input for the backward pass and recomputes the rest
    (transformers' per-layer checkpointing, non-reentrant: the form FSDP2 supports)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x's name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
