"""GPU speed of the local trainer: genbac's `train_phase` against a minimal plain loop, same run.

    .venv/bin/python bench/gpu_train.py            # on a GPU: Llama-3.2-1B shape, eager + compile
    .venv/bin/python bench/gpu_train.py --tiny     # anywhere: a tiny model, a few steps (tested)
    options: --steps 4 --rounds 3 --warmup 3 --modes eager,compile,fsdp --json PATH
             --peak-tflops T

Setup (in a temporary directory): a byte-level BPE (vocab 1024) trained on examples/data/{en,de},
both languages packed by `prepare_language`, and the spec below compiled by `plan_spec`: the
Llama-3.2-1B shape (declared in the spec: 1.24B parameters, random init), batch 8 × sequence
2048, bf16, AdamW with clipping, `hardware = h100 x 1` (`--tiny`: hidden 64, 2 layers, sequence
128, on the CPU).
ONE model and ONE optimizer, built the way `genbac run` builds them (transformers
`LlamaForCausalLM` with SDPA attention, `make_optimizer`: fused AdamW on CUDA, `configure_device`:
TF32), serve both sides, so the comparison is about the loop and not about two copies of the model
in memory; the weights' values do not change the speed.

(a) trainer: `train_phase` with the real `Mixer`, the plan's LR, per-language losses, clipping,
    bf16 autocast, pinned non-blocking copies of each batch, a logger that keeps the metrics, no
    evaluation, `stop_after` ending each round before any checkpoint;
(b) plain: the minimal loop on the same steps' batches (already on the device): autocast forward,
    mean cross entropy, backward, clip, step, zero_grad.

Per mode (eager; `torch.compile` of the model, shared by both sides; fsdp: the same model put under
FSDP2 in place in a process group of one, `runtime.sharding.shard` as `genbac run` does it:
fully_shard per layer and at the root, bf16 MixedPrecisionPolicy, a new optimizer from
`make_optimizer`, the trainer told `strategy = "fsdp"`; always measured last, as it changes the
model): --warmup steps per side (compilation happens there and is timed separately), then --rounds
alternating rounds of --steps steps per side, the device synchronised around each round. The eager
row of the trainer is also what DDP runs per GPU (one process: no gradient all-reduce), so
`ratio_fsdp_to_eager` is FSDP's overhead against DDP on one GPU. Reported per row: median tokens/s,
ms/step and MFU = (6·N + attention) FLOPs per token × tokens/s ÷ the card's peak dense bf16 FLOP/s
(H100 SXM and H200: 989 TFLOP/s; `--peak-tflops` for another card; none on the CPU). The FLOPs per
token are the plan's own estimate (`plan.estimate.flops_per_token`: 4N + 2N_trainable + 6·layers·
sequence·hidden, the formula `genbac explain` uses). If a side runs out of GPU memory at the full
batch, both sides of that mode are measured again with half the micro-batch (accumulating), and
the row says so. Writes the JSON (default bench/gpu_train.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

FULL = """
experiment "bench-gpu-train" {
  architecture llama1b {   # Llama-3.2-1B's shape (its rope scaling does not change the speed)
    hidden = 2048  layers = 16  heads = 32  kv_heads = 8  ffn = 8192  vocab = 128256
    head_dim = 64  context = 2048  tie_embeddings = true  rope_theta = 500000  norm_eps = 1e-5
  }
  base = llama1b
  tokenizer = "the bench's own BPE"   # token ids < 1024 in a 128,256-row embedding: same speed
  language en "English" { data = "data/en/train.jsonl"  tokens = ~1.6M }
  language de "German"  { data = "data/de/train.jsonl"  tokens = ~1.6M }
  train {
    tokens    = 3.2M
    sequence  = 2048
    batch     = 8
    optimizer = adamw(lr = 3e-4, weight_decay = 0.1, clip = 1.0)
    schedule  = warmup(10%) then cosine(to = 10%)
    precision = bf16
    checkpoint every 10000 steps
    seed = 1234
  }
  hardware = h100 x 1
}
"""

TINY = """
experiment "bench-gpu-train-tiny" {
  architecture tiny { hidden = 64  layers = 2  heads = 4  kv_heads = 2  ffn = 256  vocab = 1024
                      context = 128 }
  base = tiny
  tokenizer = bpe(vocab = 1024)
  language en "English" { data = "data/en/train.jsonl"  tokens = ~50K }
  language de "German"  { data = "data/de/train.jsonl"  tokens = ~50K }
  train {
    tokens    = 100K
    sequence  = 128
    batch     = 8
    optimizer = adamw(lr = 3e-3, weight_decay = 0.1, clip = 1.0)
    precision = bf16
    checkpoint every 10000 steps
    seed = 1234
  }
  hardware = cpu
}
"""

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, SXM


def setup(scratch: Path, tiny: bool, device):
    import torch
    from transformers import LlamaForCausalLM

    from genbac.compiler.compile import plan_spec
    from genbac.runtime.data import Mixer, prepare_language
    from genbac.runtime.tokenizer import train_bpe_tokenizer
    from genbac.runtime.train import (apply_freezing, configure_device, hf_config,
                                      make_optimizer)

    plan, _ = plan_spec(TINY if tiny else FULL, str(EXAMPLES / "bench-gpu-train.genba"))
    sources = [EXAMPLES / f"data/{code}/train.jsonl" for code in ("en", "de")]
    tokenizer = train_bpe_tokenizer(sources, 1024, scratch / "tokenizer")
    data = {lang.code: prepare_language(lang.code, list(lang.sources), EXAMPLES, tokenizer,
                                        plan.schedule.sequence, scratch / "data",
                                        model_vocab=plan.growth.vocab, log=lambda *_: None)
            for lang in plan.spec.languages}
    mixer = Mixer(json.loads(plan.model_dump_json()), data, plan.spec.train.seed)
    configure_device(device)
    torch.manual_seed(plan.spec.train.seed)
    with torch.device(device):  # initialised in place: a 1B model on the CPU first takes long
        model = LlamaForCausalLM(hf_config(plan))  # SDPA attention, as genbac's hf_config says
    model.train()
    apply_freezing(plan, model)
    optimizer = make_optimizer(plan, model)
    return plan, mixer, model, optimizer


class Trainer:
    """(a): genbac's train_phase for n steps from a given step."""

    def __init__(self, plan, mixer, model, optimizer, device, scratch: Path):
        from genbac.runtime.train import PhaseRun

        self.run = PhaseRun(plan=plan, phase=plan.schedule.phases[0], model=model,
                            optimizer=optimizer, mixer=mixer, eval_data={},
                            checkpoint_dir=scratch / "checkpoints", device=device,
                            log_metrics=lambda step, metrics: None)

    def __call__(self, start: int, n: int) -> None:
        from genbac.runtime.train import TrainState, train_phase

        self.run.stop_after = start + n
        assert train_phase(self.run, TrainState(step=start)).step == start + n


