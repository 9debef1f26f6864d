"""Grow a Hugging Face Llama checkpoint as the plan says: LLaMA Pro blocks, depth up-scaling, vocabulary.

`grow_checkpoint(plan, base_dir, out_dir)` writes the grown model: output layer i takes every
`model.layers.{source}.*` tensor of the base layer the plan's layer map names; for identity blocks
(LLaMA Pro) `self_attn.o_proj` and `mlp.down_proj` are zeros, so the block adds nothing to the
residual stream and the grown model computes what the base did. Non-layer tensors are copied; with a
vocabulary extension the new rows of `embed_tokens` (and an untied `lm_head`) are the mean of the
old rows. The output is always sharded safetensors with `model.safetensors.index.json` (the Cerebras
converter accepts nothing else), plus config.json and the base's tokenizer/generation files.

Memory guarantee: the model is never loaded. Like mergekit, surgery is planned first — every input
header is read and every output file's header is decided up front — and then executed like `cp`:
each output tensor is a list of byte ranges of input files (or zeros), moved with
`copy_file_range` or through one 16 MiB buffer. Peak memory is the headers plus that buffer,
independent of model and tensor size; the vocabulary mean reads its tensor in 16 MiB row chunks.

Writes are atomic: everything goes to a temporary directory beside `out_dir`, which is renamed into
place only when complete; a failure leaves an existing `out_dir` as it was.

`verify_function_preservation` then loads base and grown model (one at a time) in transformers and
compares logits on seeded random tokens. `run_grow` is the `genbac grow` command: grow, verify,
write `growth_report.json`.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from genbac import atomic
from genbac.errors import UserError
from genbac.units import size_text

from .safetensors_stream import (
    INDEX_NAME,
    ByteStreamer,
    CheckpointFormatError,
    CopyBytes,
    OutputTensor,
    Repeat,
    StoredTensor,
    Zeros,
    index_checkpoint,
    index_json,
    mean_row,
    plan_shards,
)

DEFAULT_SHARD_BYTES = 2 * 1024**3
REPORT_NAME = "growth_report.json"
PRESERVATION_TOLERANCE = 1e-5

LAYER_NAME = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
# What every Llama decoder layer must have; anything else a layer holds (biases) is carried along.
REQUIRED_LAYER_TENSORS = (
    "input_layernorm.weight", "post_attention_layernorm.weight",
    "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
)
# The two projections that write into the residual stream: zero them and the block is an identity.
ZEROED_FOR_IDENTITY = ("self_attn.o_proj.", "mlp.down_proj.")
EMBEDDING = "model.embed_tokens.weight"
HEAD = "lm_head.weight"
FINAL_NORM = "model.norm.weight"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
                   "chat_template.jinja")
GENERATION_FILES = ("generation_config.json",)
# config.json keys that fix tensor shapes, and where the plan keeps the same number.
SHAPE_KEYS = (
    ("num_hidden_layers", ("growth", "base_layers"), "layers"),
    ("hidden_size", ("architecture", "hidden"), "hidden"),
    ("vocab_size", ("growth", "base_vocab"), "vocab"),
    ("num_attention_heads", ("architecture", "heads"), "heads"),
    ("num_key_value_heads", ("architecture", "kv_heads"), "kv_heads"),
    ("intermediate_size", ("architecture", "ffn"), "ffn"),
)


class GrowError(UserError):
    """A problem with the plan, the base checkpoint or the output directory, worded for the user."""


# ---------------------------------------------------------------------------------------------
# grow_checkpoint


def grow_checkpoint(plan: dict, base_dir: Path, out_dir: Path, *,
                    shard_bytes: int = DEFAULT_SHARD_BYTES) -> dict:
    """Write the grown checkpoint for `plan` (a parsed plan.json) into `out_dir`; returns a summary.

    Streams: peak memory is one 16 MiB buffer plus headers, never a tensor (module docstring).
    """
    started = time.perf_counter()
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    growth = _growth_section(plan)
    config = read_base_config(base_dir)
    check_config_matches_plan(config, plan, base_dir)
    tied = bool(config.get("tie_word_embeddings", False))
    stored = _index(base_dir)
    tensors = plan_output_tensors(stored, growth, tied=tied)
    shards = plan_shards(tensors, shard_bytes)
    _refuse_to_replace_the_base(base_dir, out_dir)

    with staging_directory(out_dir) as staging:
        _check_free_space(staging, sum(s.data_bytes for s in shards))
        bytes_written = _write_shards(shards, staging)
        _write_json(staging / INDEX_NAME, index_json(shards))
        _write_json(staging / "config.json", grown_config(config, growth))
        copied = copy_side_files(base_dir, staging, vocab_extended=growth["vocab"] >
                                 growth["base_vocab"])
        summary = _summary(growth, tensors, shards, bytes_written, copied,
                           seconds=time.perf_counter() - started)
        # the output describes itself even when grown without `run_grow` (verify reads it)
        _write_json(staging / REPORT_NAME, {"growth": summary})
    return summary


def _growth_section(plan: dict) -> dict:
    required = [("architecture", "hidden")] + [
        ("growth", key) for key in ("method", "base_layers", "layers", "layer_map", "base_vocab",
                                    "vocab")]
    for section, key in required:
        if not isinstance(plan.get(section), dict) or key not in plan[section]:
            raise GrowError(f"not a genbac plan: plan.json has no {section}.{key} (recompile the "
                            "spec with `genbac compile`)")
    growth = plan["growth"]
    if len(growth["layer_map"]) != growth["layers"]:
        raise GrowError(f"plan.json is inconsistent: {len(growth['layer_map'])} layer-map entries "
                        f"for {growth['layers']} layers")
    return growth


def read_base_config(base_dir: Path) -> dict:
    if not base_dir.is_dir():
        raise GrowError(f"base checkpoint directory {base_dir} does not exist")
    path = base_dir / "config.json"
    if not path.is_file():
        raise GrowError(f"{base_dir} is not a Hugging Face checkpoint: it has no config.json")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise GrowError(f"cannot read {path}: {e}") from e
    if not isinstance(config, dict):
        raise GrowError(f"{path} is not a JSON object")
    return config


def check_config_matches_plan(config: dict, plan: dict, base_dir: Path) -> None:
    """The base must be the architecture the plan was compiled for; every mismatch is listed."""
    problems = []
    for key, (section, field), spec_name in SHAPE_KEYS:
        expected = plan[section].get(field)
        actual = config.get(key)
        if key == "num_key_value_heads" and actual is None:
            actual = config.get("num_attention_heads")  # HF's default: no grouped-query attention
        if expected is not None and actual != expected:
            problems.append(f"{key} = {actual}, the plan expects {expected} (`{spec_name}`)")
    planned_tie = plan["architecture"].get("tie_embeddings")
    actual_tie = bool(config.get("tie_word_embeddings", False))
    if planned_tie is not None and actual_tie != planned_tie:
        problems.append(f"tie_word_embeddings = {str(actual_tie).lower()}, the plan expects "
                        f"{str(planned_tie).lower()} (`tie_embeddings`)")
    if problems:
        name = plan["architecture"].get("name", "?")
        raise GrowError(
            f"{base_dir}/config.json does not match the plan's architecture `{name}`: "
            + "; ".join(problems)
            + ". Pass the base checkpoint the spec was compiled for, or fix the spec's architecture.")


def _index(base_dir: Path) -> dict[str, StoredTensor]:
    try:
        return index_checkpoint(base_dir)
    except CheckpointFormatError as e:
        raise GrowError(str(e)) from None


def plan_output_tensors(stored: dict[str, StoredTensor], growth: dict, *,
                        tied: bool) -> list[OutputTensor]:
    """Every output tensor as byte pieces, in a stable order: embedding, layers, the rest."""
    layers, others = _split_layers(stored, growth["base_layers"])
    _require_tensors(layers, others, growth, tied=tied)
    extension = growth["vocab"] - growth["base_vocab"]
    if extension < 0:
        raise GrowError(f"plan.json shrinks the vocabulary ({growth['base_vocab']} -> "
                        f"{growth['vocab']}); genbac only extends it")

    out = [_copied(others[EMBEDDING], EMBEDDING, extension, growth["base_vocab"])]
    for entry in growth["layer_map"]:
        source = layers[entry["source"]]
        for suffix in sorted(source):
            name = f"model.layers.{entry['index']}.{suffix}"
            if entry["init"] == "identity" and suffix.startswith(ZEROED_FOR_IDENTITY):
                out.append(_zeroed(source[suffix], name))
            else:
                out.append(_copied(source[suffix], name, 0, growth["base_vocab"]))
    if tied and HEAD not in others:
        # A tied checkpoint has no lm_head.weight; the grown one gets the embedding's bytes under
        # that name too. Model Zoo 2.10's llama converter only renames an lm_head that exists, and
        # its model, which ties by sharing the parameter, still lists lm_head.weight in its
        # state_dict: the strict load of phase 1 fails without it ("Missing key(s) in state_dict:
        # lm_head.weight"). transformers ties it back to the embedding on load.
        others = {**others, HEAD: others[EMBEDDING]}
    for name in sorted(others):
        if name != EMBEDDING:
            rows = extension if name == HEAD else 0
            out.append(_copied(others[name], name, rows, growth["base_vocab"]))
    return out


def _split_layers(stored: dict[str, StoredTensor], base_layers: int
                  ) -> tuple[dict[int, dict[str, StoredTensor]], dict[str, StoredTensor]]:
    layers: dict[int, dict[str, StoredTensor]] = {i: {} for i in range(base_layers)}
    others = {}
    for name, tensor in stored.items():
        match = LAYER_NAME.match(name)
        if not match:
            others[name] = tensor
            continue
        index = int(match.group(1))
        if index >= base_layers:
            raise GrowError(f"the base checkpoint has tensor {name}, but config.json says "
                            f"{base_layers} layers (0-{base_layers - 1})")
        layers[index][match.group(2)] = tensor
    return layers, others


def _require_tensors(layers: dict[int, dict[str, StoredTensor]], others: dict[str, StoredTensor],
                     growth: dict, *, tied: bool) -> None:
    needed = [EMBEDDING, FINAL_NORM] + ([] if tied else [HEAD])
    missing = [n for n in needed if n not in others]
    for source in sorted({e["source"] for e in growth["layer_map"]}):
        if source not in layers:
            raise GrowError(f"plan.json copies base layer {source}, but the base has "
                            f"{len(layers)} layers")
        missing += [f"model.layers.{source}.{s}" for s in REQUIRED_LAYER_TENSORS
                    if s not in layers[source]]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise GrowError(f"the base checkpoint has no tensor {missing[0]}{more}, which the grown "
                        "model needs; is it a complete Llama checkpoint?")


def _copied(tensor: StoredTensor, name: str, extra_rows: int, base_vocab: int) -> OutputTensor:
    pieces: tuple = (CopyBytes(tensor.file, tensor.start, tensor.nbytes),)
    shape = tensor.shape
    if extra_rows:
        if len(shape) != 2 or shape[0] != base_vocab:
            raise GrowError(f"cannot extend {tensor.name}: shape {list(shape)} does not have "
                            f"{base_vocab} vocabulary rows")
        try:
            row = mean_row(tensor)
        except CheckpointFormatError as e:
            raise GrowError(str(e)) from None
        pieces += (Repeat(row, extra_rows),)
        shape = (shape[0] + extra_rows, shape[1])
    return OutputTensor(name, tensor.dtype, shape, pieces)


def _zeroed(tensor: StoredTensor, name: str) -> OutputTensor:
    return OutputTensor(name, tensor.dtype, tensor.shape, (Zeros(tensor.nbytes),))


def grown_config(config: dict, growth: dict) -> dict:
    """config.json for the grown model: new depth and vocabulary, per-layer lists re-mapped."""
    grown = dict(config)
    grown["num_hidden_layers"] = growth["layers"]
    grown["vocab_size"] = growth["vocab"]
    # some configs list one entry per layer (e.g. attention type); keep each layer's source entry
    for key in ("layer_types",):
        values = config.get(key)
        if isinstance(values, list) and len(values) == growth["base_layers"]:
            grown[key] = [values[e["source"]] for e in growth["layer_map"]]
    return grown


def copy_side_files(base_dir: Path, out_dir: Path, *, vocab_extended: bool) -> list[str]:
    """Copy tokenizer and generation files; returns the names copied.

    With a vocabulary extension the base tokenizer no longer describes the model (the plan's
    tokenizer does), so only the generation config is copied.
    """
    names = GENERATION_FILES + (() if vocab_extended else TOKENIZER_FILES)
    copied = []
    for name in names:
        if (base_dir / name).is_file():
            shutil.copyfile(base_dir / name, out_dir / name)
            copied.append(name)
    return copied


def _write_shards(shards, staging: Path) -> int:
    written = 0
    try:
        with ByteStreamer() as streamer:
            for shard in shards:
                written += streamer.write_shard(shard, staging / shard.filename)
    except CheckpointFormatError as e:
        raise GrowError(str(e)) from None
    return written


def _summary(growth: dict, tensors: list[OutputTensor], shards, bytes_written: int,
             copied: list[str], *, seconds: float) -> dict:
    return {
        "method": growth["method"],
        "base_layers": growth["base_layers"],
        "layers": growth["layers"],
        "base_vocab": growth["base_vocab"],
        "vocab": growth["vocab"],
        "function_preserving": bool(growth.get("function_preserving", False)),
        "new_layers": [e["index"] for e in growth["layer_map"] if e["new"]],
        "layer_map": [f"{e['index']}<-{e['source']}" + (" identity" if e["init"] == "identity"
                                                        else "") for e in growth["layer_map"]],
        "tensors": len(tensors),
        "shards": [s.filename for s in shards],
        "bytes_written": bytes_written,
        "copied_files": copied,
        "seconds": round(seconds, 3),
    }


# ---------------------------------------------------------------------------------------------
# Atomic output


def _refuse_to_replace_the_base(base_dir: Path, out_dir: Path) -> None:
    base, out = base_dir.resolve(), out_dir.resolve()
    if out == base or out in base.parents:
        raise GrowError(f"output directory {out_dir} would replace the base checkpoint "
                        f"{base_dir}; choose another --out")


@contextmanager
def staging_directory(out_dir: Path) -> Iterator[Path]:
    """A temporary directory beside `out_dir`, renamed to `out_dir` only if the block succeeds
    (genbac.atomic)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise GrowError(f"output path {out_dir} exists and is not a directory")
    started = False
    try:
        with atomic.directory(out_dir, replace=True) as staging:
            started = True
            yield staging
    except OSError as e:
        if not started:
            raise GrowError(f"cannot write the grown checkpoint to {out_dir}: {out_dir.parent} "
                            f"is not writable ({e.strerror or e})") from None
        raise GrowError(f"writing {out_dir} failed ({e.strerror or e}: "
                        f"{e.filename or ''}); nothing was replaced") from None


