"""The language reference in data: what each block, key and named value means, in a sentence.

Editors read it (`genbac lsp`: completion items and their documentation, hover over a key). Which
blocks, keys and names exist is decided by spec.lower, and this module takes its lists from there;
only the sentences are written here, and tests/lsp/test_reference.py keeps the two in step (every
key lowered is documented, nothing documented is unknown to the lowering).
"""

from __future__ import annotations

from typing import NamedTuple

from .architectures import BUILTIN, DEFAULT_WEIGHTS, parameter_count
from .ir import CSX_KINDS, GPU_KINDS, HARDWARE_KINDS, PARALLELISMS
from .lower import (ARCHITECTURE_KEYS, EXPERIMENT_BLOCKS, EXPERIMENT_KEYS, GROW_INITS, GROW_KEYS,
                    GROW_METHODS, GROW_TRAIN, LANGUAGE_KEYS, OPTIMIZERS, PLACEMENTS, PRECISIONS,
                    SCHEDULE_PIECES, TOKENIZER_ALGORITHMS, TRAIN_KEYS, VOCAB_INITS, VOCAB_KEYS)


class Entry(NamedTuple):
    name: str
    doc: str  # one or two sentences, Markdown
    snippet: str | None = None  # what completion inserts, LSP snippet syntax; None: the name


# Blocks, by where they may be written: "" is the top of a file (a fragment's settings, or the
# experiment), "experiment" its inside.
BLOCK_DOCS = {
    "experiment": ('One experiment per file: `experiment "name" { … }`; the name becomes '
                   "directory names, MLflow experiment names and cluster job labels."),
    "architecture": ("A custom Llama-family architecture, for `base = NAME` (tiny rehearsal "
                     "models): `hidden`, `layers`, `heads`, `kv_heads`, `ffn`, `vocab`."),
    "grow": ("How the base grows before training: `grow blocks { add = 8 }` (LLaMA-Pro block "
             "expansion) or `grow depth { drop = 8 }` (SOLAR depth up-scaling)."),
    "vocab": ("A vocabulary extension: `vocab { add = 27447 }`; new rows start at the mean "
              "embedding."),
    "language": ('One language of the mixture: `language CODE "Name" { data = … tokens = … }`, '
                 "with when it enters and leaves training."),
    "phase": ("An explicit mixture for the phase that starts there: `phase 90% { en = 49.75%  "
              "de = 49.75%  bar = 0.5% }` (overrides the solver; weights sum to 100%)."),
    "train": ("The training run: total tokens, sequence length, batch, optimizer, LR schedule, "
              "precision, checkpoints and evaluation."),
}

BLOCK_SNIPPETS = {
    "experiment": 'experiment "${1:name}" {\n\t$0\n}',
    "architecture": "architecture ${1:tiny} {\n\thidden = ${2:64}\n\tlayers = ${3:2}\n\theads = "
                    "${4:4}\n\tkv_heads = ${5:2}\n\tffn = ${6:128}\n\tvocab = ${7:1024}\n}",
    "grow": "grow blocks { add = ${1:8} }",
    "vocab": "vocab { add = ${1:1000} }",
    "language": 'language ${1:en} "${2:English}" {\n\tdata = "${3:data/en/*.jsonl}"\n\t'
                "tokens = ${4:10B}\n}",
    "phase": "phase ${1:50%} { $0 }",
    "train": "train {\n\tsequence = ${1:4096}\n\tbatch = ${2:256}\n\toptimizer = adamw(lr = "
             "${3:3e-4})\n\tschedule = warmup(1%) then cosine(to = 10%)\n\tcheckpoint every "
             "${4:1000} steps\n}",
}

