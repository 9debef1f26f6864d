"""safetensors as a file layout: read headers, plan output files, stream byte ranges between them.

A safetensors file is an 8-byte little-endian header length, a JSON header
`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}` and then the raw
tensor bytes, offsets relative to the end of the header. Nothing here parses tensor data except
`mean_row`: every other tensor is moved as bytes, the way `cp` moves a file, so the memory used is
one bounded buffer whatever the tensor sizes (and none at all where the kernel's `copy_file_range`
copies file to file).

Used by `runtime/grow.py`; format problems raise `CheckpointFormatError` with a message for people.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Union

# Bytes per element of every safetensors dtype we may meet in a Llama checkpoint.
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")

# A real header is kilobytes; anything this large is a corrupt length field, not a header to read.
HEADER_LIMIT = 100 * 1024**2
# The fallback copy path holds one buffer of this size (the memory bound of the whole surgery).
CHUNK_BYTES = 16 * 1024**2
# copy_file_range moves data inside the kernel, so its chunks cost no memory: fewer, larger calls.
KERNEL_CHUNK_BYTES = 1024**3
# Zeros and repeated rows are written from a small block: memory stays at the one copy buffer.
SMALL_BLOCK_BYTES = 1024**2
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


class CheckpointFormatError(Exception):
    """A checkpoint file that is missing, unreadable, truncated or not safetensors."""


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor's bytes live: absolute offsets in a safetensors file."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


# ---------------------------------------------------------------------------------------------
# Reading


def read_header(path: Path) -> dict[str, StoredTensor]:
    """Every tensor of one safetensors file, validated against the file's actual size."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise CheckpointFormatError(
                    f"{path} is truncated: {size} bytes, too short for a safetensors header")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > HEADER_LIMIT or 8 + header_len > size:
                raise CheckpointFormatError(
                    f"{path} has an unreadable safetensors header: it claims {header_len} header "
                    f"bytes but the file has {size} bytes (truncated or not a safetensors file)")
            raw = f.read(header_len)
    except OSError as e:
        raise CheckpointFormatError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointFormatError(
            f"{path} has an unreadable safetensors header (not valid JSON: {e})") from e
    if not isinstance(header, dict):
        raise CheckpointFormatError(f"{path} has an unreadable safetensors header (not an object)")
    data_start = 8 + header_len
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensor = _stored_tensor(path, name, entry, data_start)
        if tensor.end > size:
            raise CheckpointFormatError(
                f"{path} is truncated: tensor {name} ends at byte {tensor.end} but the file has "
                f"{size} bytes")
        tensors[name] = tensor
    return tensors


def _stored_tensor(path: Path, name: str, entry: object, data_start: int) -> StoredTensor:
    try:
        dtype = entry["dtype"]
        shape = tuple(int(d) for d in entry["shape"])
        begin, end = (int(x) for x in entry["data_offsets"])
    except (TypeError, KeyError, ValueError) as e:
        raise CheckpointFormatError(
            f"{path}: the header entry for {name} is malformed ({e!r})") from e
    if dtype not in DTYPE_BYTES:
        raise CheckpointFormatError(f"{path}: tensor {name} has unsupported dtype {dtype}")
    expected = math.prod(shape) * DTYPE_BYTES[dtype]
    if begin < 0 or end - begin != expected:
        raise CheckpointFormatError(
            f"{path}: tensor {name} ({dtype}, shape {list(shape)}) should take {expected} bytes but "
            f"its data_offsets span {end - begin}")
    return StoredTensor(name, path, dtype, shape, data_start + begin, data_start + end)


def index_checkpoint(directory: Path) -> dict[str, StoredTensor]:
    """Every tensor of a Hugging Face checkpoint directory, sharded or single-file."""
    index_path = directory / INDEX_NAME
    if index_path.is_file():
        return _index_sharded(directory, index_path)
    single = directory / SINGLE_NAME
    if single.is_file():
        return read_header(single)
    raise CheckpointFormatError(
        f"{directory} has no safetensors weights: expected {SINGLE_NAME} or {INDEX_NAME} "
        "(convert .bin checkpoints with `save_pretrained(..., safe_serialization=True)`)")