class Plain:
    """(b): the minimal loop on pre-made device batches."""

    def __init__(self, model, optimizer, clip: float, batches: dict, device):
        self.model, self.optimizer, self.clip = model, optimizer, clip
        self.batches, self.device = batches, device
        self.forward, self.micro = model, None

    def __call__(self, start: int, n: int) -> None:
        import torch
        import torch.nn.functional as F

        for step in range(start, start + n):
            x = self.batches[step]
            micro = self.micro or x.shape[0]
            for i in range(0, x.shape[0], micro):
                part = x[i:i + micro]
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    logits = self.forward(input_ids=part[:, :-1]).logits
                loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                       part[:, 1:].reshape(-1))
                (loss * part.shape[0] / x.shape[0]).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)


def to_fsdp(plan, model, optimizer, device):
    """`model` under FSDP2 in place, in a process group of one (NCCL on CUDA, gloo on the CPU);
    the old optimizer's state freed first; returns the new optimizer."""
    import torch.distributed as dist

    from genbac.runtime.sharding import Sharding, shard
    from genbac.runtime.train import make_optimizer

    optimizer.zero_grad(set_to_none=True)
    optimizer.state.clear()
    if not dist.is_initialized():
        extra = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                store=dist.HashStore(), rank=0, world_size=1, **extra)
    shard(model, plan, device, Sharding("fsdp", 1))
    return make_optimizer(plan, model)


