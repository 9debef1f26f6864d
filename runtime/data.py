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
Tokenising: in this process below IN_PROCESS_BYTES of text, else in `data_processes` freshly
started processes that each take the next piece of the sources as they free up
(runtime/piece_tokenizer.py); this process packs their ids in piece order, so the bytes are the
same for any number of processes.

Determinism. `Mixer.batch(step)` is a pure function of (plan, packed data, seed, step): a run resumed
at step s sees exactly the batches an uninterrupted run sees from s on; there is no iterator state.
Within a phase the slots (steps × batch) hold exactly the plan's per-language sequence counts,
dealt evenly (`_Interleave`: every stretch of the phase carries each language's share, rounded; the
alignment drawn from (seed, phase index)), and each batch's rows are put in an order drawn from
(seed, step). The k-th sequence a language draws, counted over the whole run, is row order_e(k mod n)
of its data, where order_e is a keyed bijection of 0 … n-1 (`_Permutation`, a Feistel network) keyed
from (seed, language code, epoch e = k div n): a small corpus repeats, in a new order each epoch,
and no row repeats within an epoch. Both are computed per slot and per row, never tabulated, so
the Mixer's memory and the time of any batch do not grow with the run (bench/mixer.py).

pyarrow and datasets are imported only inside the functions that read sources: importing this
module is light.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping

import numpy as np

from genbac import atomic

FORMAT_VERSION = 1  # bump when the packed layout or the tokenization rule changes
SEQUENCES_FILE = "sequences.npy"
META_FILE = "meta.json"
PROCESSES_ENV = "GENBAC_DATA_PROCESSES"  # how many processes tokenise (default: data_processes)
PROCESS_BYTES = 16 * 2**20  # text per tokenising process, at least (see data_processes)
# Less text than this is tokenised in genbac's own process: starting one (~0.15 s with its
# tokenizer) would cost more than the slower encoding there (runtime/piece_tokenizer.py).
IN_PROCESS_BYTES = 8 * 2**20
IDS_CHUNK = 2**20  # ids read back from a worker's file at a time (4 MB: stays in cache)

from .piece_tokenizer import Job, PieceTokenizer, TokenizingProcesses
from .progress import PrepProgress, print_line
from .sources import (DataError, Piece, is_saved_dataset, pieces,  # noqa: F401
                      resolve_sources, short_error, source_fingerprint, source_size)


# ----------------------------------------------------------------------------- tokenize and pack

