"""Tokenising pieces of the sources (runtime/sources.py): each non-empty document's ids followed by
EOS, as int32, in this process or in fresh processes started for it.

Why fresh processes, not forks of genbac's: glibc's malloc keeps a lock-free fast path only in a
process that has never started a second thread, and a byte-level BPE allocates for every token.
genbac's own process has threads (numpy's OpenBLAS, pyarrow, torch, MLflow), and a fork keeps
that mode. A process started by `python -c` (LAUNCH, which calls main here) imports the standard
library, `tokenizers` and genbac's light reading modules only, so it stays single-threaded while
it reads line files (JSON lines, text; parquet, zstd and saved datasets bring pyarrow's threads
in). Measured in BENCHMARKS.md ("Data preparation").

How the parent talks to one (JSON lines over its stdin and stdout): first the Job, then one piece
a line, each with the file its ids go to; an empty line or the end of stdin ends it. It answers a
piece with {"index", "documents", "tokens"} once that file is complete, and meanwhile sends
{"progress": line}; {"error": message} is a DataError (a file:line to fix), {"crash": traceback}
a bug. It dies with its parent, and leaves Ctrl-C to it.

This module imports no numpy: ids travel as `array('i')`.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import traceback
from array import array
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .lifetime import die_with_parent, how_it_ended
from .progress import PrepProgress
from .sources import DataError, Piece, read_texts

TOKENIZE_BATCH = 1000  # documents per tokenizer call: large enough for its thread pool
assert array("i").itemsize == 4, "ids are int32"


@dataclass
class PieceTokenizer:
    """Tokenises pieces: `tokenizer` is a bare `tokenizers.Tokenizer` (its Rust batch encoder is
    what the benchmark times against; add_special_tokens=False adds no template tokens)."""

    tokenizer: Any
    eos_id: int
    text_key: str
    split: str
    progress: PrepProgress | None = None
    rank: int | None = None  # which of several processes runs this copy (for progress)

    def ids(self, piece: Piece) -> Iterator[tuple[array, int]]:
        """The piece's ids in chunks (a tokenizer batch each), with the documents of each."""
        encode_batch = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        # Read and encode in turn, on one thread: a reader thread beside the encoder cost more
        # than the read (BENCHMARKS.md).
        for texts, nbytes in read_texts(piece, self.text_key, self.split):
            texts = [text for text in texts if text]
            tokens = 0
            for first in range(0, len(texts), TOKENIZE_BATCH):
                encoded = encode_batch(texts[first:first + TOKENIZE_BATCH],
                                       add_special_tokens=False)
                chunk = array("i")
                for encoding in encoded:
                    chunk.fromlist(encoding.ids)  # half the time of extend(): 12 ns an id
                    chunk.append(self.eos_id)
                documents = len(encoded)
                # Free this batch's encodings (~14 KB a document) before the next is encoded:
                # kept alive across the yield, they slowed the next encode (BENCHMARKS.md).
                del encoded
                yield chunk, documents
                tokens += len(chunk)
            if self.progress is not None:
                self.progress.update(self.rank, len(texts), nbytes, tokens)

    def to_file(self, piece: Piece, file: Path) -> tuple[int, int]:
        """The piece's ids into `file`, raw int32; (documents, tokens)."""
        documents = tokens = 0
        with open(file, "wb") as out:
            for chunk, count in self.ids(piece):
                out.write(chunk)
                tokens += len(chunk)
                documents += count
        return documents, tokens


# -------------------------------------------------------------------------- the parent's side

@dataclass(frozen=True)
class Job:
    """What every tokenising process of one prepare_language call is told first."""

    tokenizer_file: str
    eos_id: int
    text_key: str
    split: str
    what: str  # e.g. "de/train", for progress lines
    processes: int


# How a tokenising process starts: `-c`, not `-m`, because `-m` puts the working directory first
# on sys.path, where the user's project might hold a module that stands in for one of ours; with
# `-c` it is sys.path[0], taken off before anything is imported.
LAUNCH = ("import sys; del sys.path[0]; "
          f"from {__name__} import main; main(int(sys.argv[1]))")


