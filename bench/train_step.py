"""Benchmark: genbac's trainer (`runtime.train.train_phase`) against a plain PyTorch loop, same run.

    .venv/bin/python bench/train_step.py [--steps 4] [--warmup 2] [--rounds 8] [--threads T]
                                         [--profile]

Setup (everything in a temporary directory, removed at the end): a byte-level BPE (vocab 1024)
trained on examples/data/*/train.jsonl, the three example languages packed by `prepare_language`
for sequence 256, and the spec below compiled by `plan_spec`: the tiny-rehearsal architecture
scaled to hidden 256, 4 layers, ffn 1024 (4.5M parameters), sequence 256, batch 8, AdamW with
clipping, fp32. One seeded random model is copied into two identical models, one per side:

(a) trainer: `train_phase` on the plan's phase 1 with the real `Mixer`, a metric logger that only
    keeps `step_time_s`, no evaluation data, and `PhaseRun.stop_after` ending every round before
    any checkpoint (the plan's interval is far beyond the steps run);
(b) plain: the nanoGPT loop on the same batches (the Mixer's rows for the same steps, made before
    the timing): `logits = model(x).logits; F.cross_entropy(...).backward(); clip; step; zero_grad`,
    with a torch.optim.AdamW of the same hyperparameters;
(c) with --fsdp: `train_phase` again on a third copy of the model under FSDP2 in one process (a
    gloo group of one; `runtime.sharding.shard`: fully_shard per layer and at the root, DTensor
    parameters, the optimizer from `make_optimizer`): the cost of the sharded path where it
    shards nothing, against (a). Target: (c)/(a) >= 0.9.

Same process, same torch thread count. After --warmup untimed steps of each side, rounds alternate
a, b, a, b...; each round times --steps optimizer steps of one side (wall clock). Reported: median
tokens/s (batch × sequence input tokens per step) of each side with the min–max and the best
round, the ratio of medians trainer/plain (target >= 0.95), the ratio of the best rounds and the
per-round paired ratios. On a small machine any other busy process slows torch's threads
several-fold, so compare the paired ratios and the best rounds when the load average (warned
about) is high, or leave a core to the other process with --threads.
"Outside step_time_s" is the trainer's wall time per step minus the time its own `step_time_s`
covers (batch drawing through the optimizer step): the per-step bookkeeping and logging cost.
--profile then runs the trainer under cProfile for --steps steps and prints where the time went.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import json
import os
import platform
import pstats
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

SPEC = """
experiment "bench-train-step" {
  architecture tiny {
    hidden   = 256
    layers   = 4
    heads    = 4
    kv_heads = 2
    ffn      = 1024
    vocab    = 1024
    context  = 512
    rope_theta = 10000
  }
  base = tiny
  tokenizer = bpe(vocab = 1024)

  language en  "English"  { data = "data/en/train.jsonl"   tokens = ~900K }
  language de  "German"   { data = "data/de/train.jsonl"   tokens = ~900K }
  language bar "Bavarian" { data = "data/bar/train.jsonl"  tokens = 200K }

  train {
    tokens    = 2M
    sequence  = 256
    batch     = 8
    optimizer = adamw(lr = 3e-3, weight_decay = 0.1, clip = 1.0)
    schedule  = warmup(10%) then cosine(to = 10%)
    precision = fp32
    checkpoint every 900 steps
    eval every 900 steps
    seed = 1234
  }

  hardware = cpu
}
"""


def setup(scratch: Path):
    """The plan, a Mixer over real packed data, and two identical (model, optimizer) pairs."""
    import torch

    from genbac.compiler.compile import plan_spec
    from genbac.runtime.data import Mixer, prepare_language
    from genbac.runtime.tokenizer import train_bpe_tokenizer
    from genbac.runtime.train import apply_freezing, hf_config, make_optimizer

    plan, _ = plan_spec(SPEC, str(EXAMPLES / "bench-train-step.genba"))
    tokenizer_dir = train_bpe_tokenizer(sorted(EXAMPLES.glob("data/*/train.jsonl")),
                                        plan.growth.vocab, scratch / "tokenizer")
    data = {lang.code: prepare_language(lang.code, list(lang.sources), EXAMPLES, tokenizer_dir,
                                        plan.schedule.sequence, scratch / "data",
                                        model_vocab=plan.growth.vocab, log=lambda *_: None)
            for lang in plan.spec.languages}
    mixer = Mixer(json.loads(plan.model_dump_json()), data, plan.spec.train.seed)

    from transformers import LlamaForCausalLM

    torch.manual_seed(plan.spec.train.seed)
    model = LlamaForCausalLM(hf_config(plan))
    model.train()
    plain = copy.deepcopy(model)
    apply_freezing(plan, model)
    optimizer = make_optimizer(plan, model)
    opt = plan.spec.train.optimizer
    assert opt.kind == "adamw"
    plain_optimizer = torch.optim.AdamW(plain.parameters(), lr=opt.lr, betas=tuple(opt.betas),
                                        eps=opt.eps, weight_decay=opt.weight_decay)
    return plan, mixer, (model, optimizer), (plain, plain_optimizer)


def sharded_copy(plan, model):
    """A copy of `model` under FSDP2 in a gloo process group of one, and its optimizer."""
    import torch
    import torch.distributed as dist

    from genbac.runtime.sharding import Sharding, shard
    from genbac.runtime.train import make_optimizer

    if not dist.is_initialized():
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    copy_ = copy.deepcopy(model)
    shard(copy_, plan, torch.device("cpu"), Sharding("fsdp", 1))
    return copy_, make_optimizer(plan, copy_)


class TrainerSide:
    """`train_phase` from a given step for n steps; the logger keeps only step_time_s."""

    def __init__(self, plan, mixer, model, optimizer, checkpoint_dir: Path,
                 strategy: str = "single"):
        import torch

        from genbac.runtime.train import PhaseRun

        self.step_times: list[float] = []
        self.run = PhaseRun(plan=plan, phase=plan.schedule.phases[0], model=model,
                            optimizer=optimizer, mixer=mixer, eval_data={},
                            checkpoint_dir=checkpoint_dir, device=torch.device("cpu"),
                            log_metrics=lambda step, m: self.step_times.append(m["step_time_s"]),
                            strategy=strategy)

    def __call__(self, start: int, n: int) -> None:
        from genbac.runtime.train import TrainState, train_phase

        self.run.stop_after = start + n
        state = train_phase(self.run, TrainState(step=start))
        assert state.step == start + n


class PlainSide:
    """The nanoGPT loop on pre-made batches (the Mixer's rows of the same steps)."""

    def __init__(self, model, optimizer, clip: float, batches: dict):
        self.model, self.optimizer, self.clip, self.batches = model, optimizer, clip, batches

    def __call__(self, start: int, n: int) -> None:
        import torch
        import torch.nn.functional as F

        model, optimizer = self.model, self.optimizer
        for step in range(start, start + n):
            x = self.batches[step]
            inputs, labels = x[:, :-1], x[:, 1:]
            logits = model(input_ids=inputs).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)


