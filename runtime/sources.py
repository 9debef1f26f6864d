"""Data sources: the files a spec's patterns name, and their texts.

`resolve_sources` expands a language's patterns (relative to the project) into files, in pattern
order, each glob sorted; a pattern that matches nothing is an error. `pieces` cuts them (jsonl/json,
parquet, plain text one document per line, optionally compressed, or a directory written by
`datasets.Dataset.save_to_disk`) into parts that processes read side by side, and `read_texts`
reads a part's texts, in order. The stage step, the tokenizer trainer, the local data preparation
and preflight all use these, so every way of running an experiment reads the same files.

pyarrow and datasets are imported only inside the functions that read: importing this is light.
"""

from __future__ import annotations

import contextlib
import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from genbac.errors import UserError

# File suffixes (before an optional compression suffix) and how their texts are read.
LOADERS = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".parquet": "parquet",
           ".txt": "text", ".text": "text"}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")
SAVED = "saved"  # a directory written by save_to_disk


class DataError(UserError):
    """A problem with the data or the tokenizer that the user can fix; the message says how."""


# ---------------------------------------------------------------------------------------- sources

def resolve_sources(patterns: list[str], project_dir: Path) -> list[Path]:
    """The files (and saved datasets) that `patterns` name, in pattern order, each glob sorted.

    Relative patterns start at `project_dir`. A pattern that matches nothing is an error, so a typo
    never silently trains on less data.
    """
    project_dir = Path(project_dir).resolve()
    found: dict[Path, None] = {}  # ordered set: a file named by two patterns is read once
    for pattern in patterns:
        for path in _expand(pattern, project_dir):
            found.setdefault(path, None)
    return list(found)


def _expand(pattern: str, project_dir: Path) -> list[Path]:
    if glob.has_magic(pattern):
        matches = glob.glob(pattern, root_dir=project_dir, recursive=True)
        paths = [(project_dir / m).resolve() for m in sorted(matches)]
        # A glob like data/* may also match unrelated folders; keep what can be read.
        paths = [p for p in paths if p.is_file() or is_saved_dataset(p)]
    else:
        path = (project_dir / pattern).resolve()
        paths = [path] if path.exists() else []
        if path.is_dir() and not is_saved_dataset(path):
            raise DataError(f"data source {pattern!r} is a directory ({path}) but not a dataset "
                            "saved with save_to_disk; name its files, e.g. "
                            f"{pattern.rstrip('/')}/*.jsonl")
    if not paths:
        raise DataError(f"data source {pattern!r} matches no file in {project_dir}")
    for path in paths:
        loader_for(path)  # an unreadable kind of file is reported now, not after tokenizing others
    return paths


def is_saved_dataset(path: Path) -> bool:
    """A directory written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return path.is_dir() and ((path / "state.json").is_file()
                              or (path / "dataset_dict.json").is_file())


def loader_for(path: Path) -> str:
    """The `datasets` builder for a source ("json", "parquet", "text") or SAVED."""
    if is_saved_dataset(path):
        return SAVED
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in LOADERS:
        return LOADERS[suffixes[-1]]
    known = ", ".join(sorted(LOADERS))
    raise DataError(f"{path}: unknown kind of data file (readable: {known}, optionally "
                    "compressed, or a directory saved with save_to_disk)")


def source_fingerprint(path: Path) -> list:
    """(path, size, mtime_ns) of a file, or of every file inside a saved dataset."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def source_size(path: Path) -> int:
    return sum(size for _, size, _ in source_fingerprint(path))


# ---------------------------------------------------------------------------------------- reading
#
# A source is read as pieces: contiguous parts that one process reads and tokenises, in order, so
# that the texts of all pieces one after the other are the texts of the sources, whatever the
# number of pieces. Line files (JSON lines, plain text, gzip/bz2/xz) are read by the standard
# library alone, so that a tokenising process reading them never starts a thread; parquet, zstd
# and saved datasets by pyarrow. No copy of the texts is written anywhere, and memory stays
# bounded by a block.