def _check_free_space(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise GrowError(f"not enough disk space for the grown checkpoint: it needs "
                        f"{size_text(needed)}, {directory.parent} has {size_text(free)} free")


def _write_json(path: Path, value: object) -> None:
    atomic.write_file(path, json.dumps(value, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# Verification


def verify_function_preservation(base_dir: Path, out_dir: Path, *, samples: int = 4,
                                 length: int = 32, seed: int = 0,
                                 plan: dict | None = None) -> dict:
    """Compare base and grown logits (float32, CPU) on seeded random tokens of the base vocabulary.

    Whether equality is expected comes from `plan` if given, else from `out_dir`'s growth report;
    `passed` is None where it is not expected (depth up-scaling changes the function on purpose).
    """
    import torch

    base_dir, out_dir = Path(base_dir), Path(out_dir)
    base_vocab = int(read_base_config(base_dir)["vocab_size"])
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, base_vocab, (samples, length), generator=generator)
    # one model in memory at a time
    base_logits = _logits(base_dir, tokens)
    grown_logits = _logits(out_dir, tokens)[..., :base_vocab]
    max_abs_diff = float((base_logits - grown_logits).abs().max())
    expected = _preservation_expected(out_dir, plan)
    return {
        "max_abs_diff": max_abs_diff,
        "tokens": samples * length,
        "function_preserving_expected": expected,
        "passed": (max_abs_diff <= PRESERVATION_TOLERANCE) if expected else None,
    }


def _logits(model_dir: Path, tokens):
    import gc

    import torch
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    except Exception as e:  # transformers raises many types; the user needs the directory and why
        raise GrowError(f"transformers cannot load {model_dir}: {e}") from e
    model.eval()
    with torch.inference_mode():
        logits = model(input_ids=tokens).logits.float()
    del model
    gc.collect()
    return logits


def read_verification(out_dir: Path) -> dict | None:
    """The base-versus-grown comparison of `out_dir`'s growth report (None: no report, or grown
    without verification)."""
    try:
        verification = json.loads((Path(out_dir) / REPORT_NAME).read_text())["verification"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return verification if isinstance(verification, dict) else None


def _preservation_expected(out_dir: Path, plan: dict | None) -> bool:
    if plan is not None:
        return bool(plan["growth"].get("function_preserving", False))
    try:
        report = json.loads((out_dir / REPORT_NAME).read_text())
        return bool(report["growth"]["function_preserving"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


# ---------------------------------------------------------------------------------------------
# The `genbac grow` command


def run_grow(plan_path: Path, base: Path, out: Path, *, verify: bool = True,
             log: Callable[[str], None] = print) -> dict:
    """Grow `base` into `out` as plan.json says, verify, write out/growth_report.json."""
    plan = load_plan(Path(plan_path))
    _refuse_hub_base(plan, base)
    base, out = Path(base), Path(out)
    growth = plan["growth"]
    log(f"grow: {growth['method']} {growth['base_layers']} -> {growth['layers']} layers, vocab "
        f"{growth['base_vocab']} -> {growth['vocab']}, {base} -> {out}")
    summary = grow_checkpoint(plan, base, out)
    log(f"grow: wrote {summary['tensors']} tensors in {len(summary['shards'])} shard(s), "
        f"{size_text(summary['bytes_written'])} in {summary['seconds']:.1f} s")
    verification = None
    if verify:
        started = time.perf_counter()
        verification = verify_function_preservation(base, out, plan=plan)
        verification["seconds"] = round(time.perf_counter() - started, 3)
        log(_verification_line(verification))
    report = {"plan": str(plan_path), "base": str(base), "out": str(out),
              "growth": summary, "verification": verification}
    _write_json(out / REPORT_NAME, report)
    log(f"grow: report in {out / REPORT_NAME}")
    if verification and verification["passed"] is False:
        raise GrowError(
            f"function preservation failed: max |logit difference| {verification['max_abs_diff']:.3g}"
            f" > {PRESERVATION_TOLERANCE:g}; the grown checkpoint in {out} is not the base model's "
            f"function (see {REPORT_NAME})")
    return report


def load_plan(plan_path: Path) -> dict:
    try:
        plan = json.loads(plan_path.read_text())
    except OSError as e:
        raise GrowError(f"cannot read plan {plan_path}: {e.strerror or e}") from None
    except ValueError as e:
        raise GrowError(f"{plan_path} is not valid JSON: {e}") from None
    if not isinstance(plan, dict) or plan.get("format") != "genbac.plan/1":
        raise GrowError(f"{plan_path} is not a genbac plan (format genbac.plan/1); "
                        "pass the plan.json written by `genbac compile`")
    _growth_section(plan)
    return plan


def _refuse_hub_base(plan: dict, base: Path | str) -> None:
    text = str(base)
    if not text.startswith("hf:"):
        return
    named = " (the spec's base weights)" if plan.get("base_weights") == text else ""
    raise GrowError(
        f"{text}{named} is a Hugging Face Hub id; `genbac grow` does not download at run time. "
        f"Download it first (e.g. `huggingface-cli download {text[3:]} --local-dir DIR`) and pass "
        "that local directory with --base.")


def _verification_line(v: dict) -> str:
    if v["function_preserving_expected"]:
        verdict = "passed" if v["passed"] else "FAILED"
        return (f"grow: function preservation {verdict}: max |logit difference| "
                f"{v['max_abs_diff']:.3g} over {v['tokens']} tokens (tolerance "
                f"{PRESERVATION_TOLERANCE:g})")
    return (f"grow: this growth is not function-preserving; max |logit difference| "
            f"{v['max_abs_diff']:.3g} over {v['tokens']} tokens (for information)")