def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def spread(values: list[float]) -> str:
    return f"{min(values):,.0f}–{max(values):,.0f}"


def profile_trainer(trainer: TrainerSide, start: int, n: int) -> None:
    """cProfile: what train_phase and sequence_losses call directly, in ms per step."""
    profiler = cProfile.Profile()
    profiler.enable()
    wall = timed(trainer, start, n)
    profiler.disable()
    stats = pstats.Stats(profiler).stats

    def label(key) -> str:
        file, line, name = key
        return name if file == "~" else f"{Path(file).name}:{line}({name})"

    print(f"\ncProfile of the trainer, {n} steps, {wall / n * 1e3:.1f} ms/step wall with the "
          "profiler on; direct callees, cumulative ms per step:")
    for caller in ("train_phase", "sequence_losses"):
        (key,) = [k for k in stats if k[0].endswith("train.py") and k[2] == caller]
        rows = sorted(((callers[key][3], callers[key][1], callee)
                       for callee, (*_, callers) in stats.items() if key in callers),
                      reverse=True)
        own = stats[key][2]
        print(f"  {caller} (own Python time {own / n * 1e3:.2f} ms):")
        for cumtime, calls, callee in rows[:16]:
            print(f"    {cumtime / n * 1e3:9.2f} ms  {calls / n:6.1f} calls  {label(callee)}")