PIECE_BYTES = 64 * 2**20  # most bytes of a source one piece holds
MIN_PIECE_BYTES = 256 * 2**10  # fewer bytes are not worth a piece of their own (~50 ms of work)
# Pieces are handed out as processes free up. Each is this fraction of what remains per process
# (guided scheduling): large pieces first, small ones at the end, so that processes running at
# different speeds (vCPUs differ by 5-10%) finish together instead of one idling for a piece.
GUIDED = 4
BLOCK_BYTES = 4 * 2**20  # line files are parsed in blocks of about this many bytes
SAVED_BLOCK_ROWS = 10_000  # rows of a saved dataset or parquet file taken at a time
JSON_ARRAY = "json-array"  # a .json file holding one array of objects (read whole)


@dataclass(frozen=True)
class Piece:
    """A part of one source: bytes [start, stop) of an uncompressed line file (whole lines), row
    groups [start, stop) of a parquet file, rows [start, stop) of a saved dataset, or a whole file
    (stop None) where it cannot be cut (compressed, or one JSON array). `size` is its share of
    the source's bytes, for progress."""

    path: Path
    loader: str
    start: int = 0
    stop: int | None = None
    size: int = 0


def pieces(sources: list[Path], split: str = "train", processes: int = 1) -> list[Piece]:
    """The sources cut into pieces, in source order, each 1/GUIDED of the bytes left per process
    when it starts, within [MIN_PIECE_BYTES, PIECE_BYTES]. A file's kind and (for parquet and
    saved datasets) its text column are checked here, before anything is tokenised."""
    if not sources:
        raise DataError("no data sources given")
    sizes = [source_size(path) for path in sources]
    left = sum(sizes)  # bytes from the start of the current source to the end of the last
    found: list[Piece] = []
    for path, size in zip(sources, sizes):
        def target(offset: int, left: int = left) -> int:
            share = (left - offset) // (max(1, processes) * GUIDED)
            return max(MIN_PIECE_BYTES, min(PIECE_BYTES, share))

        found += _pieces_of(path, loader_for(path), target, split)
        left -= size
    return found


def read_texts(piece: Piece, text_key: str = "text", split: str = "train"
               ) -> Iterator[tuple[list[str], int]]:
    """The texts of a piece in order, a block at a time, with the bytes of the source each block
    read. Plain-text files have one document per line ("\\n" or "\\r\\n") and no text key. Every
    problem is a DataError naming the file (and the line of a line file)."""
    if piece.loader == SAVED:
        yield from _saved_texts(piece, text_key, split)
    elif piece.loader == "parquet":
        yield from _parquet_texts(piece, text_key)
    elif piece.loader == JSON_ARRAY:
        yield from _json_array_texts(piece, text_key)
    else:
        parse = _json_block if piece.loader == "json" else _text_block
        for block, offset in _line_blocks(piece):
            yield parse(block, piece, offset, text_key), len(block)


def iter_texts(sources: list[Path], text_key: str = "text", split: str = "train"
               ) -> Iterator[list[str]]:
    """Every non-empty text of the sources, in order, in batches (one process)."""
    for piece in pieces(sources, split):
        for texts, _ in read_texts(piece, text_key, split):
            texts = [text for text in texts if text]
            if texts:
                yield texts


# --------------------------------------------------------------------------- cutting into pieces

