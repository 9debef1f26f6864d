"""FSDP2 in one process (a real gloo group of one): the sharded model is the grown checkpoint, with
tied embeddings kept one parameter and `train = new`'s frozen blocks frozen; it trains like the
whole model; activation checkpointing changes nothing but memory; checkpoints are DCP directories
that resume sharded or whole, and the phase-end export loads in transformers with the same logits.
Several processes: tests/runtime/test_fsdp.py."""

import json
import re

import pytest
import torch
import torch.distributed as dist

from genbac.compiler.compile import plan_spec
from genbac.runtime import checkpoints
from genbac.runtime.sharding import Sharding, build_sharded
from genbac.runtime.train import (PhaseRun, TrainState, apply_freezing, hf_config, load_model,
                                  make_optimizer, train_phase)
from test_train import SGD, FixedBatches

SPEC = """
experiment "t" {{
  architecture tiny {{ hidden = 32  layers = 2  heads = 4  kv_heads = 2  ffn = 64  vocab = 320
                      context = 64  tie_embeddings = {tied} }}
  base = tiny
  tokenizer = bpe(vocab = 320)
  grow blocks {{ add = 2  train = {train} }}
  language en {{ data = "d" tokens = 768 }}  # 6 steps
  train {{ sequence = 16 batch = 8 optimizer = {optimizer}
          precision = fp32  checkpoint every 2 steps  keep_checkpoints = 10 }}
  hardware = cpu
}}
"""
CPU = torch.device("cpu")