KEY_DOCS: dict[str, dict[str, str]] = {
    "experiment": {
        "base": ("The model to start from: `llama3.1-8b`, … or an `architecture` declared in the "
                 'file, optionally `from "hf:org/name"` or a local directory (no weights: random '
                 "initialisation)."),
        "tokenizer": ('The tokenizer for preprocessing: a directory or `"hf:org/name"` (default: '
                      "the base weights'), or `bpe(vocab = N)` to train one on the spec's data."),
        "hardware": ("What trains it: `cs-2 x 1`, `cs-3 x 2`, `h100 x 8`, `a100 x 4`, `cpu x 2`, "
                     "or GPUs per node x nodes, `h100 x 8 x 4`; `genbac run` trains GPUs and CPUs "
                     "with that many processes."),
    },
    "language": {
        "data": 'Training text: a path or glob, or a list of them (`"data/en/*.jsonl"`).',
        "tokens": ("The language's budget in tokens (`82B`, `80M`); `~82B` may absorb the "
                   "difference to `train { tokens }`."),
        "corpus": ("Unique tokens available; the epochs the budget needs are reported, more than "
                   "4 warned about."),
        "enter": ("When the language enters training: `%` of training (`90%`) or after a number "
                  "of tokens (`150B`, `5000 tokens`). A bare number is an error."),
        "exit": ("When the language leaves training: `%` of training (`95%`) or after a number "
                 "of tokens."),
        "eval": "Held-out text for validation loss: a path or a list of paths.",
    },
    "train": {
        "tokens": "The declared total in tokens (default: the sum of the language budgets).",
        "sequence": "Tokens per sequence (`8192`; `8K` is 8,000, warned about).",
        "batch": "Sequences per step (global batch).",
        "optimizer": ("`adamw(lr = …, betas = (…), weight_decay = …, clip = …)`, `adam(…)` "
                      "or `sgd(…)`."),
        "schedule": ("The LR curve: pieces joined by `then`, e.g. `warmup(1%) then cosine(to = "
                     "10%)`; lengths in `%` or `steps`, the last piece runs to the end."),
        "precision": "`bf16` (default), `fp16` or `fp32`.",
        "checkpoint": "`checkpoint every N steps`.",
        "keep_checkpoints": "How many checkpoints the local trainer keeps (default 3).",
        "eval": "`eval every N steps`: validation loss per language.",
        "eval_steps": "Batches per validation (default 50).",
        "seed": "The seed of initialisation and data order (default 1).",
        "micro_batch": "Sequences per forward pass (gradient accumulation up to `batch`).",
        "parallelism": ("How GPUs hold the model: `ddp` (a whole copy each), `fsdp` (sharded over "
                        "all) or `hsdp` (sharded in a node, replicated across nodes); default: "
                        "the planner's choice, shown by `genbac explain`. On `cpu x N`: a rehearsal "
                        "of the GPU path with gloo (default `ddp`)."),
    },
    "architecture": {
        "hidden": "The model width.",
        "layers": "Decoder layers.",
        "heads": "Attention heads.",
        "kv_heads": "Key/value heads (grouped-query attention).",
        "ffn": "The MLP's inner width.",
        "vocab": "Vocabulary size.",
        "head_dim": "Width of one head (default hidden / heads).",
        "context": "The longest sequence the model is built for.",
        "tie_embeddings": "`true` to share the input and output embeddings.",
        "rope_theta": "RoPE's base frequency.",
        "norm_eps": "RMSNorm's epsilon.",
    },
    "grow blocks": {
        "add": "How many decoder blocks to add (LLaMA Pro: 8 for 32 -> 40 layers).",
        "place": ("Where they go: `interleave` (default; after every L/add-th layer), `top` or "
                  "`bottom`."),
        "after": "Base layer indices to add a block after, e.g. `[3, 7, 11]` (instead of `place`).",
        "init": ("`identity` (default: o_proj and down_proj zeroed, the grown model computes the "
                 "same function) or `copy`."),
        "train": "`all` (default) or `new` (the base blocks frozen).",
    },
    "grow depth": {
        "drop": "Layers dropped from each of the two copies of the base (SOLAR: 8).",
        "train": "`all`: depth up-scaling trains everything.",
    },
    "vocab": {
        "add": "New vocabulary entries.",
        "init": "`mean`: new rows start at the mean embedding.",
    },
}

# The keys of each block, from the lowering (the sentences above must cover exactly these).
BLOCK_KEYS: dict[str, set[str]] = {
    "experiment": set(EXPERIMENT_KEYS),
    "language": set(LANGUAGE_KEYS),
    "train": set(TRAIN_KEYS),
    "architecture": set(ARCHITECTURE_KEYS),
    "grow blocks": set(GROW_KEYS["blocks"]),
    "grow depth": set(GROW_KEYS["depth"]),
    "vocab": set(VOCAB_KEYS),
}
SUB_BLOCKS = {"experiment": set(EXPERIMENT_BLOCKS)}


def _architecture_doc(name: str) -> str:
    a = BUILTIN[name]
    return (f"{parameter_count(a) / 1e9:.2f}B parameters: {a.layers} layers, hidden {a.hidden}, "
            f"{a.heads} heads ({a.kv_heads} KV), FFN {a.ffn}, vocabulary {a.vocab:,}; weights "
            f"`{DEFAULT_WEIGHTS[name].removeprefix('hf:')}`.")


