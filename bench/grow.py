"""Benchmark: streamed checkpoint growth against `cp -r` of the same files.

    .venv/bin/python bench/grow.py [--gb 2] [--dir /tmp] [--repeats 3]

Writes a synthetic Llama-shaped bf16 checkpoint of about --gb GiB (several shards, config.json
matching the custom architecture `bench` below), warms the page cache, then times in alternation
(a) `cp -r` of the checkpoint and (b) `grow_checkpoint` (LLaMA Pro, +1/6 layers, no verification)
in a child process, taking each one's best wall time and its peak RSS (`/usr/bin/time`, else the
child's `os.wait4` rusage). Targets: grow at
most 1.5x the time of cp, and peak RSS below the largest single tensor + 200 MB (the streaming
guarantee: no tensor is ever loaded). Everything it writes is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIDDEN, HEADS, KV_HEADS, FFN, VOCAB = 2048, 16, 4, 5632, 32000
HEAD_DIM = HIDDEN // HEADS
BYTES_PER_PARAM = 2  # bf16
SHARD_BYTES = 512 * 1024**2  # input shards, like a typical HF upload split
SPEC = """
experiment "bench" {{
  architecture bench {{ hidden = {hidden}  layers = {layers}  heads = {heads}  kv_heads = {kv}
                       ffn = {ffn}  vocab = {vocab}  context = 2048 }}
  base = bench from "base"
  grow blocks {{ add = {add} }}
  tokenizer = "tok"
  language en {{ data = "d" tokens = 10M }}
  train {{ sequence = 2048 batch = 8 optimizer = adamw(lr = 1e-4) checkpoint every 100 steps }}
  hardware = cpu
}}
"""
GROW_CHILD = """
import json, sys
from genbac.runtime.grow import grow_checkpoint
summary = grow_checkpoint(json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3])
print(json.dumps({"tensors": summary["tensors"], "shards": len(summary["shards"]),
                  "bytes": summary["bytes_written"], "seconds": summary["seconds"]}))
