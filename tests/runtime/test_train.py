"""The trainer's pieces on a tiny real model: freezing for `train = new`, gradient accumulation
that gives the same update whatever the micro-batch split, and the GPU benchmark's CPU mode."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genbac.compiler.compile import plan_spec
from genbac.runtime.train import (PhaseRun, TrainState, apply_freezing, hf_config, make_optimizer,
                                  train_phase)

SPEC = """
experiment "t" {{
  architecture tiny {{ hidden = 32  layers = 4  heads = 4  kv_heads = 2  ffn = 64  vocab = 512
                      context = 64 }}
  base = tiny
  tokenizer = bpe(vocab = 512)
  grow blocks {{ add = 2  train = {train} }}
  language en {{ data = "d" tokens = 4K }}
  train {{ sequence = 16 batch = 8 optimizer = {optimizer}
          precision = fp32  checkpoint every 1000 steps {micro} }}
  hardware = cpu
}}
"""


ADAMW = "adamw(lr = 1e-2, weight_decay = 0.1, clip = 1.0)"
# SGD for comparing updates: Adam divides by the gradient's own size, which turns float rounding in
# near-zero gradients into visible differences; SGD keeps the comparison about the gradients.
SGD = "sgd(lr = 0.5, momentum = 0.9, clip = 1.0)"


def plan(train="all", micro="", optimizer=ADAMW):
    return plan_spec(SPEC.format(train=train, micro=micro, optimizer=optimizer), "t.genba")[0]


def model_for(p, seed=0):
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(hf_config(p))


def test_train_new_freezes_base_blocks_embeddings_and_head():
    p = plan(train="new")
    model = model_for(p)
    trainable = apply_freezing(p, model)
    assert trainable == p.growth.trainable_parameters
    for entry, layer in zip(p.growth.layer_map, model.model.layers):
        assert all(t.requires_grad == entry.new for t in layer.parameters()), entry
    assert not model.model.embed_tokens.weight.requires_grad
    assert not model.lm_head.weight.requires_grad


class FixedBatches:
    """A Mixer stand-in with the same interface: one fixed random batch per step."""

    def __init__(self, steps, batch, sequence, vocab):
        rng = np.random.default_rng(0)
        self.rows = rng.integers(0, vocab, size=(steps, batch, sequence + 1))

    def batch(self, step):
        return self.rows[step], ["en"] * self.rows.shape[1]


@pytest.mark.parametrize("micro", [1, 2, 4])
def test_micro_batches_give_the_same_update_as_the_full_batch(micro, tmp_path):
    results = []
    for split in (None, micro):
        p = plan(optimizer=SGD)
        model = model_for(p)
        apply_freezing(p, model)
        opt = make_optimizer(p, model)
        run = PhaseRun(plan=p, phase=p.schedule.phases[0], model=model, optimizer=opt,
                       mixer=FixedBatches(p.schedule.total_steps, 8, 16, 512), eval_data={},
                       checkpoint_dir=tmp_path / f"c{split}", device=torch.device("cpu"),
                       log_metrics=lambda step, m: None, micro_batch=split, stop_after=3)
        train_phase(run, TrainState())
        results.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    full, split = results
    for key in full:
        torch.testing.assert_close(split[key], full[key], rtol=1e-4, atol=1e-6)


def test_gpu_benchmark_runs_tiny_on_the_cpu(tmp_path):
    # bench/gpu_train.py is run for real on a GPU later; --tiny keeps it working here
    root = Path(__file__).resolve().parent.parent.parent
    out = tmp_path / "gpu_train.json"
    r = subprocess.run([sys.executable, str(root / "bench/gpu_train.py"), "--tiny", "--warmup", "1",
                        "--rounds", "1", "--steps", "1", "--modes", "fsdp,eager",
                        "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [(row["side"], row["mode"]) for row in report["rows"]] == [
        ("genbac train_phase", "eager"), ("plain PyTorch", "eager"),
        ("genbac train_phase", "fsdp"), ("plain PyTorch", "fsdp")]  # fsdp last: it shards
    for row in report["rows"]:
        assert row["tokens_per_s"] > 0 and row["micro_batch"] == report["batch"]
        assert row["mfu"] is None  # no peak FLOP/s is known for a CPU
    assert report["ratio_trainer_to_plain"]["eager"] > 0
    assert report["ratio_fsdp_to_eager"] > 0
    assert "| genbac train_phase" in r.stdout and "| plain PyTorch" in r.stdout


@pytest.mark.parametrize("sizes", [[8, 8, 8, 8, 5], [37], [1, 36], [20, 17]])
@pytest.mark.parametrize("world", [1, 2, 3, 5, 8])
def test_each_rank_evaluates_an_equal_share_and_together_all_rows_in_order(sizes, world):
    """rank_share: the ranks' shares, one after another, are the validation rows in order and then
    copies of the last row; every rank runs as many forward passes (FSDP needs all of them)."""
    from genbac.runtime.train import rank_share

    rows = np.arange(37 * 3).reshape(37, 3)
    batches = np.split(rows, np.cumsum(sizes)[:-1])
    per = -(-37 // world)
    for step in sorted({1, 3, per}):
        shares = [list(rank_share(batches, rank, world, step)) for rank in range(world)]
        assert {len(chunks) for chunks in shares} == {-(-per // step)}  # forward passes per rank
        together = np.concatenate([np.concatenate(chunks) for chunks in shares])
        assert np.array_equal(together[:37], rows)
        assert len(together) == per * world and (together[37:] == rows[-1]).all()