def _hardware_doc(kind: str) -> str:
    if kind in CSX_KINDS:
        return f"Cerebras {kind.upper()}: compiled to Model Zoo configs and run with cszoo."
    if kind in GPU_KINDS:
        return f"NVIDIA {kind.upper()}: `genbac run` trains with one process per GPU."
    return "CPU: `genbac run` trains with gloo, one process per `x N`."


_OPTIMIZER_SNIPPETS = {
    "adamw": "adamw(lr = ${1:3e-4}, betas = (0.9, 0.95), weight_decay = ${2:0.1}, clip = 1.0)",
    "adam": "adam(lr = ${1:3e-4})",
    "sgd": "sgd(lr = ${1:0.1}, momentum = ${2:0.9})",
}
_PIECE_DOCS = {
    "warmup": ("warmup(${1:1%})", "Linear warmup from 0 to the peak LR, for a share of training "
               "or a number of steps."),
    "constant": ("constant(${1:10%})", "The LR held where the previous piece left it."),
    "linear": ("linear(to = ${1:10%})", "A straight line to `to` (a share of the peak LR)."),
    "cosine": ("cosine(to = ${1:10%})", "A cosine decay to `to` (a share of the peak LR)."),
}
_CHOICE_DOCS = {
    "interleave": "After every L/add-th base layer (LLaMA Pro).",
    "top": "All new blocks after the last base layer.",
    "bottom": "All new blocks before the first base layer.",
    "identity": "o_proj and down_proj zeroed: the grown model computes the base's function.",
    "copy": "A plain copy of the layer below.",
    "all": "Every parameter trains.",
    "new": "Only the added blocks train; the base is frozen.",
    "mean": "New embedding rows start at the mean of the existing ones.",
    "bf16": "bfloat16 mixed precision (fp32 master weights).",
    "fp16": "float16 mixed precision with loss scaling (CS-X systems only).",
    "fp32": "Full precision.",
    "ddp": "Every GPU holds the whole model and its optimizer state (fastest, where it fits).",
    "fsdp": "Weights, gradients and optimizer state sharded over all GPUs (FSDP2 fully_shard).",
    "hsdp": "Sharded within each node, replicated across nodes (FSDP2 with a 2-D device mesh).",
    "bpe": "Train a byte-level BPE tokenizer on the spec's data: `bpe(vocab = 1024)`.",
}


def values(context: str, key: str) -> list[Entry]:
    """The named values `key` takes in `context` (a BLOCK_KEYS name), for completion."""
    if context == "experiment" and key == "base":
        return [Entry(n, _architecture_doc(n)) for n in BUILTIN]
    if context == "experiment" and key == "hardware":
        return [Entry(k, _hardware_doc(k), f"{k} x ${{1:1}}") for k in HARDWARE_KINDS]
    if context == "experiment" and key == "tokenizer":
        return [Entry(a, _CHOICE_DOCS[a], f"{a}(vocab = ${{1:1024}})")
                for a in TOKENIZER_ALGORITHMS]
    if context == "train" and key == "optimizer":
        return [Entry(k, "Arguments: " + ", ".join(f"`{a}`" for a in sorted(args)) + ".",
                      _OPTIMIZER_SNIPPETS[k]) for k, args in OPTIMIZERS.items()]
    if context == "train" and key == "schedule":
        return [Entry(p, _PIECE_DOCS[p][1], _PIECE_DOCS[p][0]) for p in SCHEDULE_PIECES]
    choices = {("train", "precision"): PRECISIONS, ("train", "parallelism"): PARALLELISMS, ("grow blocks", "place"): PLACEMENTS,
               ("grow blocks", "init"): GROW_INITS, ("grow blocks", "train"): GROW_TRAIN["blocks"],
               ("grow depth", "train"): GROW_TRAIN["depth"], ("vocab", "init"): VOCAB_INITS,
               }.get((context, key), ())
    return [Entry(c, _CHOICE_DOCS[c]) for c in choices]


def arguments(call: str) -> list[str]:
    """The named arguments a call takes."""
    named = {**{k: sorted(v) for k, v in OPTIMIZERS.items()}, "linear": ["to"], "cosine": ["to"],
             **{a: ["vocab"] for a in TOKENIZER_ALGORITHMS}}
    return named.get(call, [])


def grow_labels() -> list[Entry]:
    return [Entry(m, BLOCK_DOCS["grow"]) for m in GROW_METHODS]