class TokenizingProcesses:
    """`processes` fresh tokenising processes, started at once (their interpreters start while
    the caller goes on); `begin` gives them the job, then `results` hands each the next piece as
    it frees up and yields every piece's (ids file, documents), in piece order."""

    def __init__(self, processes: int, progress: Callable[[str], Any]):
        self.progress = progress
        self.scratch = Path()
        self.messages: queue.Queue = queue.Queue()
        env = dict(os.environ)
        if processes > 1:  # one thread each: they share the cores
            env.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.workers: list[subprocess.Popen] = []
        try:
            for _ in range(processes):
                worker = subprocess.Popen(
                    [sys.executable, "-c", LAUNCH, str(os.getpid())],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
                self.workers.append(worker)
                threading.Thread(target=self._listen, args=(worker,), daemon=True).start()
        except BaseException:
            self.close()
            raise

    def begin(self, job: Job, scratch: Path) -> None:
        """The job, to every process; each piece's ids go to a file in `scratch`."""
        self.scratch = Path(scratch).resolve()
        for rank, worker in enumerate(self.workers):
            try:
                self._send(worker, {**asdict(job), "rank": rank})
            except BrokenPipeError:  # it ended before it could take the job
                raise RuntimeError(f"a tokenising process (pid {worker.pid}) "
                                   f"{how_it_ended(worker.wait())} as it started") from None

    def _listen(self, worker: subprocess.Popen) -> None:
        """Every message of one worker onto the queue; None at its end (always: the parent
        waits on it). A line that is not a message (a library's print) is passed on as said."""
        try:
            for line in worker.stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    message = {"progress": line.rstrip("\n")}
                self.messages.put((worker, message))
        finally:
            self.messages.put((worker, None))

    @staticmethod
    def _send(worker: subprocess.Popen, message: dict | None) -> None:
        worker.stdin.write("\n" if message is None else json.dumps(message) + "\n")
        worker.stdin.flush()

    def results(self, found: list[Piece]) -> Iterator[tuple[Path, int]]:
        todo = iter(enumerate(found))
        working: dict[Any, tuple[int, Piece]] = {}
        done: dict[int, tuple[Path, int]] = {}

        def give(worker) -> None:
            task = next(todo, None)
            if task is None:
                self._send(worker, None)
                return
            index, piece = task
            working[worker] = task
            try:
                self._send(worker, {"index": index, "file": str(self._file(index)),
                                    "piece": {**asdict(piece), "path": str(piece.path)}})
            except BrokenPipeError:  # it died after its last answer
                raise self._death(worker, task) from None

        for worker in self.workers:
            give(worker)
        for wanted in range(len(found)):
            while wanted not in done:
                worker, message = self.messages.get()
                if message is None:  # its end: after its last piece, or a death
                    if worker in working:
                        raise self._death(worker, working[worker])
                    continue
                if "progress" in message:
                    self.progress(message["progress"])
                elif "error" in message:
                    raise DataError(message["error"])
                elif "crash" in message:
                    raise RuntimeError(f"a tokenising process failed:\n{message['crash']}")
                else:
                    index = message["index"]
                    del working[worker]
                    done[index] = (self._file(index), message["documents"])
                    give(worker)
            yield done.pop(wanted)

    def _file(self, index: int) -> Path:
        return self.scratch / f"piece-{index:06d}.ids"

    def _death(self, worker: subprocess.Popen, task: tuple[int, Piece]) -> Exception:
        """The error for a worker that ended without answering."""
        code = worker.wait()
        hint = " (out of memory?)" if code == -signal.SIGKILL else ""
        return DataError(f"a tokenising process (pid {worker.pid}) {how_it_ended(code)} while "
                         f"tokenising {task[1].path}{hint}")

    def close(self) -> None:
        """Stop them all (their files go with the scratch directory)."""
        for worker in self.workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
            for pipe in (worker.stdin, worker.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass

    def __enter__(self) -> "TokenizingProcesses":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -------------------------------------------------------------------------- the process's side

def single_threaded() -> bool | None:
    """Whether glibc still takes its single-thread paths in this process (None: not glibc)."""
    import ctypes

    try:
        return ctypes.c_char.in_dll(ctypes.CDLL(None), "__libc_single_threaded").value == b"\x01"
    except (OSError, ValueError, AttributeError):
        return None


def main(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides about Ctrl-C
    die_with_parent(signal.SIGKILL, parent)
    stdin, stdout = sys.stdin, sys.stdout

    def send(message: dict) -> None:
        stdout.write(json.dumps(message) + "\n")
        stdout.flush()

    try:
        from tokenizers import Tokenizer

        first = stdin.readline()
        if not first.strip():  # ended before it was given a job (the data was found cached)
            return
        job = json.loads(first)
        rank = job.pop("rank")
        job = Job(**job)
        progress = PrepProgress(job.what, job.processes,
                                write=lambda line: send({"progress": line}))
        work = PieceTokenizer(Tokenizer.from_file(job.tokenizer_file), job.eos_id, job.text_key,
                              job.split, progress, rank)
        for line in stdin:
            if not line.strip():
                return
            task = json.loads(line)
            piece = Piece(**{**task["piece"], "path": Path(task["piece"]["path"])})
            documents, tokens = work.to_file(piece, Path(task["file"]))
            send({"index": task["index"], "documents": documents, "tokens": tokens,
                  "single_threaded": single_threaded()})
    except DataError as error:
        send({"error": str(error)})
    except Exception:
        send({"crash": traceback.format_exc()})


if __name__ == "__main__":
    main(int(sys.argv[1]))
