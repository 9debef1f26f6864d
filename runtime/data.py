"""Training data for the local runtime: sources → packed token sequences → a deterministic mixture.

Data format. `prepare_language` turns one language's sources (jsonl/json, parquet, plain text one
document per line, or a directory written by `datasets.Dataset.save_to_disk`) into a directory

    <cache_dir>/<code>-<split>-<cachekey16>/
        sequences.npy   int32 array [n_sequences, sequence + 1], memory-mappable
        meta.json       code, split, sequence, counts, tokenizer sha256, sources with sizes

Every document is tokenized without template tokens and followed by the EOS id; the documents are
concatenated in source order and cut into rows of `sequence + 1` ids that overlap by one token
(row i = ids[i*sequence : i*sequence + sequence + 1]), so inputs row[:-1] and labels row[1:] give
every token a label. The incomplete tail is dropped. A row holds one language only. The directory
name carries a hash of everything the content depends on (source paths, sizes and mtimes, the
tokenizer.json bytes, the EOS id, sequence, text key, split, this format's version): an unchanged
input reuses it without tokenizing, a changed one gets a fresh directory. Directories appear
atomically (written under a temporary name, then renamed).

Determinism. `Mixer.batch(step)` is a pure function of (plan, packed data, seed, step): a run resumed
at step s sees exactly the batches an uninterrupted run sees from s on; there is no iterator state.
Within a phase the slots (steps × batch) are an exact multiset of the plan's per-language sequence
counts, shuffled by a generator seeded from (seed, phase index). The k-th sequence a language
draws, counted over the whole run, is row perm_e[k mod n] of its data, where perm_e is a permutation
seeded from (seed, language code, epoch e = k div n): a small corpus repeats, in a new order each
epoch.

datasets is imported only inside the functions that read sources: importing this module is light.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from genbac import atomic

FORMAT_VERSION = 1  # bump when the packed layout or the tokenization rule changes
SEQUENCES_FILE = "sequences.npy"
META_FILE = "meta.json"
TOKENIZE_BATCH = 1000  # documents per tokenizer call: large enough for its thread pool

from .sources import (DataError, is_saved_dataset, load_texts, quiet_datasets,  # noqa: F401
                      resolve_sources, short_error, source_fingerprint, source_size)


# ----------------------------------------------------------------------------- tokenize and pack

def tokenize_documents(texts, tokenizer, eos_id: int, work_dir: Path, fingerprint: str):
    """A dataset with one list<int32> column "input_ids": each non-empty document's ids + EOS.

    `tokenizer` is a bare `tokenizers.Tokenizer`: its Rust batch encoder is what we time against,
    and it adds no template tokens with add_special_tokens=False.
    """
    import datasets
    import pyarrow as pa

    encode_batch = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    id_type = pa.list_(pa.int32())

    def encode(batch: "pa.Table") -> "pa.Table":
        documents = [text for text in batch.column("text").to_pylist() if text]
        rows = []
        for encoding in encode_batch(documents, add_special_tokens=False):
            ids = encoding.ids  # a fresh list per call: appending is safe
            ids.append(eos_id)
            rows.append(ids)
        return pa.table({"input_ids": pa.array(rows, type=id_type)})

    features = datasets.Features({"input_ids": datasets.List(datasets.Value("int32"))})
    with quiet_datasets():
        # Explicit cache file and fingerprint: nothing is written beside the sources, and
        # datasets does not hash (pickle) the tokenizer to name its cache.
        return texts.with_format("arrow").map(
            encode, batched=True, batch_size=TOKENIZE_BATCH, remove_columns=["text"],
            features=features, cache_file_name=str(Path(work_dir) / "tokens.arrow"),
            new_fingerprint=fingerprint)


def pack_sequences(token_ids, sequence: int, out_file: Path, what: str) -> tuple[int, int]:
    """Write the rows of `sequence + 1` ids to `out_file`; return (rows, tokenized ids in all).

    Streams the arrow column chunk by chunk into a memory-mapped .npy: memory stays bounded by a
    chunk whatever the corpus size.
    """
    column = token_ids.data.table.column("input_ids")
    chunks = [chunk.flatten() for chunk in column.chunks]  # zero-copy views of the ids
    total = sum(len(chunk) for chunk in chunks)
    rows = (total - 1) // sequence if total > sequence else 0
    if rows < 1:
        raise DataError(f"{what} has {total:,} tokens, fewer than one sequence of {sequence + 1} "
                        f"(sequence {sequence} plus the label of its last token): add data")
    out = np.lib.format.open_memmap(out_file, mode="w+", dtype=np.int32,
                                    shape=(rows, sequence + 1))
    packer = _RowPacker(out, sequence)
    for chunk in chunks:
        packer.add(chunk.to_numpy(zero_copy_only=False))
    if packer.row != rows:
        raise AssertionError(f"packed {packer.row} rows, expected {rows}")
    out.flush()
    del out
    return rows, total


class _RowPacker:
    """Cuts a stream of id chunks into overlapping rows: row i = ids[i*s : i*s + s + 1]."""

    def __init__(self, out: np.ndarray, sequence: int):
        self.out = out
        self.sequence = sequence
        self.row = 0
        self.carry = np.empty(0, dtype=np.int32)  # ids not yet in a row (always starts a row)

    def add(self, chunk: np.ndarray) -> None:
        s = self.sequence
        buffer = np.concatenate([self.carry, chunk]) if len(self.carry) else chunk
        rows = min((len(buffer) - 1) // s, len(self.out) - self.row) if len(buffer) else 0
        if rows > 0:
            block = self.out[self.row:self.row + rows]
            block[:, :s] = buffer[:rows * s].reshape(rows, s)
            block[:, s] = buffer[s:rows * s + 1:s]  # each row's extra label token
            self.row += rows
            buffer = buffer[rows * s:]
        # Copy: the chunk may be a view of an arrow buffer that is released after this call.
        self.carry = np.array(buffer, dtype=np.int32)


# ------------------------------------------------------------------------------ packed languages

@dataclass
class PackedData:
    """One language's packed sequences (one split), as written by `prepare_language`.

    `n_tokens` counts the tokens the rows provide as inputs (n_sequences × sequence); meta.json
    also has the tokenized total including the dropped tail.
    """

    code: str
    split: str
    path: Path  # the directory holding sequences.npy and meta.json
    n_sequences: int
    n_tokens: int
    sequence: int
    from_cache: bool = False
    _array: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def load(cls, path: Path, from_cache: bool = True) -> "PackedData":
        path = Path(path)
        meta = read_meta(path)
        return cls(code=meta["code"], split=meta["split"], path=path,
                   n_sequences=meta["n_sequences"], n_tokens=meta["n_tokens"],
                   sequence=meta["sequence"], from_cache=from_cache)

    @property
    def array_file(self) -> Path:
        return self.path / SEQUENCES_FILE

    @property
    def meta(self) -> dict:
        return read_meta(self.path)

    @property
    def array(self) -> np.ndarray:
        """All rows, memory-mapped (read-only): [n_sequences, sequence + 1] int32."""
        if self._array is None:
            self._array = np.load(self.array_file, mmap_mode="r")
        return self._array

    def sequence_ids(self, i: int) -> np.ndarray:
        return self.array[i]

    def __getstate__(self) -> dict:  # picklable for data-loader workers: reopen the map there
        state = dict(self.__dict__)
        state["_array"] = None
        return state


def read_meta(directory: Path) -> dict:
    file = Path(directory) / META_FILE
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{directory} is not a packed data directory: {short_error(error)}") from None


def prepare_language(code: str, patterns: list[str], project_dir: Path, tokenizer_dir: Path,
                     sequence: int, cache_dir: Path, split: str = "train", text_key: str = "text",
                     log: Callable[[str], Any] = print,
                     model_vocab: int | None = None) -> PackedData:
    """Tokenize and pack one language's sources (or reuse the cached result); see the module doc."""
    from .tokenizer import load_fast_tokenizer, special_token_id, tokenizer_file

    if sequence < 1:
        raise DataError(f"sequence length must be positive, not {sequence}")
    what = f"{code}/{split}"
    sources = resolve_sources(patterns, project_dir)
    tokenizer = load_fast_tokenizer(tokenizer_dir)
    check_vocabulary(tokenizer, model_vocab, tokenizer_dir)
    eos_id = special_token_id(tokenizer_dir, "eos", tokenizer)
    tokenizer_sha = sha256_file(tokenizer_file(tokenizer_dir))
    key = cache_key(sources, tokenizer_sha, eos_id, sequence, text_key, split)
    directory = Path(cache_dir) / f"{code}-{split}-{key[:16]}"
    if (directory / META_FILE).is_file():
        log(f"{what}: using cached sequences in {directory}")
        return PackedData.load(directory, from_cache=True)

    size = sum(source_size(p) for p in sources)
    log(f"{what}: tokenizing {len(sources)} source(s), {size / 1e6:.1f} MB")
    started = time.perf_counter()
    with atomic.directory(directory, complete=META_FILE) as work:
        scratch = work / "scratch"
        texts = load_texts(sources, text_key, scratch, split)
        token_ids = tokenize_documents(texts, tokenizer, eos_id, scratch, key)
        documents = len(token_ids)  # one row per non-empty document
        rows, total = pack_sequences(token_ids, sequence, work / SEQUENCES_FILE, what)
        del texts, token_ids  # close the arrow files before their directory goes
        shutil.rmtree(scratch)
        meta = {"format": FORMAT_VERSION, "code": code, "split": split, "sequence": sequence,
                "n_sequences": rows, "n_tokens": rows * sequence, "tokenized_tokens": total,
                "dropped_tokens": total - (rows * sequence + 1), "documents": documents,
                "text_key": text_key, "eos_id": eos_id, "tokenizer_sha256": tokenizer_sha,
                "cache_key": key,
                "sources": [{"path": str(p), "bytes": source_size(p)} for p in sources]}
        (work / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log(f"{what}: {rows:,} sequences of {sequence} ({total:,} tokens, {documents:,} documents) "
        f"in {time.perf_counter() - started:.1f} s")
    return PackedData.load(directory, from_cache=False)


def check_vocabulary(tokenizer, model_vocab: int | None, tokenizer_dir: Path) -> None:
    """DataError if the tokenizer can produce an id the model has no embedding row for."""
    from .tokenizer import vocabulary_size

    size = vocabulary_size(tokenizer)
    if model_vocab is not None and size > model_vocab:
        raise DataError(f"tokenizer {tokenizer_dir} has {size} tokens but the model's vocabulary "
                        f"is {model_vocab}: use a matching tokenizer or extend the vocabulary")


def cache_key(sources: list[Path], tokenizer_sha256: str, eos_id: int, sequence: int,
              text_key: str, split: str) -> str:
    """sha256 over everything the packed content depends on (mtimes: an edited file re-packs)."""
    payload = {"format": FORMAT_VERSION, "sources": [source_fingerprint(p) for p in sources],
               "tokenizer": tokenizer_sha256, "eos": eos_id, "sequence": sequence,
               "text_key": text_key, "split": split}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

# ---------------------------------------------------------------------------------------- mixing

def _seed_word(value: int | str) -> int:
    """A non-negative integer for SeedSequence; strings hashed stably (not Python's hash())."""
    if isinstance(value, str):
        return int.from_bytes(hashlib.sha256(value.encode("utf-8")).digest()[:8], "little")
    return int(value) % (1 << 64)


@dataclass(frozen=True)
class _PhaseLayout:
    """Which language, and which of its draws, fills each slot of one phase."""

    language: np.ndarray  # [steps * batch] index into Mixer.codes
    draw: np.ndarray  # [steps * batch] the language's draw number counted over the whole run
    seen: np.ndarray  # [languages, steps + 1]: each language's sequences in the first j steps


class Mixer:
    """The data order of a run as a pure function of the global step (see the module doc).

    `step` is 0-based: `batch(step)` is the batch of the update that takes the run from `step` to
    `step + 1`; a phase covers steps [start_step, end_step).
    """

    LAYOUTS_KEPT = 2  # phases whose slot layout stays in memory (a batch needs one)
    ORDERS_KEPT = 4  # epoch permutations kept per language

    def __init__(self, plan: Mapping | Any, data: Mapping[str, PackedData], seed: int):
        if hasattr(plan, "model_dump"):  # a compiler.plan.Plan
            plan = plan.model_dump(mode="json")
        schedule = plan["schedule"]
        self.batch_size = int(schedule["batch"])
        self.sequence = int(schedule["sequence"])
        self.seed = seed
        # by steps; an empty phase sorts before the phase that starts where it ends
        self.phases = sorted(schedule["phases"], key=lambda p: (p["start_step"], p["end_step"]))
        self.codes = _language_codes(self.phases)
        self.total_steps = self.phases[-1]["end_step"] if self.phases else 0
        self._counts = [self._phase_counts(phase) for phase in self.phases]
        # draws of each language before each phase, and in the whole run (last entry)
        self._before = np.cumsum([np.zeros(len(self.codes), np.int64)] + self._counts, axis=0)
        self._starts = [phase["start_step"] for phase in self.phases]
        self._check_contiguous()
        self.data = self._check_data(data)
        self._layouts: dict[int, _PhaseLayout] = {}
        self._orders: dict[tuple[str, int], np.ndarray] = {}

    # -- checks

    def _phase_counts(self, phase: Mapping) -> np.ndarray:
        counts = np.zeros(len(self.codes), np.int64)
        for share in phase["shares"]:
            counts[self.codes.index(share["code"])] += int(share["sequences"])
        slots = (phase["end_step"] - phase["start_step"]) * self.batch_size
        if counts.sum() != slots:
            raise DataError(f"plan phase {phase['index']}: its languages have {counts.sum()} "
                            f"sequences but its steps hold {slots}; recompile the plan")
        return counts

    def _check_contiguous(self) -> None:
        expected = 0
        for phase in self.phases:
            if phase["start_step"] != expected or phase["end_step"] < phase["start_step"]:
                raise DataError(f"plan phase {phase['index']} covers steps "
                                f"{phase['start_step']}–{phase['end_step']}, expected to start at "
                                f"{expected}; recompile the plan")
            expected = phase["end_step"]

    def _check_data(self, data: Mapping[str, PackedData]) -> dict[str, PackedData]:
        needed = [code for i, code in enumerate(self.codes) if self._before[-1][i] > 0]
        for code in needed:
            if code not in data:
                raise DataError(f"no packed data for language {code!r}, which the plan draws from")
            packed = data[code]
            if packed.sequence != self.sequence:
                raise DataError(f"{code}: data packed for sequence {packed.sequence}, "
                                f"but the plan trains on sequence {self.sequence}")
            if packed.n_sequences < 1:
                raise DataError(f"{code}: the packed data has no sequences")
        return {code: data[code] for code in needed}

    # -- the data order

    def batch(self, step: int) -> tuple[np.ndarray, list[str]]:
        """Rows [batch, sequence + 1] (int64) for update `step`, and the language of each row."""
        phase = self._phase_at(step, allow_end=False)
        layout = self._layout(phase)
        first = (step - self._starts[phase]) * self.batch_size
        rows = slice(first, first + self.batch_size)
        out = np.empty((self.batch_size, self.sequence + 1), dtype=np.int64)
        codes = []
        for r, (language, draw) in enumerate(zip(layout.language[rows], layout.draw[rows])):
            code = self.codes[language]
            out[r] = self.data[code].sequence_ids(self._row_of(code, int(draw)))
            codes.append(code)
        return out, codes

    def tokens_seen(self, step: int) -> dict[str, int]:
        """Tokens (sequence per row) of each language in the batches of steps 0 … step-1."""
        if step == self.total_steps:
            sequences = self._before[-1]
        else:
            phase = self._phase_at(step, allow_end=True)
            within = step - self._starts[phase]
            sequences = self._before[phase].copy()
            if within:
                sequences += self._layout(phase).seen[:, within]
        return {code: int(n) * self.sequence for code, n in zip(self.codes, sequences)}

    def _phase_at(self, step: int, allow_end: bool) -> int:
        if not 0 <= step < self.total_steps + (1 if allow_end else 0):
            raise IndexError(f"step {step} is outside the plan's steps 0–{self.total_steps - 1}")
        # the last phase starting at or before `step` (empty phases are skipped by this choice)
        return int(np.searchsorted(self._starts, step, side="right")) - 1

    def _layout(self, phase: int) -> _PhaseLayout:
        if phase not in self._layouts:
            if len(self._layouts) >= self.LAYOUTS_KEPT:
                self._layouts.pop(next(iter(self._layouts)))
            self._layouts[phase] = self._build_layout(phase)
        return self._layouts[phase]

    def _build_layout(self, phase: int) -> _PhaseLayout:
        counts = self._counts[phase]
        rng = np.random.default_rng([_seed_word(self.seed), _seed_word(self.phases[phase]["index"])])
        language = rng.permutation(np.repeat(np.arange(len(self.codes), dtype=np.int32), counts))
        draw = np.empty(len(language), dtype=np.int64)
        steps = len(language) // self.batch_size if self.batch_size else 0
        seen = np.zeros((len(self.codes), steps + 1), dtype=np.int64)
        for i in range(len(self.codes)):
            mine = language == i
            draw[mine] = self._before[phase][i] + np.arange(counts[i])
            seen[i, 1:] = np.cumsum(mine.reshape(steps, self.batch_size).sum(axis=1))
        return _PhaseLayout(language=language, draw=draw, seen=seen)

    def _row_of(self, code: str, draw: int) -> int:
        epoch, position = divmod(draw, self.data[code].n_sequences)
        return int(self._epoch_order(code, epoch)[position])

    def _epoch_order(self, code: str, epoch: int) -> np.ndarray:
        key = (code, epoch)
        if key not in self._orders:
            if len(self._orders) >= self.ORDERS_KEPT * len(self.codes):
                self._orders.pop(next(iter(self._orders)))
            rng = np.random.default_rng([_seed_word(self.seed), _seed_word(code), epoch])
            self._orders[key] = rng.permutation(self.data[code].n_sequences)
        return self._orders[key]


def _language_codes(phases: list[Mapping]) -> list[str]:
    codes: dict[str, None] = {}
    for phase in phases:
        for share in phase["shares"]:
            codes.setdefault(share["code"], None)
    return list(codes)


# ------------------------------------------------------------------------------------ evaluation

def eval_batches(data: PackedData, batch: int, max_batches: int) -> list[np.ndarray]:
    """The first min(n_sequences, batch × max_batches) rows in order, as int64 batches.

    The same rows at every evaluation, so per-language validation losses are comparable across
    steps and runs; the last batch may be smaller.
    """
    if batch < 1 or max_batches < 1:
        raise ValueError("batch and max_batches must be positive")
    rows = min(data.n_sequences, batch * max_batches)
    return [np.asarray(data.array[start:min(start + batch, rows)], dtype=np.int64)
            for start in range(0, rows, batch)]


class EvalSet:
    """Per-language validation batches: `for code, rows in eval_set` yields them in code order."""

    def __init__(self, data: Mapping[str, PackedData], batch: int, max_batches: int):
        self.batches = {code: eval_batches(packed, batch, max_batches)
                        for code, packed in data.items()}

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for code, batches in self.batches.items():
            for rows in batches:
                yield code, rows

    def tokens(self, code: str) -> int:
        """Label tokens of a language's validation batches (sequence per row)."""
        return sum(rows.shape[0] * (rows.shape[1] - 1) for rows in self.batches[code])


__all__ = ["DataError", "PackedData", "Mixer", "EvalSet", "resolve_sources", "prepare_language",
           "load_texts", "eval_batches", "cache_key", "is_saved_dataset"]
