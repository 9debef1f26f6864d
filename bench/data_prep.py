"""Benchmark: `prepare_language` (no cache) against the bare tokenizer on the same texts, same run.

The corpus is the example texts (en, de, bar) repeated to about --mb megabytes of JSONL, split over
--files files in a temporary directory. Measured, in interleaved rounds (best of --rounds):

- `tokenizers` encode_batch: the Rust batch encoder on the texts already in memory, ids collected
  as Python lists (what any use of the ids needs); this is the baseline of the ratio;
- the same with encode_batch_fast (no offsets), whole list and 1000 texts per call (the batch
  prepare_language uses), and transformers `tokenizer(texts)`;
- prepare_language from scratch: read the JSONL with `datasets`, tokenize, append EOS, pack into
  rows, write sequences.npy + meta.json; then the same call again (served from the cache).

Throughput is tokenized tokens (EOS included for prepare_language) per second of wall time.
Usage: .venv/bin/python bench/data_prep.py [--mb 30] [--files 4] [--rounds 2] [--vocab 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data"


def build_corpus(directory: Path, megabytes: float, files: int) -> list[str]:
    """Write about `megabytes` of JSONL made of the example texts; return the texts in file order."""
    originals = [json.loads(line)["text"] for path in sorted(DATA.glob("*/train.jsonl"))
                 for line in path.read_text(encoding="utf-8").splitlines()]
    size = sum(len(json.dumps({"text": t}).encode()) + 1 for t in originals)
    copies = max(1, round(megabytes * 1e6 / size))
    # a copy number in front of each text keeps documents distinct, as in a real corpus
    texts = [f"{copy}. {text}" for copy in range(copies) for text in originals]
    per_file = -(-len(texts) // files)
    for index in range(files):
        part = texts[index * per_file:(index + 1) * per_file]
        with open(directory / f"part-{index:03d}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in part)
    return texts


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def encode_batch_ids(tokenizer, texts, fast: bool, batch: int | None = None) -> int:
    encode = tokenizer.encode_batch_fast if fast else tokenizer.encode_batch
    batch = batch or len(texts)
    return sum(len(encoding.ids) for start in range(0, len(texts), batch)
               for encoding in encode(texts[start:start + batch], add_special_tokens=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=30.0)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--sequence", type=int, default=1024)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="genbac-bench-") as scratch:
        scratch = Path(scratch)
        os.environ.update(HF_HOME=str(scratch / "hf-home"), HF_HUB_OFFLINE="1",
                          HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
        from genbac.runtime.data import prepare_language
        from genbac.runtime.tokenizer import (load_fast_tokenizer, load_tokenizer,
                                              train_bpe_tokenizer)

        corpus = scratch / "corpus"
        corpus.mkdir()
        texts = build_corpus(corpus, args.mb, args.files)
        megabytes = sum(p.stat().st_size for p in corpus.iterdir()) / 1e6
        tokenizer_dir = train_bpe_tokenizer(sorted(DATA.glob("*/train.jsonl")), args.vocab,
                                            scratch / "tokenizer")
        bare = load_fast_tokenizer(tokenizer_dir)
        wrapped = load_tokenizer(tokenizer_dir)
        print(f"corpus: {megabytes:.1f} MB JSONL in {args.files} files, {len(texts):,} documents; "
              f"byte-level BPE, vocab {args.vocab}; sequence {args.sequence}; "
              f"{os.cpu_count()} CPUs; best of {args.rounds} rounds")

        cases = {
            "tokenizers encode_batch (baseline)": lambda: encode_batch_ids(bare, texts, False),
            "tokenizers encode_batch_fast": lambda: encode_batch_ids(bare, texts, True),
            "encode_batch_fast, 1000 per call": lambda: encode_batch_ids(bare, texts, True, 1000),
            "transformers tokenizer(texts)": lambda: sum(
                len(ids) for ids in wrapped(texts, add_special_tokens=False)["input_ids"]),
        }
        best: dict[str, tuple[float, int]] = {}

        def record(name: str, seconds: float, tokens: int) -> None:
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, tokens)

        for round_index in range(args.rounds):
            for name, case in cases.items():
                record(name, *timed(case))
            cache = scratch / f"cache-{round_index}"
            seconds, packed = timed(lambda: prepare_language(
                "all", ["corpus/*.jsonl"], scratch, tokenizer_dir, args.sequence, cache,
                log=lambda _: None))
            record("prepare_language, no cache", seconds, packed.meta["tokenized_tokens"])
            seconds, again = timed(lambda: prepare_language(
                "all", ["corpus/*.jsonl"], scratch, tokenizer_dir, args.sequence, cache,
                log=lambda _: None))
            assert again.from_cache
            record("prepare_language, cached", seconds, again.meta["tokenized_tokens"])

        baseline_seconds, baseline_tokens = best["tokenizers encode_batch (baseline)"]
        baseline_rate = baseline_tokens / baseline_seconds
        print(f"\n| {'method':<36} | {'seconds':>8} | {'tokens':>12} | {'tokens/s':>12} | "
              f"{'vs baseline':>11} |")
        print(f"|{'-' * 38}|{'-' * 9}:|{'-' * 13}:|{'-' * 13}:|{'-' * 12}:|")
        for name, (seconds, tokens) in best.items():
            if "cached" in name:  # nothing is tokenized: a rate would be meaningless
                print(f"| {name:<36} | {seconds:8.2f} | {tokens:12,} | {'—':>12} | {'—':>11} |")
                continue
            rate = tokens / seconds
            print(f"| {name:<36} | {seconds:8.2f} | {tokens:12,} | {rate:12,.0f} | "
                  f"{rate / baseline_rate:10.2f}x |")
        print(f"\nprepare_language's tokens include one EOS per document ({len(texts):,}).")


if __name__ == "__main__":
    main()