def measure(sides: dict, device, first: int, warmup: int, rounds: int, steps: int) -> dict:
    """Warm up each side, then alternate timed rounds; per side: the warmup's seconds and every
    round's seconds per step."""
    import torch

    def timed(side, start, n) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        side(start, n)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    out = {name: {"warmup_s": timed(side, first, warmup), "step_s": []}
           for name, side in sides.items()}
    step = first + warmup
    for _ in range(rounds):
        for name, side in sides.items():  # both sides train on the same steps' batches
            out[name]["step_s"].append(timed(side, step, steps) / steps)
        step += steps
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model, CPU unless a GPU is here")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round and side")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per side and mode")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per side and mode")
    parser.add_argument("--modes", default=None,
                        help="eager,compile (default on a GPU) or eager (default on the CPU)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the card's peak dense bf16 TFLOP/s (known: H100, H200, A100)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "gpu_train.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="genbac-gpu-bench-") as scratch:
        scratch = Path(scratch)
        os.environ.update(HF_HOME=str(scratch / "hf-home"), HF_HUB_OFFLINE="1",
                          HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
        import torch
        import transformers

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        modes = (args.modes or ("eager,compile,fsdp" if device.type == "cuda" else "eager")
                 ).split(",")
        modes.sort(key=lambda m: m == "fsdp")  # last: it shards the model in place
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items()
                                         if device.type == "cuda" and k in name), None)
        started = time.perf_counter()
        plan, mixer, model, optimizer = setup(scratch, args.tiny, device)
        batch, sequence = plan.schedule.batch, plan.schedule.sequence
        tokens_per_step = batch * sequence
        flops_per_token = plan.estimate.flops_per_token
        per_mode = args.warmup + args.rounds * args.steps
        assert len(modes) * per_mode < plan.checkpoint_every and \
            len(modes) * per_mode <= plan.schedule.phases[0].end_step
        batches = {s: torch.as_tensor(mixer.batch(s)[0], dtype=torch.long).to(device)
                   for s in range(len(modes) * per_mode)}
        trainer = Trainer(plan, mixer, model, optimizer, device, scratch)
        plain = Plain(model, optimizer, plan.spec.train.optimizer.clip, batches, device)
        parameters = sum(p.numel() for p in model.parameters())
        print(f"{name or device.type}: torch {torch.__version__}, transformers "
              f"{transformers.__version__}; attention {model.config._attn_implementation}, "
              f"optimizer {type(optimizer).__name__}"
              f"{' fused' if optimizer.defaults.get('fused') else ''}; {parameters / 1e6:,.1f}M "
              f"parameters, batch {batch} × {sequence} tokens, bf16 autocast; set-up "
              f"{time.perf_counter() - started:.0f} s")

        rows = []
        first = 0
        for mode in modes:
            if mode == "fsdp":
                optimizer = to_fsdp(plan, model, optimizer, device)
                trainer.run.optimizer, trainer.run.strategy = optimizer, "fsdp"
                plain.optimizer = optimizer
            forward = torch.compile(model) if mode == "compile" else None
            micro = None
            while True:
                trainer.run.forward, trainer.run.micro_batch = forward, micro
                plain.forward, plain.micro = model if forward is None else forward, micro
                try:
                    result = measure({"trainer": trainer, "plain": plain}, device, first,
                                     args.warmup, args.rounds, args.steps)
                    break
                except torch.cuda.OutOfMemoryError:
                    optimizer.zero_grad(set_to_none=True)
                    torch.cuda.empty_cache()
                    micro = (micro or batch) // 2
                    if micro < 1:
                        raise
                    print(f"{mode}: out of GPU memory; again with micro-batch {micro}")
            first += per_mode
            for side, label in (("trainer", "genbac train_phase"), ("plain", "plain PyTorch")):
                step_s = statistics.median(result[side]["step_s"])
                rate = tokens_per_step / step_s
                rows.append({"side": label, "mode": mode, "tokens_per_s": rate,
                             "ms_per_step": step_s * 1e3,
                             "round_tokens_per_s": [tokens_per_step / s
                                                    for s in result[side]["step_s"]],
                             "warmup_s": result[side]["warmup_s"],
                             "micro_batch": micro or batch,
                             "mfu": rate * flops_per_token / (peak * 1e12) if peak else None})

        ratios = {mode: rows[2 * i]["tokens_per_s"] / rows[2 * i + 1]["tokens_per_s"]
                  for i, mode in enumerate(modes)}
        rate = {r["mode"]: r["tokens_per_s"] for r in rows if r["side"] == "genbac train_phase"}
        ratio_fsdp = rate["fsdp"] / rate["eager"] if {"fsdp", "eager"} <= rate.keys() else None
        report = {"device": name or device.type, "device_type": device.type,
                  "peak_bf16_tflops": peak, "torch": torch.__version__,
                  "transformers": transformers.__version__, "tiny": args.tiny,
                  "parameters": parameters, "flops_per_token": flops_per_token,
                  "batch": batch, "sequence": sequence, "steps": args.steps,
                  "rounds": args.rounds, "warmup": args.warmup, "rows": rows,
                  "ratio_trainer_to_plain": ratios,
                  "ratio_fsdp_to_eager": ratio_fsdp,
                  "wall_s": time.perf_counter() - started}
        args.json.write_text(json.dumps(report, indent=2) + "\n")

        print(f"\n| {'side':<20} | {'mode':<7} | {'tokens/s':>10} | {'ms/step':>8} | "
              f"{'MFU':>6} | {'micro':>5} | {'warmup s':>8} |")
        print(f"|{'-' * 22}|{'-' * 9}|{'-' * 11}:|{'-' * 9}:|{'-' * 7}:|{'-' * 6}:|{'-' * 9}:|")
        for r in rows:
            mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "–"
            print(f"| {r['side']:<20} | {r['mode']:<7} | {r['tokens_per_s']:10,.0f} | "
                  f"{r['ms_per_step']:8.1f} | {mfu:>6} | {r['micro_batch']:5d} | "
                  f"{r['warmup_s']:8.1f} |")
        print("\nratio trainer/plain: " + ", ".join(f"{m} {v:.3f}" for m, v in ratios.items()) +
              (f"; trainer FSDP2/eager {ratio_fsdp:.3f}" if ratio_fsdp is not None else "") +
              f"; {report['wall_s']:.0f} s in all; JSON: {args.json}")


if __name__ == "__main__":
    main()