def isolated_pieces(plan, mixer, steps: int, repeats: int = 20) -> None:
    """The trainer-only work per step, timed alone (no model): data and the loss reduction."""
    import torch
    import torch.nn.functional as F

    started = time.perf_counter()
    for step in range(steps):
        rows, _ = mixer.batch(step)
        torch.as_tensor(rows, dtype=torch.long)
    batch_ms = (time.perf_counter() - started) / steps * 1e3

    b, s, v = plan.schedule.batch, plan.schedule.sequence, plan.growth.vocab
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(b, s, v, generator=generator).requires_grad_()
    labels = torch.randint(v, (b, s), generator=generator)

    def trainer_loss():  # sequence_losses' reduction and train_phase's scaling
        losses = F.cross_entropy(logits.float().reshape(-1, v), labels.reshape(-1),
                                 reduction="none").view(labels.shape).mean(dim=1)
        (losses.sum() * s / (b * s)).backward()
        logits.grad = None

    def plain_loss():
        F.cross_entropy(logits.reshape(-1, v), labels.reshape(-1)).backward()
        logits.grad = None

    times = {trainer_loss: [], plain_loss: []}
    for _ in range(repeats):
        for function in times:
            times[function].append(timed(function))
    trainer_ms = statistics.median(times[trainer_loss]) * 1e3
    plain_ms = statistics.median(times[plain_loss]) * 1e3
    print(f"\nisolated (no model): Mixer.batch + as_tensor {batch_ms:.2f} ms/step; loss head "
          f"forward+backward on [{b}, {s}, {v}] logits: trainer reduction {trainer_ms:.2f} ms, "
          f"plain mean {plain_ms:.2f} ms (medians of {repeats})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round and side")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side first")
    parser.add_argument("--rounds", type=int, default=8, help="timed rounds per side")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for both sides (default: torch's own choice)")
    parser.add_argument("--profile", action="store_true", help="then cProfile the trainer")
    parser.add_argument("--fsdp", action="store_true",
                        help="also time the trainer under FSDP2 in one process (side c)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="genbac-bench-") as scratch:
        scratch = Path(scratch)
        os.environ.update(HF_HOME=str(scratch / "hf-home"), HF_HUB_OFFLINE="1",
                          HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
        import torch
        import transformers

        if args.threads:
            torch.set_num_threads(args.threads)
        plan, mixer, (model, optimizer), (plain, plain_optimizer) = setup(scratch)
        phase = plan.schedule.phases[0]
        total = args.warmup + args.rounds * args.steps + (args.steps if args.profile else 0)
        # no checkpoint, evaluation or phase end may fall inside the steps run
        assert total < min(plan.checkpoint_every, plan.eval_every, phase.end_step), total
        batches = {step: torch.as_tensor(mixer.batch(step)[0], dtype=torch.long)
                   for step in range(total)}
        trainer = TrainerSide(plan, mixer, model, optimizer, scratch / "checkpoints")
        baseline = PlainSide(plain, plain_optimizer, plan.spec.train.optimizer.clip, batches)
        sides = {"trainer": trainer, "plain": baseline}
        if args.fsdp:
            sharded, sharded_optimizer = sharded_copy(plan, plain)
            sides["fsdp"] = TrainerSide(plan, mixer, sharded, sharded_optimizer,
                                        scratch / "fsdp-checkpoints", strategy="fsdp")
        tokens_per_step = plan.schedule.batch * plan.schedule.sequence
        parameters = sum(p.numel() for p in model.parameters())
        arch = plan.architecture
        print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
              f"Python {platform.python_version()}; {torch.get_num_threads()} torch threads, "
              f"{os.cpu_count()} CPUs")
        print(f"model: Llama hidden {arch.hidden}, {plan.growth.layers} layers, heads "
              f"{arch.heads}/{arch.kv_heads}, ffn {arch.ffn}, vocab {plan.growth.vocab}: "
              f"{parameters / 1e6:.2f}M parameters; batch {plan.schedule.batch} × sequence "
              f"{plan.schedule.sequence} = {tokens_per_step} tokens/step; AdamW, clip "
              f"{plan.spec.train.optimizer.clip}, fp32; {args.warmup} warmup + {args.rounds} × "
              f"{args.steps} timed steps per side, alternating")

        step = 0
        for side in sides.values():
            side(step, args.warmup)
        step += args.warmup
        del trainer.step_times[:]
        rates = {name: [] for name in sides}
        outside = []
        for _ in range(args.rounds):
            # every side trains on the same steps' batches in a round
            for name, side in sides.items():
                seconds = timed(side, step, args.steps)
                rates[name].append(args.steps * tokens_per_step / seconds)
                if name == "trainer":
                    outside.append((seconds - sum(trainer.step_times)) / args.steps)
                    del trainer.step_times[:]
            step += args.steps

        medians = {side: statistics.median(values) for side, values in rates.items()}
        print(f"\n| {'side':<24} | {'median tokens/s':>15} | {'min–max over rounds':>19} | "
              f"{'best':>6} | {'ms/step (median)':>16} |")
        print(f"|{'-' * 26}|{'-' * 16}:|{'-' * 20}:|{'-' * 7}:|{'-' * 17}:|")
        names = {"trainer": "(a) genbac train_phase", "plain": "(b) plain PyTorch loop",
                 "fsdp": "(c) train_phase, FSDP2"}
        for side, values in rates.items():
            print(f"| {names[side]:<24} | {medians[side]:15,.0f} | {spread(values):>19} | "
                  f"{max(values):6,.0f} | {tokens_per_step / medians[side] * 1e3:16.1f} |")
        paired = [a / b for a, b in zip(rates["trainer"], rates["plain"])]
        ratio = medians["trainer"] / medians["plain"]
        best = max(rates["trainer"]) / max(rates["plain"])
        print(f"\nratio trainer/plain: medians {ratio:.3f} (target >= 0.95, "
              f"{'met' if ratio >= 0.95 else 'NOT met'}), best rounds {best:.3f}; per-round "
              f"paired ratios: median {statistics.median(paired):.3f}, "
              f"{min(paired):.3f}–{max(paired):.3f}")
        if args.fsdp:
            paired = [c / a for c, a in zip(rates["fsdp"], rates["trainer"])]
            ratio = medians["fsdp"] / medians["trainer"]
            print(f"ratio FSDP2 (1 process)/trainer: medians {ratio:.3f} (target >= 0.9, "
                  f"{'met' if ratio >= 0.9 else 'NOT met'}), best rounds "
                  f"{max(rates['fsdp']) / max(rates['trainer']):.3f}; per-round paired ratios: "
                  f"median {statistics.median(paired):.3f}, {min(paired):.3f}–{max(paired):.3f}")
        load = os.getloadavg()[0]
        if load > torch.get_num_threads() + 0.5:
            print(f"warning: load average {load:.1f} with {torch.get_num_threads()} torch threads "
                  f"on {os.cpu_count()} CPUs: other processes compete, rounds are noisy")
        print(f"trainer wall time per step outside its step_time_s (bookkeeping, logging): "
              f"median {statistics.median(outside) * 1e3:.2f} ms")

        if args.profile:
            profile_trainer(trainer, step, args.steps)
            isolated_pieces(plan, mixer, total)


if __name__ == "__main__":
    main()
