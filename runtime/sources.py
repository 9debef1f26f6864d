"""Data sources: the files a spec's patterns name, and their texts.

`resolve_sources` expands a language's patterns (relative to the project) into files, in pattern
order, each glob sorted; a pattern that matches nothing is an error. `load_texts` reads them
(jsonl/json, parquet, plain text one document per line, or a directory written by
`datasets.Dataset.save_to_disk`) into one `datasets.Dataset` with a "text" column. The stage step,
the tokenizer trainer, the local data preparation and preflight all use these, so every way of
running an experiment reads the same files.

datasets is imported only inside the functions that read sources: importing this module is light.
"""

from __future__ import annotations

import contextlib
import glob
from pathlib import Path
from typing import Iterator

from genbac.errors import UserError

# File suffixes (before an optional compression suffix) and the `datasets` builder that reads them.
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

def load_texts(sources: list[Path], text_key: str, work_dir: Path, split: str = "train",
               processes: int = 1):
    """One `datasets.Dataset` with a single non-null string column "text", rows in source order.
    With several `processes`, a group of several files is read by that many (each a contiguous
    run of the files; `datasets` keeps their order).

    Plain-text files have one document per line in a column that `datasets` names "text", whatever
    `text_key` says. Arrow files that `datasets` writes go to `work_dir`, never beside the sources.
    """
    import datasets

    if not sources:
        raise DataError("no data sources given")
    with quiet_datasets():
        parts = [_load_group(loader, paths, text_key, Path(work_dir), split, processes)
                 for loader, paths in _group_by_loader(sources)]
    if len(parts) == 1:
        return parts[0]
    if len({part.features["text"].dtype for part in parts}) > 1:  # string vs large_string
        parts = [part.cast_column("text", datasets.Value("large_string")) for part in parts]
    return datasets.concatenate_datasets(parts)


def _group_by_loader(sources: list[Path]) -> Iterator[tuple[str, list[Path]]]:
    # Consecutive files of one kind are read by one builder call (a glob of 1,000 jsonl files is
    # one load, not 1,000); saved datasets are read one by one.
    group: list[Path] = []
    group_loader = None
    for path in sources:
        loader = loader_for(path)
        if group and (loader != group_loader or loader == SAVED):
            yield group_loader, group
            group = []
        group, group_loader = group + [path], loader
    if group:
        yield group_loader, group


def _load_group(loader: str, paths: list[Path], text_key: str, work_dir: Path, split: str,
                processes: int = 1):
    key = "text" if loader == "text" else text_key
    try:
        dataset = _read(loader, paths, work_dir, split, processes)
    except DataError:
        raise
    except Exception as error:  # datasets/pyarrow raise many kinds for a malformed file
        if len(paths) > 1:
            _diagnose_each(loader, paths, key, work_dir, split)
        raise DataError(f"{_names(paths)}: could not be read as {loader}: {short_error(error)}") from None
    problem = _text_column_problem(dataset, key)
    if problem:
        if len(paths) > 1:
            _diagnose_each(loader, paths, key, work_dir, split)
        raise DataError(f"{_names(paths)}: {problem}")
    dataset = dataset.select_columns([key])
    return dataset.rename_column(key, "text") if key != "text" else dataset


def _read(loader: str, paths: list[Path], work_dir: Path, split: str, processes: int = 1):
    import datasets

    if loader != SAVED:
        processes = min(processes, len(paths))
        return datasets.load_dataset(loader, data_files=[str(p) for p in paths], split="train",
                                     cache_dir=str(work_dir / "hf"),
                                     num_proc=processes if processes > 1 else None)
    (path,) = paths
    saved = datasets.load_from_disk(str(path))
    if isinstance(saved, datasets.DatasetDict):
        if split not in saved:
            raise DataError(f"{path}: the saved dataset has no split {split!r} "
                            f"(it has {', '.join(saved)})")
        saved = saved[split]
    return saved


def _diagnose_each(loader: str, paths: list[Path], key: str, work_dir: Path, split: str) -> None:
    """Read the files of a failed group one by one to name the one at fault."""
    for path in paths:
        try:
            dataset = _read(loader, [path], work_dir, split)
        except DataError:
            raise
        except Exception as error:
            raise DataError(f"{path}: could not be read as {loader}: {short_error(error)}") from None
        problem = _text_column_problem(dataset, key)
        if problem:
            raise DataError(f"{path}: {problem}")


def _text_column_problem(dataset, key: str) -> str | None:
    if key not in dataset.column_names:
        fields = ", ".join(repr(c) for c in dataset.column_names) or "none"
        return f"its rows have no {key!r} field (fields: {fields}); set the text key"
    dtype = dataset.features[key].dtype if hasattr(dataset.features[key], "dtype") else None
    if dtype not in ("string", "large_string"):
        return f"its {key!r} field holds {dataset.features[key]}, not text"
    missing = dataset.data.column(key).null_count
    if missing:
        return f"{missing} of its {len(dataset)} rows have no {key!r} field"
    return None


def _names(paths: list[Path]) -> str:
    return str(paths[0]) if len(paths) == 1 else f"{paths[0]} (and {len(paths) - 1} more)"


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