def _pieces_of(path: Path, loader: str, target: Callable[[int], int], split: str
               ) -> list[Piece]:
    """`path` cut into pieces; `target(offset)` is the size wanted for a piece starting at byte
    `offset` of the source."""
    if loader == SAVED:
        rows = len(_open_saved(path, split))
        size = source_size(path)
        return _even(path, loader, rows, -(-size // target(0)), size)
    if loader == "parquet":
        return _parquet_pieces(path, target)
    size = path.stat().st_size
    if _compression(path):
        return [Piece(path, loader, size=size)]
    if loader == "json" and _first_byte(path) == b"[":
        return [Piece(path, JSON_ARRAY, size=size)]
    # Cut about `target` bytes after the last cut, each cut moved to the start of the next line.
    cuts = [0]
    with open(path, "rb") as handle:
        while (guess := cuts[-1] + target(cuts[-1])) < size:
            handle.seek(guess - 1)
            handle.readline()  # to the end of the line holding byte guess - 1
            if handle.tell() >= size:
                break
            cuts.append(handle.tell())
    cuts.append(size)
    return [Piece(path, loader, a, b, b - a) for a, b in zip(cuts, cuts[1:])]


def _even(path: Path, loader: str, rows: int, parts: int, size: int) -> list[Piece]:
    parts = max(1, min(parts, rows))
    cuts = [rows * i // parts for i in range(parts + 1)]
    return [Piece(path, loader, a, b, size * (b - a) // max(rows, 1))
            for a, b in zip(cuts, cuts[1:])]


def _parquet_pieces(path: Path, target: Callable[[int], int]) -> list[Piece]:
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(path).metadata
    except Exception as error:  # pyarrow raises several kinds for a file that is not parquet
        raise DataError(f"{path}: could not be read as parquet: {short_error(error)}") from None
    found, start, size, offset = [], 0, 0, 0
    for group in range(metadata.num_row_groups):
        size += metadata.row_group(group).total_byte_size
        if size >= target(offset) or group == metadata.num_row_groups - 1:
            found.append(Piece(path, "parquet", start, group + 1, size))
            start, offset, size = group + 1, offset + size, 0
    return found or [Piece(path, "parquet", 0, 0, 0)]


def _compression(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return suffix if suffix in COMPRESSIONS else None


def _first_byte(path: Path) -> bytes:
    with open(path, "rb") as handle:
        while chunk := handle.read(4096):
            stripped = chunk.lstrip()
            if stripped:
                return stripped[:1]
    return b""


# ------------------------------------------------------------------------------------ line files

def _open_stream(path: Path) -> BinaryIO:
    """The (decompressed) bytes of a file."""
    compression = _compression(path)
    if compression == ".xz":
        import lzma
        return lzma.open(path, "rb")
    if compression is None:
        return open(path, "rb")
    if compression == ".gz":  # the standard library's where it has one: no threads (see above)
        import gzip
        return gzip.open(path, "rb")
    if compression == ".bz2":
        import bz2
        return bz2.open(path, "rb")
    import pyarrow as pa
    return pa.input_stream(str(path), compression="zstd")


def _line_blocks(piece: Piece) -> Iterator[tuple[bytes, int]]:
    """Blocks of whole lines of the piece, each with the offset of its first byte in the (decompressed)
    file. A compressed file that is not what its suffix says is reported, not read as garbage."""
    try:
        with _open_stream(piece.path) as stream:
            if piece.start:
                stream.seek(piece.start)
            left = None if piece.stop is None else piece.stop - piece.start
            offset, carry = piece.start, b""
            while left is None or left > 0:
                chunk = stream.read(BLOCK_BYTES if left is None else min(BLOCK_BYTES, left))
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                block = carry + chunk
                end = block.rfind(b"\n") + 1
                if end == 0:  # a line longer than a block: read on
                    carry = block
                    continue
                yield block[:end], offset
                offset += end
                carry = block[end:]
            if carry:
                yield carry, offset
    except (OSError, EOFError, ValueError) as error:  # gzip/lzma/arrow for a corrupt stream
        raise DataError(f"{piece.path}: could not be read: {short_error(error)}") from None


def _json_block(block: bytes, piece: Piece, offset: int, key: str) -> list[str]:
    """The `key` field of every line of a block of JSON lines (blank lines skipped). Python's
    json module, not pyarrow's reader: pyarrow starts threads, and a process that ever had a
    second thread loses glibc malloc's single-thread fast path, which the tokenizer leans on
    (runtime/piece_tokenizer.py). Anything wrong is found again line by line by _json_problem."""
    try:
        text = block.decode("utf-8")
        if offset == 0:
            text = text.removeprefix("\ufeff")  # a byte order mark at the start of the file
        rows = _one_value_a_line(text)
        if rows is None:  # blank lines, spaces around a value, or an error: json's own reading
            # split("\n"), not splitlines(): U+2028 and the like may stand inside a JSON string
            rows = [json.loads(line) for line in text.split("\n") if line and not line.isspace()]
        texts = [row[key] for row in rows]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise _json_problem(block, piece, offset, key) from None
    # a lone surrogate can only come from a \uD8xx-\uDFxx escape
    if not all(type(t) is str for t in texts) or (
            ("\\ud" in text or "\\uD" in text) and any(map(_lone_surrogate, texts))):
        raise _json_problem(block, piece, offset, key)
    return texts


_SCAN = json.JSONDecoder().scan_once  # (value, end) of the JSON value at an index of a str


def _one_value_a_line(text: str) -> list[Any] | None:
    """The rows of a block that is exactly one JSON value a line, each followed by "\n" or "\r\n"
    (the last may end the block), as json.loads would read each line; None for any other block.

    The common case, read with one call of json's scanner a row, a third of the time of
    json.loads a line (its per-call checks and a split of the block; BENCHMARKS.md). A value that
    spans lines (an object printed over several) would scan as one row: counting the newlines
    finds it, and the line-by-line reading then reports its first line."""
    rows: list[Any] = []
    append, scan, end, at = rows.append, _SCAN, len(text), 0
    try:
        while at < end:
            row, at = scan(text, at)
            append(row)
            if at < end:
                if text[at] == "\r":
                    at += 1
                if text[at] != "\n":
                    return None
                at += 1
    except (StopIteration, ValueError, IndexError, RecursionError):
        return None
    return rows if text.count("\n") == len(rows) - (not text.endswith("\n")) else None


def _lone_surrogate(text: str) -> str | None:
    """The first UTF-16 surrogate of `text` that has no partner (JSON can spell one, no tokenizer
    can read it), as \\uXXXX."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"\\u{ord(text[error.start]):04x}"
    return None


def _json_problem(block: bytes, piece: Piece, offset: int, key: str) -> DataError:
    """The first line of a block that could not be read, and what is wrong with it, in words."""
    position = 0
    for line in block.split(b"\n"):
        where, position = offset + position, position + len(line) + 1
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:  # JSONDecodeError, or a UnicodeDecodeError
            problem = f"not valid JSON ({getattr(error, 'msg', short_error(error))})"
        except RecursionError:
            problem = "not valid JSON here (nested too deeply to read)"
        else:
            problem = _row_problem(row, key)
        if problem:
            return DataError(f"{piece.path}:{_line_number(piece.path, where)}: {problem}")
    return DataError(f"{piece.path}: could not be read as JSON lines near byte {offset:,}")


def _row_problem(row: Any, key: str) -> str | None:
    if not isinstance(row, dict):
        return f"a row must be a JSON object with a {key!r} field, not {_json_kind(row)}"
    if key not in row:
        fields = ", ".join(repr(name) for name in row) or "none"
        return (f"this row has no {key!r} field (its fields: {fields}); every row needs its "
                f"document's text under {key!r}")
    if not isinstance(row[key], str):
        return f"its {key!r} field holds {_json_kind(row[key])}, not text"
    surrogate = _lone_surrogate(row[key])
    if surrogate:
        return (f"its {key!r} field holds {surrogate}, half of a UTF-16 surrogate pair without "
                "the other half, which is not text: fix or drop this row")
    return None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "true/false", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def _text_block(block: bytes, piece: Piece, offset: int, key: str) -> list[str]:
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as error:
        line = _line_number(piece.path, offset + error.start)
        raise DataError(f"{piece.path}:{line}: not UTF-8 text (byte "
                        f"{block[error.start]:#04x}); save the file as UTF-8") from None
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines and not lines[-1]:
        lines.pop()  # after the last newline
    return lines


def _line_number(path: Path, offset: int) -> int:
    """The line holding byte `offset` of the (decompressed) file: counted only for an error."""
    newlines, left = 0, offset
    with _open_stream(path) as stream:
        while left > 0 and (chunk := stream.read(min(BLOCK_BYTES, left))):
            newlines += chunk.count(b"\n")
            left -= len(chunk)
    return newlines + 1


def _json_array_texts(piece: Piece, key: str) -> Iterator[tuple[list[str], int]]:
    try:
        rows = json.loads(piece.path.read_bytes())
    except ValueError as error:
        raise DataError(f"{piece.path}: not valid JSON: {short_error(error)}") from None
    if not isinstance(rows, list):
        raise DataError(f"{piece.path}: a .json source holds one JSON object per line or one "
                        f"array of objects, not {_json_kind(rows)}")
    for index, row in enumerate(rows):
        problem = _row_problem(row, key)
        if problem:
            raise DataError(f"{piece.path}: item {index} of the array: {problem}")
    yield [row[key] for row in rows], piece.size


# ------------------------------------------------------------------ parquet and saved datasets

def _parquet_texts(piece: Piece, key: str) -> Iterator[tuple[list[str], int]]:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(piece.path)
    _check_column(piece.path, file.schema_arrow, key)
    groups = list(range(piece.start, piece.stop or 0))
    if not groups:
        return
    row = sum(file.metadata.row_group(g).num_rows for g in range(piece.start))
    share = piece.size // max(1, sum(file.metadata.row_group(g).num_rows for g in groups))
    for batch in file.iter_batches(SAVED_BLOCK_ROWS, row_groups=groups, columns=[key]):
        yield _column_texts(batch.column(0), piece.path, row, key), share * batch.num_rows
        row += batch.num_rows


def _saved_texts(piece: Piece, key: str, split: str) -> Iterator[tuple[list[str], int]]:
    dataset = _open_saved(piece.path, split)
    _check_column(piece.path, dataset.features.arrow_schema, key)
    table = dataset.select_columns([key]).with_format("arrow")
    share = piece.size // max(1, (piece.stop or 0) - piece.start)
    for start in range(piece.start, piece.stop or 0, SAVED_BLOCK_ROWS):
        stop = min(start + SAVED_BLOCK_ROWS, piece.stop or 0)
        yield (_column_texts(table[start:stop].column(0), piece.path, start, key),
               share * (stop - start))


def _open_saved(path: Path, split: str):
    import datasets

    with quiet_datasets():
        try:
            saved = datasets.load_from_disk(str(path))
        except Exception as error:  # a damaged directory: datasets raises many kinds
            raise DataError(f"{path}: could not be read as a saved dataset: "
                            f"{short_error(error)}") from None
    if isinstance(saved, datasets.DatasetDict):
        if split not in saved:
            raise DataError(f"{path}: the saved dataset has no split {split!r} "
                            f"(it has {', '.join(saved)})")
        saved = saved[split]
    return saved


def _check_column(path: Path, schema, key: str) -> None:
    import pyarrow as pa

    if key not in schema.names:
        fields = ", ".join(repr(name) for name in schema.names) or "none"
        raise DataError(f"{path}: its rows have no {key!r} field (its fields: {fields}); every "
                        f"row needs its document's text under {key!r}")
    kind = schema.field(key).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(f"{path}: its {key!r} field holds {kind}, not text")


def _column_texts(column, path: Path, first_row: int, key: str) -> list[str]:
    if column.null_count:
        import pyarrow.compute as pc

        row = first_row + pc.index(column.is_null(), True).as_py()
        raise DataError(f"{path}: row {row:,} has no text (its {key!r} is null)")
    return column.to_pylist()


def short_error(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No progress bars from `datasets` while we work (the caller's `log` reports progress)."""
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()