def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: a SLURM or cgroup share, not the whole
    machine)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def data_processes(size_bytes: int) -> int:
    """How many processes tokenise a corpus of `size_bytes`: $GENBAC_DATA_PROCESSES if set, else
    one per PROCESS_BYTES of text up to the CPUs this process may use (a process costs about
    0.15 s to start; a byte-level BPE encodes 2-6 MB/s per core)."""
    configured = os.environ.get(PROCESSES_ENV)
    if configured is not None:
        try:
            n = int(configured)
        except ValueError:
            n = 0
        if n < 1:
            raise DataError(f"${PROCESSES_ENV} must be a positive whole number of processes, "
                            f"not {configured!r}")
        return n
    return max(1, min(usable_cpus(), size_bytes // PROCESS_BYTES))


def tokenize_pieces(job: Job, found: list[Piece], scratch: Path, tokenizer=None,
                    workers: TokenizingProcesses | None = None
                    ) -> Iterator[tuple[np.ndarray, int]]:
    """The ids of all pieces in order, in chunks, each with its count of documents: tokenised in
    this process by `tokenizer`, or by `workers`, fresh processes (runtime/piece_tokenizer.py:
    each takes the next piece when it is free; this process reads their files in order). The ids
    are the same for any number of processes."""
    if workers is None:
        work = PieceTokenizer(tokenizer, job.eos_id, job.text_key, job.split,
                              PrepProgress(job.what, 1))
        for piece in found:
            for chunk, documents in work.ids(piece):
                yield np.frombuffer(chunk, np.int32), documents
        return
    workers.begin(job, scratch)
    for ids_file, documents in workers.results(found):
        yield np.empty(0, np.int32), documents
        with open(ids_file, "rb") as ids:
            while len(chunk := np.fromfile(ids, np.int32, IDS_CHUNK)):
                yield chunk, 0
        ids_file.unlink()


class RowWriter:
    """Cuts a stream of id chunks into overlapping rows, row i = ids[i*s : i*s + s + 1], appended to
    an .npy file whose header (written last: the row count is known at the end) has a fixed size.
    Memory: a chunk's rows and less than a row of carried ids."""

    HEADER = 128  # bytes, a multiple of 64 as the .npy format asks

    def __init__(self, out: BinaryIO, sequence: int):
        self.out = out
        self.sequence = sequence
        self.rows = 0
        self.carry = np.empty(0, dtype=np.int32)  # ids not yet in a row (always starts a row)
        out.write(b"\0" * self.HEADER)

    def add(self, chunk: np.ndarray) -> None:
        s = self.sequence
        c = len(self.carry)
        if c and c + len(chunk) >= s + 1:  # the carried row completes: write it, go on from its end
            self.out.write(np.concatenate([self.carry, chunk[:s + 1 - c]]))
            self.rows += 1
            chunk, c = chunk[s - c:], 0
        elif c:
            self.carry = np.concatenate([self.carry, chunk])
            return
        rows = (len(chunk) - 1) // s if len(chunk) else 0
        if rows > 0:
            block = np.empty((rows, s + 1), np.int32)
            block[:, :s] = chunk[:rows * s].reshape(rows, s)
            block[:, s] = chunk[s:rows * s + 1:s]  # each row's extra label token
            self.out.write(block)
            self.rows += rows
        # Copy: the chunk may be a view of a buffer that goes when this call returns.
        self.carry = np.array(chunk[rows * s:], dtype=np.int32)

    def finish(self) -> int:
        """Write the header; return the number of rows."""
        header = ("{'descr': '<i4', 'fortran_order': False, "
                  f"'shape': ({self.rows}, {self.sequence + 1}), }}")
        magic = b"\x93NUMPY\x01\x00"
        body = header.ljust(self.HEADER - len(magic) - 3) + "\n"
        self.out.seek(0)
        self.out.write(magic + struct.pack("<H", len(body)) + body.encode("latin1"))
        return self.rows


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
                     model_vocab: int | None = None,
                     processes: int | None = None) -> PackedData:
    """Tokenize and pack one language's sources (or reuse the cached result); see the module doc.

    `processes`: how many processes tokenise (default: `data_processes` of the sources' size); the
    packed result is byte-identical for any number, so it is not part of the cache key."""
    from .tokenizer import load_fast_tokenizer, special_token_id, tokenizer_file

    if sequence < 1:
        raise DataError(f"sequence length must be positive, not {sequence}")
    what = f"{code}/{split}"
    sources = resolve_sources(patterns, project_dir)
    size = sum(source_size(p) for p in sources)
    processes = processes or data_processes(size)
    in_process = processes == 1 and size < IN_PROCESS_BYTES
    with contextlib.ExitStack() as stack:
        found = workers = None
        if not in_process and not _prepared_before(cache_dir, code, split):
            # Nothing of this language and split is cached, so it will be tokenised: its
            # processes start now, their interpreters while this one loads the tokenizer.
            found = pieces(sources, split, processes)
            workers = stack.enter_context(
                TokenizingProcesses(min(processes, len(found)), print_line))
        tokenizer = load_fast_tokenizer(tokenizer_dir)
        check_vocabulary(tokenizer, model_vocab, tokenizer_dir)
        eos_id = special_token_id(tokenizer_dir, "eos", tokenizer)
        tokenizer_sha = sha256_file(tokenizer_file(tokenizer_dir))
        key = cache_key(sources, tokenizer_sha, eos_id, sequence, text_key, split)
        directory = Path(cache_dir) / f"{code}-{split}-{key[:16]}"
        if (directory / META_FILE).is_file():
            log(f"{what}: using cached sequences in {directory}")
            return PackedData.load(directory, from_cache=True)

        log(f"{what}: tokenizing {len(sources)} source(s), {size / 1e6:.1f} MB"
            + (f", in {processes} processes" if processes > 1 else ""))
        started = time.perf_counter()
        with atomic.directory(directory, complete=META_FILE) as work:
            scratch = work / "scratch"
            scratch.mkdir()
            if found is None:
                found = pieces(sources, split, processes)
            job = Job(str(tokenizer_file(tokenizer_dir).resolve()), eos_id, text_key, split, what,
                      min(processes, len(found)))
            if workers is None and not in_process:
                workers = stack.enter_context(TokenizingProcesses(job.processes, print_line))
            documents = total = 0
            with open(work / SEQUENCES_FILE, "wb") as out:
                writer = RowWriter(out, sequence)
                for ids, count in tokenize_pieces(job, found, scratch, tokenizer, workers):
                    writer.add(ids)
                    documents, total = documents + count, total + len(ids)
                rows = writer.finish()
            shutil.rmtree(scratch)
            if rows < 1:
                raise DataError(f"{what} has {total:,} tokens, fewer than one sequence of "
                                f"{sequence + 1} (sequence {sequence} plus the label of its last "
                                "token): add data")
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


def _prepared_before(cache_dir: Path, code: str, split: str) -> bool:
    """Whether the cache holds any packed directory of this language and split (of other sources
    or another tokenizer, perhaps): if not, this preparation tokenises for certain."""
    pattern = f"{glob.escape(code)}-{glob.escape(split)}-*/{META_FILE}"
    return any(Path(cache_dir).glob(pattern))


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


class _Interleave:
    """One phase's slots 0 … n-1 dealt to its languages: exactly `counts[l]` slots to language l,
    spread evenly (every prefix of the phase holds each language's share, rounded), in O(log L) per
    slot and no memory that grows with the run.

    A binary tree over the languages: a node whose left side has `a` of its `n` slots gives the
    left side floor((k·a + r) / n) of its first k slots, with r in [0, n) drawn from the seed. That
    count is 0 at k = 0, a at k = n, and grows by 0 or 1 per slot, so "slot k goes left" is
    exactly "the count grows at k", and the side's own slot number is the count before k.
    """

    def __init__(self, counts: list[int], rng: np.random.Generator):
        self.counts = [int(c) for c in counts]
        self.tree = self._node([l for l, c in enumerate(self.counts) if c > 0], rng)

    def _node(self, languages: list[int], rng: np.random.Generator):
        if len(languages) <= 1:
            return languages[0] if languages else None  # a leaf: the language's index
        half = len(languages) // 2
        left, right = languages[:half], languages[half:]
        a = sum(self.counts[l] for l in left)
        n = a + sum(self.counts[l] for l in right)
        return (a, n, int(rng.integers(n)), self._node(left, rng), self._node(right, rng),
                frozenset(left))

    def deal(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(language, its own slot number) of each of `slots` (int64)."""
        language = np.empty(len(slots), np.int64)
        own = np.empty(len(slots), np.int64)
        self._deal(self.tree, slots, np.arange(len(slots)), language, own)
        return language, own

    def _deal(self, node, k, where, language, own) -> None:
        if node is None:  # a phase without slots
            assert len(k) == 0, "slots dealt in a phase that has none"
            return
        if not isinstance(node, tuple):
            language[where], own[where] = node, k
            return
        a, n, r, left, right, _ = node
        before, after = (k * a + r) // n, ((k + 1) * a + r) // n
        go_left = after > before
        self._deal(left, before[go_left], where[go_left], language, own)
        self._deal(right, (k - before)[~go_left], where[~go_left], language, own)

    def seen(self, language: int, k: int) -> int:
        """How many of the first k slots are the language's."""
        node = self.tree
        while isinstance(node, tuple):
            a, n, r, left, right, on_the_left = node
            before = (k * a + r) // n
            if language in on_the_left:
                node, k = left, before
            else:
                node, k = right, k - before
        return k if node == language else 0


class _Permutation:
    """A keyed bijection of 0 … n-1 computed per element (no table): a 6-round Feistel network on
    the smallest even number of bits that covers n, walked until it lands below n (cycle walking
    keeps it a bijection of 0 … n-1; at most a 4× larger domain, so about 2 walks on average)."""

    ROUNDS = 6

    def __init__(self, n: int, rng: np.random.Generator):
        self.n = n
        bits = max(2, (n - 1).bit_length())
        self.half = (bits + 1) // 2
        self.mask = np.uint64((1 << self.half) - 1)
        self.keys = rng.integers(0, 1 << 63, size=self.ROUNDS, dtype=np.uint64)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = self._encrypt(np.asarray(x, np.uint64))
        outside = y >= self.n
        while outside.any():
            y[outside] = self._encrypt(y[outside])
            outside = y >= self.n
        return y.astype(np.int64)

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        shift = np.uint64(self.half)
        left, right = x >> shift, x & self.mask
        for key in self.keys:
            left, right = right, left ^ (_mix(right ^ key) & self.mask)
        return (left << shift) | right


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every output bit depends on every input bit (uint64 wraps)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class Mixer:
    """The data order of a run as a pure function of the global step (see the module doc).

    `step` is 0-based: `batch(step)` is the batch of the update that takes the run from `step` to
    `step + 1`; a phase covers steps [start_step, end_step). Memory and time per batch do not grow
    with the run: nothing of the size of a phase or a corpus is materialised.
    """

    ORDERS_KEPT = 64  # epoch permutations' keys kept (a few bytes each)

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
        self._interleaves = [
            _Interleave(list(counts), np.random.default_rng(
                [_seed_word(self.seed), _seed_word(phase["index"])]))
            for phase, counts in zip(self.phases, self._counts)]
        self._orders: dict[tuple[str, int], _Permutation] = {}

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
        first = (step - self._starts[phase]) * self.batch_size
        language, own = self._interleaves[phase].deal(
            np.arange(first, first + self.batch_size, dtype=np.int64))
        # rows in an order drawn from (seed, step), so no row position is tied to a language;
        # each language's draws stay in increasing order along the rows (epochs stay in order)
        order = np.random.default_rng([_seed_word(self.seed), step]).permutation(self.batch_size)
        language, own = language[order], own[order]
        for i in np.unique(language):
            mine = np.flatnonzero(language == i)
            own[mine] = np.sort(own[mine])
        draw = self._before[phase][language] + own  # counted over the whole run
        out = np.empty((self.batch_size, self.sequence + 1), dtype=np.int64)
        codes = [self.codes[i] for i in language]
        for i in np.unique(language):
            code, mine = self.codes[i], np.flatnonzero(language == i)
            for r, row in zip(mine, self._rows_of(code, draw[mine])):
                out[r] = self.data[code].sequence_ids(int(row))
        return out, codes

    def tokens_seen(self, step: int) -> dict[str, int]:
        """Tokens (sequence per row) of each language in the batches of steps 0 … step-1."""
        if step == self.total_steps:
            sequences = self._before[-1]
        else:
            phase = self._phase_at(step, allow_end=True)
            slots = (step - self._starts[phase]) * self.batch_size
            interleave = self._interleaves[phase]
            sequences = [int(before) + interleave.seen(i, slots)
                         for i, before in enumerate(self._before[phase])]
        return {code: int(n) * self.sequence for code, n in zip(self.codes, sequences)}

    def _phase_at(self, step: int, allow_end: bool) -> int:
        if not 0 <= step < self.total_steps + (1 if allow_end else 0):
            raise IndexError(f"step {step} is outside the plan's steps 0–{self.total_steps - 1}")
        # the last phase starting at or before `step` (empty phases are skipped by this choice)
        return int(np.searchsorted(self._starts, step, side="right")) - 1

    def _rows_of(self, code: str, draws: np.ndarray) -> np.ndarray:
        """The data rows of a language's draws: draw k is row order_e(k mod n), e = k div n."""
        epoch, position = np.divmod(draws, self.data[code].n_sequences)
        rows = np.empty(len(draws), np.int64)
        for e in np.unique(epoch):
            mine = epoch == e
            rows[mine] = self._epoch_order(code, int(e))(position[mine])
        return rows

    def _epoch_order(self, code: str, epoch: int) -> _Permutation:
        key = (code, epoch)
        if key not in self._orders:
            if len(self._orders) >= self.ORDERS_KEPT:
                self._orders.pop(next(iter(self._orders)))
            rng = np.random.default_rng([_seed_word(self.seed), _seed_word(code), epoch])
            self._orders[key] = _Permutation(self.data[code].n_sequences, rng)
        return self._orders[key]


def _language_codes(phases: list[Mapping]) -> list[str]:
    codes: dict[str, None] = {}
    for phase in phases:
        for share in phase["shares"]:
            codes.setdefault(share["code"], None)
    return list(codes)


# ------------------------------------------------------------------------------------ evaluation

def eval_batches(data: PackedData, batch: int, max_batches: int) -> list[np.ndarray]:
    """The first min(n_sequences, batch × max_batches) rows in order, in batches: views of the
    memory-mapped rows (int32), read when evaluated (GENBA's 50 batches of 480 rows of 8,193
    ids would be 1.6 GB per language in every rank's memory as int64 copies).

    The same rows at every evaluation, so per-language validation losses are comparable across
    steps and runs; the last batch may be smaller.
    """
    if batch < 1 or max_batches < 1:
        raise ValueError("batch and max_batches must be positive")
    rows = min(data.n_sequences, batch * max_batches)
    return [data.array[start:min(start + batch, rows)] for start in range(0, rows, batch)]


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
           "eval_batches", "cache_key", "is_saved_dataset"]