def _index_sharded(directory: Path, index_path: Path) -> dict[str, StoredTensor]:
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointFormatError(f"{index_path} is not a valid safetensors index ({e})") from e
    tensors: dict[str, StoredTensor] = {}
    for shard_name in sorted(set(weight_map.values())):
        shard = directory / shard_name
        if not shard.is_file():
            raise CheckpointFormatError(f"{index_path} lists {shard_name}, which does not exist")
        for name, tensor in read_header(shard).items():
            if weight_map.get(name) == shard_name:
                tensors[name] = tensor
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise CheckpointFormatError(
            f"{index_path} lists {missing[0]} in {weight_map[missing[0]]}, but that file does not "
            f"contain it" + (f" ({len(missing) - 1} more missing)" if len(missing) > 1 else ""))
    return tensors


def mean_row(tensor: StoredTensor) -> bytes:
    """The mean of a 2-D tensor's rows, in its own dtype, read in chunks of rows (float64 sums)."""
    import torch  # only vocabulary extension needs arithmetic

    if tensor.dtype not in FLOAT_DTYPES or len(tensor.shape) != 2 or tensor.shape[0] == 0:
        raise CheckpointFormatError(
            f"cannot average the rows of {tensor.name} ({tensor.dtype}, shape {list(tensor.shape)})")
    torch_dtype = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
                   "BF16": torch.bfloat16}[tensor.dtype]
    rows, width = tensor.shape
    row_bytes = width * DTYPE_BYTES[tensor.dtype]
    rows_per_chunk = max(1, CHUNK_BYTES // row_bytes)
    total = torch.zeros(width, dtype=torch.float64)
    with open(tensor.file, "rb") as f:
        f.seek(tensor.start)
        for first in range(0, rows, rows_per_chunk):
            count = min(rows_per_chunk, rows - first)
            buffer = bytearray(count * row_bytes)
            if f.readinto(buffer) != len(buffer):
                raise CheckpointFormatError(f"{tensor.file} is truncated inside {tensor.name}")
            chunk = torch.frombuffer(buffer, dtype=torch_dtype).view(count, width)
            total += chunk.sum(dim=0, dtype=torch.float64)
            del chunk, buffer
    mean = (total / rows).to(torch_dtype)
    return mean.view(torch.uint8).numpy().tobytes()


# ---------------------------------------------------------------------------------------------
# Planning output files


@dataclass(frozen=True)
class CopyBytes:
    """`length` bytes from `file` at absolute offset `start`."""

    file: Path
    start: int
    length: int


@dataclass(frozen=True)
class Zeros:
    length: int


@dataclass(frozen=True)
class Repeat:
    """`data` written `times` times (a vocabulary extension's mean row)."""

    data: bytes
    times: int

    @property
    def length(self) -> int:
        return len(self.data) * self.times


Piece = Union[CopyBytes, Zeros, Repeat]


@dataclass(frozen=True)
class OutputTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    pieces: tuple[Piece, ...]

    @property
    def nbytes(self) -> int:
        return sum(p.length for p in self.pieces)


@dataclass(frozen=True)
class OutputShard:
    filename: str
    tensors: tuple[OutputTensor, ...]

    def header(self) -> bytes:
        """The 8-byte length and JSON header; padded with spaces so tensor data is 8-aligned."""
        entries: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for t in self.tensors:
            entries[t.name] = {"dtype": t.dtype, "shape": list(t.shape),
                               "data_offsets": [offset, offset + t.nbytes]}
            offset += t.nbytes
        text = json.dumps(entries, separators=(",", ":")).encode("utf-8")
        text += b" " * (-(8 + len(text)) % 8)
        return struct.pack("<Q", len(text)) + text

    @property
    def data_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def shard_filename(index: int, count: int) -> str:
    """Hugging Face's name for shard `index` (1-based) of `count`."""
    return f"model-{index:05d}-of-{count:05d}.safetensors"


def plan_shards(tensors: list[OutputTensor], shard_bytes: int) -> list[OutputShard]:
    """Greedy sharding in the given order; a tensor larger than `shard_bytes` gets a shard alone.

    Within a shard tensors are ordered by element size, widest first (stable), so every tensor
    starts at a multiple of its element size, as safetensors' own writer guarantees.
    """
    groups: list[list[OutputTensor]] = []
    size = 0
    for tensor in tensors:
        if not groups or (size + tensor.nbytes > shard_bytes and groups[-1]):
            groups.append([])
            size = 0
        groups[-1].append(tensor)
        size += tensor.nbytes
    count = len(groups)
    return [OutputShard(shard_filename(i + 1, count),
                        tuple(sorted(group, key=lambda t: -DTYPE_BYTES[t.dtype])))
            for i, group in enumerate(groups)]


def index_json(shards: list[OutputShard]) -> dict:
    """The Hugging Face `model.safetensors.index.json` for `shards`."""
    weight_map = {t.name: s.filename for s in shards for t in s.tensors}
    return {
        "metadata": {
            "total_size": sum(s.data_bytes for s in shards),
            "total_parameters": sum(math.prod(t.shape) for s in shards for t in s.tensors),
        },
        "weight_map": dict(sorted(weight_map.items())),
    }


# ---------------------------------------------------------------------------------------------
# Writing


class ByteStreamer:
    """Writes planned shards; source files stay open until `close`.

    Copies go through `os.copy_file_range` (kernel to kernel, no user-space buffer) and fall back
    to one reusable `CHUNK_BYTES` buffer where the kernel or filesystem cannot do that.
    """

    def __init__(self, *, kernel_copy: bool = True) -> None:
        self._sources: dict[Path, int] = {}
        self._kernel_copy = kernel_copy and hasattr(os, "copy_file_range")
        self._buffer: bytearray | None = None
        self._zeros: bytes | None = None

    def close(self) -> None:
        for fd in self._sources.values():
            os.close(fd)
        self._sources.clear()

    def __enter__(self) -> "ByteStreamer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write_shard(self, shard: OutputShard, path: Path) -> int:
        """Write one shard file; returns its size in bytes."""
        header = shard.header()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, header)
            for tensor in shard.tensors:
                for piece in tensor.pieces:
                    self._write_piece(piece, fd)
        finally:
            os.close(fd)
        expected = len(header) + shard.data_bytes
        actual = path.stat().st_size
        if actual != expected:  # a bug, not a user error: never publish a malformed shard
            raise RuntimeError(f"{path}: wrote {actual} bytes, planned {expected}")
        return actual

    def _write_piece(self, piece: Piece, fd: int) -> None:
        if isinstance(piece, CopyBytes):
            self._copy(piece, fd)
        elif isinstance(piece, Zeros):
            self._write_zeros(piece.length, fd)
        else:
            self._write_repeat(piece, fd)

    def _source(self, file: Path) -> int:
        if file not in self._sources:
            self._sources[file] = os.open(file, os.O_RDONLY)
        return self._sources[file]

    def _copy(self, piece: CopyBytes, fd: int) -> None:
        src = self._source(piece.file)
        offset, remaining = piece.start, piece.length
        while remaining:
            moved = self._kernel_copy_once(src, fd, min(remaining, KERNEL_CHUNK_BYTES), offset)
            if moved is None:
                moved = self._buffered_copy_once(src, fd, min(remaining, CHUNK_BYTES), offset)
            if moved == 0:
                raise CheckpointFormatError(
                    f"{piece.file} is truncated: expected data up to byte {piece.start + piece.length}"
                    f", the file ends at byte {offset}")
            offset += moved
            remaining -= moved

    def _kernel_copy_once(self, src: int, fd: int, count: int, offset: int) -> int | None:
        if not self._kernel_copy:
            return None
        try:
            return os.copy_file_range(src, fd, count, offset)
        except OSError:
            # EXDEV/ENOSYS/EINVAL/EOPNOTSUPP on some kernels and filesystems: use the buffer
            self._kernel_copy = False
            return None

    def _buffered_copy_once(self, src: int, fd: int, count: int, offset: int) -> int:
        if self._buffer is None:
            self._buffer = bytearray(CHUNK_BYTES)
        view = memoryview(self._buffer)[:count]
        got = os.preadv(src, [view], offset)
        _write_all(fd, view[:got])
        return got

    def _write_zeros(self, length: int, fd: int) -> None:
        if self._zeros is None:
            self._zeros = bytes(SMALL_BLOCK_BYTES)
        while length:
            count = min(length, len(self._zeros))
            _write_all(fd, memoryview(self._zeros)[:count])
            length -= count

    def _write_repeat(self, piece: Repeat, fd: int) -> None:
        per_block = max(1, SMALL_BLOCK_BYTES // len(piece.data))
        left = piece.times
        while left:
            count = min(left, per_block)
            _write_all(fd, piece.data * count)
            left -= count


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