@pytest.fixture(scope="module", autouse=True)
def group():
    """A gloo process group of one, as torchrun makes for `parallelism = fsdp` on one device."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def plan(tied="true", train="new", optimizer=SGD):
    return plan_spec(SPEC.format(tied=tied, train=train, optimizer=optimizer), "t.genba")[0]


def grown(p, directory):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(hf_config(p)).save_pretrained(directory)
    return directory


def whole(p, directory):
    model = load_model(p, directory)
    apply_freezing(p, model)
    return model


def full_state(model) -> dict[str, torch.Tensor]:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return {k: v.detach().clone() for k, v in state.items()}


def run_for(p, model, directory, steps, strategy, export=None, config=None):
    return PhaseRun(plan=p, phase=p.schedule.phases[0], model=model,
                    optimizer=make_optimizer(p, model),
                    mixer=FixedBatches(p.schedule.total_steps, 8, 16, 320), eval_data={},
                    checkpoint_dir=directory, device=CPU, stop_after=steps, strategy=strategy,
                    export_dir=export, config_dir=config)


def test_the_sharded_model_is_the_checkpoint_with_ties_and_frozen_blocks_kept(tmp_path):
    p = plan()
    directory = grown(p, tmp_path / "grown")
    sharded = build_sharded(p, directory, CPU, Sharding("fsdp", 1))
    reference = whole(p, directory)
    assert sharded.lm_head.weight is sharded.model.embed_tokens.weight  # still one parameter
    assert type(sharded.lm_head.weight).__name__ == "DTensor"
    state = full_state(sharded)
    assert state.keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert torch.equal(state[key], value), key
    for (name, a), (_, b) in zip(sharded.named_parameters(), reference.named_parameters()):
        assert a.requires_grad == b.requires_grad, name
    assert sum(t.requires_grad for t in sharded.parameters()) == sum(
        t.requires_grad for t in reference.parameters()) > 0
    inputs = torch.randint(0, 320, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(sharded(input_ids=inputs).logits,
                                   reference(input_ids=inputs).logits, rtol=0, atol=1e-6)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_fsdp_trains_like_the_whole_model(tmp_path, checkpointing):
    p = plan(tied="false", train="all")
    directory = grown(p, tmp_path / "grown")
    reference = whole(p, directory)
    train_phase(run_for(p, reference, tmp_path / "a", 6, "single"), TrainState())
    sharded = build_sharded(p, directory, CPU, Sharding("fsdp", 1,
                                                         activation_checkpointing=checkpointing))
    train_phase(run_for(p, sharded, tmp_path / "b", 6, "fsdp"), TrainState())
    state = full_state(sharded)
    moved = max((v - p0).abs().max().item() for v, p0 in zip(
        reference.state_dict().values(), whole(p, directory).state_dict().values()))
    assert moved > 1e-3  # it trained
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=1e-6)


def test_checkpoints_resume_sharded_or_whole_and_the_export_loads(tmp_path):
    from transformers import LlamaForCausalLM

    p = plan(optimizer="adamw(lr = 1e-2, weight_decay = 0.1, clip = 1.0)")
    directory = grown(p, tmp_path / "grown")
    saved = tmp_path / "ckpt"
    # uninterrupted, sharded: 6 steps, checkpoints at 2, 4, 6 and the export at the end
    sharded = build_sharded(p, directory, CPU, Sharding("fsdp", 1))
    assert p.schedule.phases[0].end_step == 6
    end = train_phase(run_for(p, sharded, saved, None, "fsdp", export=tmp_path / "export",
                              config=directory), TrainState())
    assert end.step == 6
    assert [c.name for c in sorted(saved.glob("step_*"))] == [
        "step_00000002", "step_00000004", "step_00000006"]
    ckpt = saved / "step_00000004"
    assert (ckpt / ".metadata").is_file() and list(ckpt.glob("*.distcp"))
    meta = json.loads((ckpt / "state.json").read_text())
    assert (meta["format"], meta["step"], meta["parallelism"]) == ("genbac.checkpoint/2", 4, "fsdp")
    assert not list(tmp_path.glob("ckpt/.*tmp"))  # nothing half-written left beside
    final = full_state(sharded)

    # resumed from step 4 whole (one process, no sharding), and sharded again: the same weights
    for strategy in ("single", "fsdp"):
        model = (whole(p, directory) if strategy == "single" else
                 build_sharded(p, directory, CPU, Sharding("fsdp", 1)))
        run = run_for(p, model, tmp_path / strategy, None, strategy)
        state = checkpoints.load(ckpt, p, model, run.optimizer, run.layout)
        assert state.step == 4
        train_phase(run, state)
        resumed = full_state(model)
        for key, value in final.items():
            assert torch.equal(resumed[key], value), (strategy, key)

    # the checkpoint's tensors by name, in one process, without the model
    stored = checkpoints.weights(saved / "step_00000006")
    for key, value in final.items():
        assert torch.equal(stored[key], value), key

    # the export: sharded safetensors with an index, config and all, loaded by transformers as is
    export = tmp_path / "export"
    index = json.loads((export / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {"model-00001-of-00001.safetensors"}
    assert "lm_head.weight" not in index["weight_map"]  # tied: transformers ties it on load
    loaded = LlamaForCausalLM.from_pretrained(export)
    assert loaded.config.num_hidden_layers == p.growth.layers
    inputs = torch.randint(0, 320, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=inputs).logits,
                                   sharded(input_ids=inputs).logits, rtol=0, atol=0)


def test_a_checkpoint_for_another_model_or_a_broken_one_is_a_clear_error(tmp_path):
    p = plan(tied="false", train="all")
    directory = grown(p, tmp_path / "grown")
    model = whole(p, directory)
    run = run_for(p, model, tmp_path / "c", None, "single")
    train_phase(run, TrainState())
    ckpt = checkpoints.latest(tmp_path / "c")
    other = plan_spec(SPEC.format(tied="false", train="all", optimizer=SGD).replace(
        "add = 2", "add = 1"), "t.genba")[0]
    with pytest.raises(checkpoints.CheckpointError, match="made for another architecture"):
        checkpoints.load(ckpt, other, model, run.optimizer, run.layout)
    for data in ckpt.glob("*.distcp"):
        data.write_bytes(data.read_bytes()[:100])  # truncated: a disk that filled up
    with pytest.raises(checkpoints.CheckpointError,
                       match=re.escape(f"cannot read checkpoint {ckpt}: rank 0: EOFError: a file "
                                       "ends early")):
        checkpoints.load(ckpt, p, model, run.optimizer, run.layout)
    (ckpt / "state.json").write_text('{"format": "genbac.checkpoint/9"}')
    with pytest.raises(checkpoints.CheckpointError, match="format 'genbac.checkpoint/9'"):
        checkpoints.load(ckpt, p, model, run.optimizer, run.layout)