"""


def layer_shapes() -> dict[str, tuple[int, ...]]:
    kv = KV_HEADS * HEAD_DIM
    return {
        "input_layernorm.weight": (HIDDEN,), "post_attention_layernorm.weight": (HIDDEN,),
        "self_attn.q_proj.weight": (HIDDEN, HIDDEN), "self_attn.k_proj.weight": (kv, HIDDEN),
        "self_attn.v_proj.weight": (kv, HIDDEN), "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
        "mlp.gate_proj.weight": (FFN, HIDDEN), "mlp.up_proj.weight": (FFN, HIDDEN),
        "mlp.down_proj.weight": (HIDDEN, FFN),
    }


def layer_count_for(gib: float) -> int:
    """Layers (a multiple of 6, so `add = layers / 6` interleaves) for about `gib` GiB."""
    per_layer = sum(math.prod(s) for s in layer_shapes().values()) * BYTES_PER_PARAM
    embeddings = 2 * VOCAB * HIDDEN * BYTES_PER_PARAM
    layers = math.ceil((gib * 1024**3 - embeddings) / per_layer)
    return max(6, 6 * math.ceil(layers / 6))


def all_shapes(layers: int) -> dict[str, tuple[int, ...]]:
    shapes = {"model.embed_tokens.weight": (VOCAB, HIDDEN)}
    for i in range(layers):
        shapes |= {f"model.layers.{i}.{k}": v for k, v in layer_shapes().items()}
    shapes |= {"model.norm.weight": (HIDDEN,), "lm_head.weight": (VOCAB, HIDDEN)}
    return shapes


def write_synthetic_checkpoint(directory: Path, layers: int) -> None:
    """Random bf16 tensors in ~512 MiB shards, one shard in memory at a time."""
    import torch
    from safetensors.torch import save_file

    directory.mkdir()
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in all_shapes(layers).items():
        nbytes = math.prod(shape) * BYTES_PER_PARAM
        if groups[-1] and size + nbytes > SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append((name, shape))
        size += nbytes
    weight_map = {}
    generator = torch.Generator().manual_seed(0)
    for i, group in enumerate(groups):
        filename = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {n: torch.randn(s, generator=generator, dtype=torch.bfloat16) * 0.02
                   for n, s in group}
        save_file(tensors, directory / filename, metadata={"format": "pt"})
        weight_map |= {n: filename for n, _ in group}
        del tensors
    total = sum(math.prod(s) for s in all_shapes(layers).values()) * BYTES_PER_PARAM
    (directory / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (directory / "config.json").write_text(json.dumps(hf_config(layers), indent=2))


def hf_config(layers: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "dtype": "bfloat16",
        "hidden_size": HIDDEN, "num_hidden_layers": layers, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "intermediate_size": FFN, "vocab_size": VOCAB,
        "head_dim": HEAD_DIM, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"},
        "tie_word_embeddings": False, "hidden_act": "silu",
    }


def compile_plan(layers: int, path: Path) -> dict:
    from genbac.compiler.compile import plan_json, plan_spec

    spec = SPEC.format(hidden=HIDDEN, layers=layers, heads=HEADS, kv=KV_HEADS, ffn=FFN,
                       vocab=VOCAB, add=layers // 6)
    plan, _ = plan_spec(spec, "bench.genba")
    path.write_bytes(plan_json(plan))
    return json.loads(path.read_text())


def timed_child(argv: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes) and stdout of one child process.

    Linux carries a forking parent's peak RSS into its child's `ru_maxrss`, so the measurement
    goes through /usr/bin/time (a tiny parent) where it exists; this script's own process stays
    small too (the synthetic checkpoint is written by a child), so `os.wait4` is close otherwise.
    """
    subprocess.run(["sync"], check=True)  # start each run without the previous run's dirty pages
    wrapper = ["/usr/bin/time", "-f", "maxrss_kib=%M"] if os.path.exists("/usr/bin/time") else []
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(wrapper + argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, no other's
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if child.returncode:
        raise SystemExit(f"{argv[0]} failed ({child.returncode}):\n{stderr}")
    if wrapper:
        peak_kib = int(stderr.rstrip().rsplit("maxrss_kib=", 1)[1])
    else:
        peak_kib = usage.ru_maxrss
    return wall, peak_kib * 1024, stdout


def warm_page_cache(directory: Path) -> None:
    for path in directory.iterdir():
        with open(path, "rb") as f:
            while f.read(64 * 1024**2):
                pass


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="size of the base checkpoint, GiB")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where to put the temporary files (needs about 3.5x --gb free)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthesize", nargs=2, metavar=("DIR", "LAYERS"),
                        help=argparse.SUPPRESS)  # internal: write the checkpoint and exit
    args = parser.parse_args()
    if args.synthesize:
        write_synthetic_checkpoint(Path(args.synthesize[0]), int(args.synthesize[1]))
        return

    layers = layer_count_for(args.gb)
    needed = int(args.gb * 1024**3 * 3.5)
    free = shutil.disk_usage(args.dir).free
    if free < needed:
        raise SystemExit(f"{args.dir} has {free / 1024**3:.1f} GiB free, needs about "
                         f"{needed / 1024**3:.1f} GiB; pass --dir")
    work = Path(tempfile.mkdtemp(prefix="genbac-bench-grow-", dir=args.dir))
    try:
        run(work, layers, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, layers: int, repeats: int) -> None:
    base, copied, grown = work / "base", work / "cp", work / "grown"
    started = time.perf_counter()
    # in a child, so that torch and the shard being built never count towards this process's RSS
    subprocess.run([sys.executable, __file__, "--synthesize", str(base), str(layers)], check=True)
    base_bytes = sum(p.stat().st_size for p in base.iterdir())
    plan = compile_plan(layers, work / "plan.json")
    largest = max(math.prod(s) for s in all_shapes(layers).values()) * BYTES_PER_PARAM
    print(f"base: {layers} layers, {mb(base_bytes)} MB in {len(list(base.glob('*.safetensors')))}"
          f" shards, written in {time.perf_counter() - started:.1f} s; grow to "
          f"{plan['growth']['layers']} layers (LLaMA Pro, identity blocks)")
    warm_page_cache(base)

    cp_runs, grow_runs = [], []
    for _ in range(repeats):  # alternate, so neither benefits from running second
        cp_runs.append(timed_child(["cp", "-r", str(base), str(copied)])[:2])
        shutil.rmtree(copied)
        wall, rss, out = timed_child([sys.executable, "-c", GROW_CHILD, str(work / "plan.json"),
                                      str(base), str(grown)])
        grow_runs.append((wall, rss, json.loads(out)))
        shutil.rmtree(grown)

    cp_wall, cp_rss = min(cp_runs)[0], max(r for _, r in cp_runs)
    grow_wall, _, result = min(grow_runs, key=lambda r: r[0])
    grow_rss = max(r for _, r, _ in grow_runs)
    out_bytes = result["bytes"]
    own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"\n{'':<22}{'wall s':>8}{'MB written':>12}{'MB/s':>8}{'peak RSS MB':>13}")
    print(f"{'cp -r':<22}{cp_wall:>8.2f}{mb(base_bytes):>12}{mb(base_bytes / cp_wall):>8}"
          f"{mb(cp_rss):>13}")
    print(f"{'grow_checkpoint':<22}{grow_wall:>8.2f}{mb(out_bytes):>12}"
          f"{mb(out_bytes / grow_wall):>8}{mb(grow_rss):>13}")
    per_byte = (grow_wall / out_bytes) / (cp_wall / base_bytes)
    bound = largest + 200e6
    print(f"\ngrow / cp wall time: {grow_wall / cp_wall:.2f}x "
          f"(per byte written {per_byte:.2f}x; target <= 1.5x) "
          f"{'OK' if grow_wall / cp_wall <= 1.5 else 'OVER'}")
    print(f"grow peak RSS {mb(grow_rss)} MB vs largest tensor {mb(largest)} MB + 200 MB = "
          f"{mb(bound)} MB: {'OK' if grow_rss <= bound else 'OVER'}")
    print(f"(best of {repeats}; grow in-process {result['seconds']:.2f} s of that run's "
          f"{grow_wall:.2f} s wall, the rest Python start-up; {result['tensors']} tensors in "
          f"{result['shards']} shard(s); this script's own peak RSS {mb(own_rss)} MB)")


if __name__ == "__main__":
    main()
