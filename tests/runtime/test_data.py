"""Data preparation and mixing, on the real example corpora with a really trained tokenizer."""

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genbac.compiler.compile import plan_spec
from genbac.runtime.data import (DataError, EvalSet, Mixer, PackedData, _Interleave, _Permutation,
                                 eval_batches, prepare_language, resolve_sources)
from genbac.runtime.tokenizer import load_tokenizer, train_bpe_tokenizer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DATA = EXAMPLES / "data"
SEQUENCE = 128


# ------------------------------------------------------------------------------------- fixtures



@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    return train_bpe_tokenizer(sorted(DATA.glob("*/train.jsonl")), 1024,
                               tmp_path_factory.mktemp("tokenizer") / "bpe")


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="module")
def plan() -> dict:
    path = EXAMPLES / "tiny-rehearsal.genba"
    compiled, _ = plan_spec(path.read_text(encoding="utf-8"), str(path))
    return json.loads(compiled.model_dump_json())


@pytest.fixture(scope="module")
def packed(plan, tokenizer_dir, tmp_path_factory) -> dict[str, PackedData]:
    cache = tmp_path_factory.mktemp("cache")
    return {lang["code"]: prepare_language(lang["code"], lang["sources"], EXAMPLES, tokenizer_dir,
                                           plan["schedule"]["sequence"], cache, log=lambda _: None,
                                           model_vocab=plan["growth"]["vocab"])
            for lang in plan["spec"]["languages"]}


def texts_of(code: str, split: str = "train") -> list[str]:
    lines = (DATA / code / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines]


def prepare(sources, project_dir, tokenizer_dir, cache, **options) -> PackedData:
    options.setdefault("log", lambda _: None)
    return prepare_language("xx", sources, project_dir, tokenizer_dir, SEQUENCE, cache, **options)


def write_jsonl(path: Path, texts: list[str], key: str = "text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({key: t}, ensure_ascii=False) + "\n" for t in texts),
                    encoding="utf-8")
    return path


def stream_of(data: PackedData) -> np.ndarray:
    """The token stream the rows were cut from (rows overlap by one token)."""
    rows = data.array
    return np.concatenate([rows[:, :-1].ravel(), rows[-1, -1:]])


# -------------------------------------------------------------------------------------- sources

def test_globs_are_relative_to_the_project_and_sorted():
    sources = resolve_sources(["data/*/train.jsonl"], EXAMPLES)
    assert sources == [DATA / "bar/train.jsonl", DATA / "de/train.jsonl", DATA / "en/train.jsonl"]


def test_patterns_keep_their_order_and_files_are_read_once():
    sources = resolve_sources(["data/en/train.jsonl", str(DATA / "de/train.jsonl"),
                               "data/*/train.jsonl"], EXAMPLES)
    assert sources == [DATA / "en/train.jsonl", DATA / "de/train.jsonl", DATA / "bar/train.jsonl"]


def test_recursive_glob(tmp_path):
    write_jsonl(tmp_path / "a/b/c.jsonl", ["x"])
    write_jsonl(tmp_path / "a/d.jsonl", ["y"])
    assert resolve_sources(["**/*.jsonl"], tmp_path) == [tmp_path / "a/b/c.jsonl",
                                                         tmp_path / "a/d.jsonl"]


def test_a_pattern_that_matches_nothing_names_pattern_and_directory(tmp_path):
    with pytest.raises(DataError, match=r"'data/fr/\*\.jsonl' matches no file in .*examples"):
        resolve_sources(["data/en/train.jsonl", "data/fr/*.jsonl"], EXAMPLES)
    with pytest.raises(DataError, match="'missing.jsonl' matches no file in " + str(tmp_path)):
        resolve_sources(["missing.jsonl"], tmp_path)


def test_a_plain_directory_or_an_unknown_file_kind_is_refused(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not a dataset saved with save_to_disk"):
        resolve_sources(["plain"], tmp_path)
    (tmp_path / "notes.docx").write_bytes(b"PK")
    with pytest.raises(DataError, match="unknown kind of data file"):
        resolve_sources(["notes.docx"], tmp_path)


def test_a_saved_dataset_directory_is_one_source(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": ["a", "b"]}).save_to_disk(str(tmp_path / "saved"))
    write_jsonl(tmp_path / "z.jsonl", ["c"])
    assert resolve_sources(["saved"], tmp_path) == [tmp_path / "saved"]
    assert resolve_sources(["*"], tmp_path) == [tmp_path / "saved", tmp_path / "z.jsonl"]


# ------------------------------------------------------------------------------------- packing

def test_packed_shapes_and_counts(packed, tokenizer):
    for code, data in packed.items():
        meta = data.meta
        assert data.array.shape == (data.n_sequences, SEQUENCE + 1)
        assert data.array.dtype == np.int32
        assert isinstance(data.array, np.memmap)
        assert data.n_sequences == (meta["tokenized_tokens"] - 1) // SEQUENCE > 0
        assert data.n_tokens == data.n_sequences * SEQUENCE
        assert meta["documents"] == len(texts_of(code))
        assert meta["tokenizer_sha256"] and meta["sequence"] == SEQUENCE
        assert data.array.max() < len(tokenizer)


def test_rows_overlap_by_one_token(packed):
    rows = packed["de"].array
    assert np.array_equal(rows[:-1, -1], rows[1:, 0])
    assert np.array_equal(packed["de"].sequence_ids(3), rows[3])


def test_decoding_the_rows_gives_back_the_documents(packed, tokenizer):
    for code, data in packed.items():
        decoded = tokenizer.decode(stream_of(data).tolist(), skip_special_tokens=False)
        original = "".join(text + "<|eos|>" for text in texts_of(code))
        assert len(decoded) > 0.9 * len(original)  # only the short dropped tail is missing
        assert original.startswith(decoded)


def test_documents_end_in_eos_and_nothing_else_is_added(packed, tokenizer):
    stream = stream_of(packed["bar"])
    eos_positions = np.flatnonzero(stream == tokenizer.eos_token_id)
    assert len(eos_positions) in (len(texts_of("bar")), len(texts_of("bar")) - 1)
    assert tokenizer.bos_token_id not in stream and tokenizer.pad_token_id not in stream
    first = tokenizer(texts_of("bar")[0], add_special_tokens=False)["input_ids"]
    assert stream[:len(first) + 1].tolist() == first + [tokenizer.eos_token_id]


# ---------------------------------------------------------------------------------------- cache

def test_unchanged_inputs_reuse_the_cache(plan, packed, tokenizer_dir):
    lang = plan["spec"]["languages"][0]
    messages = []
    again = prepare_language(lang["code"], lang["sources"], EXAMPLES, tokenizer_dir, SEQUENCE,
                             packed["en"].path.parent, log=messages.append)
    assert again.from_cache and not packed["en"].from_cache
    assert again.path == packed["en"].path and again.n_sequences == packed["en"].n_sequences
    assert messages and "cached" in messages[0] and len(messages) == 1  # no tokenizing message


def test_a_changed_source_invalidates_the_cache(tmp_path, tokenizer_dir):
    source = write_jsonl(tmp_path / "d/en.jsonl", texts_of("en"))
    cache = tmp_path / "cache"
    first = prepare(["d/en.jsonl"], tmp_path, tokenizer_dir, cache)
    assert prepare(["d/en.jsonl"], tmp_path, tokenizer_dir, cache).from_cache
    write_jsonl(source, texts_of("en") + texts_of("en")[:30])
    changed = prepare(["d/en.jsonl"], tmp_path, tokenizer_dir, cache)
    assert not changed.from_cache and changed.path != first.path
    assert changed.n_sequences > first.n_sequences
    os.utime(source, ns=(1, 1))  # same bytes, new mtime: re-packed (sizes alone could collide)
    assert not prepare(["d/en.jsonl"], tmp_path, tokenizer_dir, cache).from_cache
    other_length = prepare_language("xx", ["d/en.jsonl"], tmp_path, tokenizer_dir, 64, cache,
                                    log=lambda _: None)
    assert not other_length.from_cache and other_length.array.shape[1] == 65
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_the_cache_directory_is_named_by_code_split_and_key(packed):
    name = packed["bar"].path.name
    assert name.startswith("bar-train-") and len(name.split("-")[-1]) == 16
    assert packed["bar"].meta["cache_key"].startswith(name.split("-")[-1])


# -------------------------------------------------------------------------------------- formats

def test_jsonl_parquet_txt_and_saved_datasets_pack_identically(tmp_path, tokenizer_dir):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = texts_of("de")
    write_jsonl(tmp_path / "de.jsonl", texts)
    pq.write_table(pa.table({"text": texts}), tmp_path / "de.parquet")
    (tmp_path / "de.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": texts}),
                          "validation": datasets.Dataset.from_dict({"text": texts[:3]})}
                         ).save_to_disk(str(tmp_path / "saved_dict"))
    arrays = {}
    for source in ["de.jsonl", "de.parquet", "de.txt", "saved", "saved_dict"]:
        data = prepare([source], tmp_path, tokenizer_dir, tmp_path / "cache")
        assert not data.from_cache
        arrays[source] = np.array(data.array)
    reference = arrays.pop("de.jsonl")
    for source, array in arrays.items():
        assert np.array_equal(array, reference), source
    # nothing was written beside the saved datasets
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == sorted(
        ["data-00000-of-00001.arrow", "dataset_info.json", "state.json"])


def test_saved_dataset_dict_split_selection(tmp_path, tokenizer_dir):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": texts_of("en")})}
                         ).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match="no split 'val' .*it has train"):
        prepare(["dd"], tmp_path, tokenizer_dir, tmp_path / "cache", split="val")


def test_compressed_jsonl_and_mixed_kinds_in_source_order(tmp_path, tokenizer_dir):
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = texts_of("en")
    with gzip.open(tmp_path / "a.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"text": t}) + "\n" for t in texts[:50])
    pq.write_table(pa.table({"text": texts[50:]}), tmp_path / "b.parquet")
    write_jsonl(tmp_path / "all.jsonl", texts)
    mixed = prepare(["a.jsonl.gz", "b.parquet"], tmp_path, tokenizer_dir, tmp_path / "cache")
    whole = prepare(["all.jsonl"], tmp_path, tokenizer_dir, tmp_path / "cache")
    assert np.array_equal(mixed.array, whole.array)
    assert [s["path"] for s in mixed.meta["sources"]] == [str(tmp_path / "a.jsonl.gz"),
                                                           str(tmp_path / "b.parquet")]


def test_another_text_key(tmp_path, tokenizer_dir):
    write_jsonl(tmp_path / "c.jsonl", texts_of("bar"), key="content")
    data = prepare(["c.jsonl"], tmp_path, tokenizer_dir, tmp_path / "cache", text_key="content")
    assert data.n_sequences > 10


def test_empty_lines_are_not_documents(tmp_path, tokenizer_dir):
    texts = texts_of("en")
    (tmp_path / "t.txt").write_text("\n\n".join(texts) + "\n", encoding="utf-8")
    assert prepare(["t.txt"], tmp_path, tokenizer_dir, tmp_path / "c").meta["documents"] == len(texts)


# -------------------------------------------------------------------------------------- errors

def test_rows_without_the_text_key_name_the_file_the_line_and_the_key(tmp_path, tokenizer_dir):
    bad = write_jsonl(tmp_path / "bad.jsonl", texts_of("en"), key="body")
    with pytest.raises(DataError, match=f"{bad}:1: this row has no 'text' field .*'body'"):
        prepare(["bad.jsonl"], tmp_path, tokenizer_dir, tmp_path / "cache")


def test_the_bad_file_among_many_is_named(tmp_path, tokenizer_dir):
    write_jsonl(tmp_path / "d/1.jsonl", texts_of("en"))
    bad = write_jsonl(tmp_path / "d/2.jsonl", texts_of("de"), key="body")
    write_jsonl(tmp_path / "d/3.jsonl", texts_of("bar"))
    with pytest.raises(DataError, match=f"{bad}:1: .*'text'"):
        prepare(["d/*.jsonl"], tmp_path, tokenizer_dir, tmp_path / "cache")


@pytest.mark.parametrize("line, message", [
    ('{"title": "no text here"}', r"this row has no 'text' field \(its fields: 'title'\)"),
    ('{"text": null}', "its 'text' field holds null, not text"),
    ('{"text": 42}', "its 'text' field holds a number, not text"),
    ('{"text": ["a", "b"]}', "its 'text' field holds an array, not text"),
    ('["text", "a"]', "a row must be a JSON object with a 'text' field, not an array"),
    ('{"text": ', r"not valid JSON \(Expecting value\)"),
    ('{"text": "Gr\\u00fc\\ud800\\u00df"}',
     r"its 'text' field holds \\ud800, half of a UTF-16 surrogate pair without the other half"),
])
def test_a_bad_row_is_named_by_file_and_line(tmp_path, tokenizer_dir, line, message):
    path = tmp_path / "holes.jsonl"
    good = "".join(json.dumps({"text": t}) + "\n" for t in texts_of("en")[:5])
    # the bad row after blank lines, which do not count as rows but do count as lines
    path.write_text(good + "\n\n" + line + "\n" + good, encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}:8: {message}"):
        prepare(["holes.jsonl"], tmp_path, tokenizer_dir, tmp_path / "cache")


@pytest.mark.parametrize("processes", [1, 2])
def test_a_bad_row_deep_in_a_file_read_in_pieces_has_its_true_line(tmp_path, tokenizer_dir,
                                                                     monkeypatch, processes):
    """In this process (1) or in fresh tokenising processes (2), which report it to this one."""
    from genbac.runtime import sources

    monkeypatch.setattr(sources, "MIN_PIECE_BYTES", 4096)  # the pieces are cut here
    monkeypatch.setattr(sources, "BLOCK_BYTES", 1000)  # in this process: lines longer than a block
    texts = [t for code in ("en", "de") for t in texts_of(code)] * 4
    path = write_jsonl(tmp_path / "big.jsonl", texts)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"txt": "typo"}\n')
    found = sources.pieces([path], processes=2)
    assert len(found) > 4 and found[-1].stop == path.stat().st_size
    with pytest.raises(DataError, match=f"{path}:{len(texts) + 1}: this row has no 'text'"):
        prepare([str(path)], tmp_path, tokenizer_dir, tmp_path / "cache", processes=processes)
    assert not list((tmp_path / "cache").iterdir())  # nothing half-written is left


def test_json_nested_too_deeply_is_named_not_a_recursion_error(tmp_path, tokenizer_dir):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": "Servus"}\n{"text": "a", "x": ' + "[" * 100_000 + "]" * 100_000
                    + "}\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}:2: not valid JSON here \\(nested too deeply"):
        prepare(["deep.jsonl"], tmp_path, tokenizer_dir, tmp_path / "cache")


def test_a_lone_surrogate_in_a_json_array_is_named_not_a_traceback(tmp_path, tokenizer_dir):
    """JSON can spell half a surrogate pair (\\udc00); Python reads it into a str no tokenizer
    accepts (a TypeError deep in tokenizers): it is the user's data, so it is named."""
    rows = [{"text": "Servus"}, {"text": "Gr\udc00\u00fc\u00df Gott"}]
    (tmp_path / "rows.json").write_text(json.dumps(rows), encoding="utf-8")
    with pytest.raises(DataError, match=r"rows.json: item 1 of the array: its 'text' field holds "
                                        r"\\udc00, half of a UTF-16 surrogate pair"):
        prepare(["rows.json"], tmp_path, tokenizer_dir, tmp_path / "cache")


def test_text_files_must_be_utf8(tmp_path, tokenizer_dir):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Servus\nGrüß Gott\n".encode("latin-1"))
    with pytest.raises(DataError, match=f"{path}:2: not UTF-8 text .*save the file as UTF-8"):
        prepare(["latin1.txt"], tmp_path, tokenizer_dir, tmp_path / "cache")


def test_a_compressed_file_that_is_not_is_refused(tmp_path, tokenizer_dir):
    write_jsonl(tmp_path / "plain.jsonl.gz", texts_of("en"))
    with pytest.raises(DataError, match="plain.jsonl.gz: could not be read"):
        prepare(["plain.jsonl.gz"], tmp_path, tokenizer_dir, tmp_path / "cache")


def test_crlf_lines_json_arrays_and_every_compression_read_the_same_texts(tmp_path, tokenizer_dir):
    import bz2
    import gzip
    import lzma

    import pyarrow as pa

    texts = texts_of("de")
    lines = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts).encode()
    (tmp_path / "a.txt").write_bytes("\r\n".join(texts).encode() + b"\r\n")
    (tmp_path / "b.json").write_text(json.dumps([{"text": t, "n": i} for i, t in enumerate(texts)]),
                                     encoding="utf-8")
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress(lines))
    (tmp_path / "d.jsonl.bz2").write_bytes(bz2.compress(lines))
    (tmp_path / "e.jsonl.xz").write_bytes(lzma.compress(lines))
    with pa.output_stream(str(tmp_path / "f.jsonl.zst"), compression="zstd") as out:
        out.write(lines)
    write_jsonl(tmp_path / "ref.jsonl", texts)
    reference = np.array(prepare(["ref.jsonl"], tmp_path, tokenizer_dir, tmp_path / "cache").array)
    for name in ["a.txt", "b.json", "c.jsonl.gz", "d.jsonl.bz2", "e.jsonl.xz", "f.jsonl.zst"]:
        data = prepare([name], tmp_path, tokenizer_dir, tmp_path / "cache")
        assert np.array_equal(data.array, reference), name


# Lines of JSON lines files as they come: rows, spaces around them, CRLF, blank lines, an
# object printed over two lines, extra data after a row, rows that are not objects or lack text.
JSON_LINES = st.lists(st.one_of(
    st.text(max_size=8).map(lambda t: json.dumps({"text": t})),
    st.text(max_size=8).map(lambda t: json.dumps({"text": t}, ensure_ascii=False) + "\r"),
    st.text(max_size=8).map(lambda t: " " + json.dumps({"n": 1, "text": t}) + " \t"),
    st.sampled_from(["", " ", "\r", '{"text":', '"a"}', '{"text": "a"} 1', '{"text": "a"}{}',
                     '[1', '2]', '{"t": 1}', '{"text": NaN}', '"text"', '{"text": "\\u00e4"}',
                     '{"text":\n"a"}', '{"text": "a",\r\n"n": [1,\n2]}']),
), max_size=12)


@settings(max_examples=300, deadline=None)
@given(JSON_LINES, st.booleans())
def test_a_block_of_json_lines_reads_as_json_loads_reads_each_line(lines, final_newline):
    """The one-scan-a-row reading of a block (sources._one_value_a_line) is a shortcut: it gives
    what json.loads of each non-blank line gives, or declines, and errors come from the latter."""
    from genbac.runtime.sources import Piece

    text = "\n".join(lines) + ("\n" if final_newline else "")
    with tempfile.TemporaryDirectory() as scratch:  # an error's line number is read from the file
        path = Path(scratch) / "rows.jsonl"
        path.write_text(text, encoding="utf-8")
        check_block(text, Piece(path, "json"))


def test_rows_one_a_line_take_the_shortcut():
    from genbac.runtime.sources import _one_value_a_line

    rows = [{"text": "Servus"}, {"text": "Grüß Gott", "n": [1, 2]}, {"text": ""}]
    for end in ("\n", "\r\n"):
        block = "".join(json.dumps(row, ensure_ascii=False) + end for row in rows)
        assert _one_value_a_line(block) == rows
        assert _one_value_a_line(block.removesuffix(end)) == rows  # the file's last line
    assert _one_value_a_line('{"text": "a"}\n\n{"text": "b"}\n') is None  # blank: json.loads


def check_block(text: str, piece):
    from genbac.runtime.sources import _json_block

    try:
        expected = [json.loads(line)["text"] for line in text.split("\n")
                    if line and not line.isspace()]
        expected = expected if all(type(t) is str for t in expected) else None
    except (ValueError, KeyError, TypeError):
        expected = None
    if expected is None:
        with pytest.raises(DataError, match=r"rows.jsonl:\d+: "):
            _json_block(text.encode(), piece, 0, "text")
    else:
        assert _json_block(text.encode(), piece, 0, "text") == expected


def test_parquet_and_saved_datasets_name_their_problem(tmp_path, tokenizer_dir):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "nokey.parquet")
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "numbers.parquet")
    pq.write_table(pa.table({"text": ["a", None, "b"]}), tmp_path / "holes.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    datasets.Dataset.from_dict({"content": ["a"]}).save_to_disk(str(tmp_path / "saved"))
    for name, message in [("nokey.parquet", "its rows have no 'text' field \\(its fields: 'body'\\)"),
                          ("numbers.parquet", "its 'text' field holds int64, not text"),
                          ("holes.parquet", "row 1 has no text \\(its 'text' is null\\)"),
                          ("junk.parquet", "could not be read as parquet"),
                          ("saved", "its rows have no 'text' field \\(its fields: 'content'\\)")]:
        with pytest.raises(DataError, match=f"{tmp_path / name}: {message}"):
            prepare([name], tmp_path, tokenizer_dir, tmp_path / "cache")


def test_too_little_data_for_one_sequence(tmp_path, tokenizer_dir):
    write_jsonl(tmp_path / "tiny.jsonl", ["Servus beinand."])
    with pytest.raises(DataError, match="xx/train has .* tokens, fewer than one sequence of 129"):
        prepare(["tiny.jsonl"], tmp_path, tokenizer_dir, tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_vocabulary_mismatch(tokenizer_dir, tmp_path):
    with pytest.raises(DataError, match="has 1024 tokens but the model's vocabulary is 512"):
        prepare(["data/en/train.jsonl"], EXAMPLES, tokenizer_dir, tmp_path, model_vocab=512)


def test_missing_tokenizer(tmp_path):
    with pytest.raises(DataError, match="tokenizer directory .* does not exist"):
        prepare(["data/en/train.jsonl"], EXAMPLES, tmp_path / "none", tmp_path)


def test_packed_data_pickles_without_its_memory_map(packed):
    data = packed["en"]
    data.sequence_ids(0)
    copy = pickle.loads(pickle.dumps(data))
    assert np.array_equal(copy.sequence_ids(5), data.sequence_ids(5))


# ------------------------------------------------------------------------------ in N processes

def test_any_number_of_processes_packs_the_same_bytes(tmp_path, tokenizer_dir):
    # three files of many short documents: every process gets several tokenizer batches
    texts = [t for code in ("en", "de", "bar") for t in texts_of(code)] * 12
    sources = [write_jsonl(tmp_path / "src" / f"part{i}.jsonl", texts[i::3]) for i in range(3)]
    packed = {n: prepare([str(p) for p in sources], tmp_path, tokenizer_dir, tmp_path / f"c{n}",
                         processes=n) for n in (1, 2, 3)}
    one = (packed[1].path / "sequences.npy").read_bytes()
    assert packed[1].n_sequences > 100
    for n in (2, 3):
        assert (packed[n].path / "sequences.npy").read_bytes() == one
        assert packed[n].meta == packed[1].meta
        assert packed[n].path.name == packed[1].path.name  # the cache key ignores the count


def test_one_tokenising_process_packs_what_this_process_packs(tmp_path, tokenizer_dir,
                                                             monkeypatch):
    """Below IN_PROCESS_BYTES the texts are tokenised here, above it in a fresh process (also for
    one): the same bytes either way."""
    from genbac.runtime import data

    texts = [t for code in ("en", "de", "bar") for t in texts_of(code)] * 4
    sources = [str(write_jsonl(tmp_path / "src" / f"part{i}.jsonl", texts[i::2])) for i in (0, 1)]
    here = prepare(sources, tmp_path, tokenizer_dir, tmp_path / "here", processes=1)
    monkeypatch.setattr(data, "IN_PROCESS_BYTES", 0)
    there = prepare(sources, tmp_path, tokenizer_dir, tmp_path / "there", processes=1)
    assert (there.path / "sequences.npy").read_bytes() == (here.path / "sequences.npy").read_bytes()
    assert there.meta == here.meta


def tokenizing_job(tokenizer_dir: Path, processes: int = 1):
    from genbac.runtime.piece_tokenizer import Job
    from genbac.runtime.tokenizer import load_fast_tokenizer

    eos = load_fast_tokenizer(tokenizer_dir).token_to_id("</s>")
    return Job(str(tokenizer_dir / "tokenizer.json"), eos if eos is not None else 0, "text",
               "train", "xx/train", processes)


def test_a_tokenising_process_never_starts_a_thread(tmp_path, tokenizer_dir):
    """Why they are started fresh: in a process that never had a second thread glibc's malloc
    keeps its fast path. Talked to as prepare_language does, over its stdin and stdout, with the
    tokenizer's own thread pool off as it is when several share the cores."""
    import dataclasses
    import subprocess
    import sys

    from genbac.runtime.sources import pieces

    source = write_jsonl(tmp_path / "src.jsonl", texts_of("de") * 3)
    piece = pieces([source])[0]
    lines = [{**dataclasses.asdict(tokenizing_job(tokenizer_dir)), "rank": 0},
             {"index": 0, "file": str(tmp_path / "ids"),
              "piece": {**dataclasses.asdict(piece), "path": str(piece.path)}}]
    from genbac.runtime.piece_tokenizer import LAUNCH

    # started from a directory whose modules would stand in for the standard library's and the
    # tokenizer's, were the working directory on its sys.path
    for name in ("json", "tokenizers"):
        (tmp_path / f"{name}.py").write_text("raise SystemExit('imported from the cwd')\n")
    done = subprocess.run([sys.executable, "-c", LAUNCH, str(os.getpid())],
                          input="".join(json.dumps(m) + "\n" for m in lines),
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["single_threaded"] is True
    assert answer["documents"] == len(texts_of("de")) * 3
    assert (tmp_path / "ids").stat().st_size == 4 * answer["tokens"]


def test_a_tokenising_process_that_dies_is_named_with_its_piece(tmp_path, tokenizer_dir,
                                                                monkeypatch):
    """Killed (the kernel's OOM killer sends SIGKILL) halfway: a DataError naming the process,
    the signal and the file it was reading, and no process left behind."""
    import signal

    from genbac.runtime import sources
    from genbac.runtime.piece_tokenizer import TokenizingProcesses

    monkeypatch.setenv("GENBAC_PROGRESS_SECONDS", "0")  # a message after every block
    monkeypatch.setattr(sources, "MIN_PIECE_BYTES", 2048)
    source = write_jsonl(tmp_path / "src" / "many.jsonl", texts_of("en") * 20)
    found = sources.pieces([source], processes=2)
    assert len(found) > 4

    def kill_one(line: str) -> None:
        if workers.workers[1].poll() is None:
            os.kill(workers.workers[1].pid, signal.SIGKILL)

    (tmp_path / "scratch").mkdir()
    with TokenizingProcesses(2, kill_one) as workers:
        workers.begin(tokenizing_job(tokenizer_dir, 2), tmp_path / "scratch")
        with pytest.raises(DataError, match=r"a tokenising process \(pid \d+\) was killed by "
                           rf"SIGKILL while tokenising {source} \(out of memory\?\)"):
            list(workers.results(found))
    assert all(worker.poll() is not None for worker in workers.workers)


def children() -> set[int]:
    """This process's living child processes (Linux)."""
    found = set()
    for task in Path("/proc/self/task").iterdir():
        found |= {int(pid) for pid in (task / "children").read_text().split()}
    return {pid for pid in found
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"}


def test_processes_started_before_the_tokenizer_is_read_go_with_its_error(tmp_path,
                                                                          tokenizer_dir,
                                                                          monkeypatch):
    """A first preparation starts its tokenising processes before it loads the tokenizer (their
    start overlaps the load): a broken tokenizer is still the error, and they are gone."""
    from genbac.runtime import data

    from genbac.runtime import sources

    monkeypatch.setattr(data, "IN_PROCESS_BYTES", 0)
    monkeypatch.setattr(sources, "MIN_PIECE_BYTES", 2048)  # pieces for two
    broken = tmp_path / "tok"
    shutil.copytree(tokenizer_dir, broken)
    (broken / "tokenizer.json").write_text('{"model": "nothing"}', encoding="utf-8")
    write_jsonl(tmp_path / "a.jsonl", texts_of("en"))
    from genbac.runtime import tokenizer

    load, at_load = tokenizer.load_fast_tokenizer, []

    def load_and_look(path):
        at_load.append(children())
        return load(path)

    monkeypatch.setattr(tokenizer, "load_fast_tokenizer", load_and_look)
    before = children()
    with pytest.raises(DataError, match="tokenizer.json is not a valid tokenizer file"):
        prepare(["a.jsonl"], tmp_path, broken, tmp_path / "cache", processes=2)
    assert len(at_load[0] - before) == 2  # both were running while it loaded
    assert children() == before
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_pieces_shrink_towards_the_end_so_processes_finish_together(tmp_path, monkeypatch):
    """Guided cutting: each piece is 1/GUIDED of what is left per process when it starts (large
    first, MIN_PIECE_BYTES at the end, never past PIECE_BYTES), the pieces tile every file on line
    boundaries, and a later source's pieces continue the shrinking of the earlier one's."""
    from genbac.runtime import sources

    monkeypatch.setattr(sources, "MIN_PIECE_BYTES", 2048)
    monkeypatch.setattr(sources, "PIECE_BYTES", 40_000)
    texts = [t for code in ("en", "de") for t in texts_of(code)] * 40
    files = [write_jsonl(tmp_path / f"part{i}.jsonl", texts[i::2]) for i in range(2)]
    total = sum(f.stat().st_size for f in files)
    found = sources.pieces(files, processes=2)
    longest_line = max(len(line) for f in files for line in f.read_bytes().splitlines(True))
    left = total
    for piece in found:
        data = piece.path.read_bytes()
        assert piece.start == 0 or data[piece.start - 1:piece.start] == b"\n"
        wanted = max(2048, min(40_000, left // (2 * sources.GUIDED)))
        end_of_file = piece.stop == len(data)
        assert piece.size <= wanted + longest_line
        assert piece.size >= wanted or end_of_file, (piece, wanted)
        left -= piece.size
    assert left == 0
    for f in files:
        mine = [p for p in found if p.path == f]
        assert [(a.stop == b.start) for a, b in zip(mine, mine[1:])] == [True] * (len(mine) - 1)
    sizes = [p.size for p in found if p.stop != p.path.stat().st_size]
    assert all(b <= a + longest_line for a, b in zip(sizes, sizes[1:]))  # never growing
    assert sizes[0] > 10 * sizes[-1]
    assert found[-2].size < 2048 + longest_line  # the end is cut as small as allowed


def test_every_process_reports_its_progress(tmp_path, tokenizer_dir, capfd, monkeypatch):
    """With a line due at every batch, each of 2 processes says its documents, bytes and rates;
    the documents of the two add up to the corpus's."""
    import re

    monkeypatch.setenv("GENBAC_PROGRESS_SECONDS", "0")
    texts = [t for code in ("en", "de") for t in texts_of(code)] * 12
    source = write_jsonl(tmp_path / "src" / "all.jsonl", texts)
    packed = prepare([str(source)], tmp_path, tokenizer_dir, tmp_path / "c", processes=2)
    out = capfd.readouterr().out
    line = re.compile(r"genbac: xx/train \[process (\d)/2\]: ([\d,]+) documents, [\d.]+ MB, "
                      r"[\d.,]+ MB/s, [\d,]+ tokens/s")
    last = {}
    for m in line.finditer(out):
        last[m.group(1)] = int(m.group(2).replace(",", ""))
    assert set(last) == {"1", "2"}, out
    assert sum(last.values()) == packed.meta["documents"]


def test_the_number_of_processes_comes_from_the_machine_or_the_environment(monkeypatch):
    from genbac.runtime import data

    monkeypatch.delenv(data.PROCESSES_ENV, raising=False)
    cpus = len(os.sched_getaffinity(0))
    assert data.data_processes(1000) == 1  # a small corpus is not worth a second process
    assert data.data_processes(10**15) == cpus
    assert data.data_processes(2 * data.PROCESS_BYTES) == min(2, cpus)
    monkeypatch.setenv(data.PROCESSES_ENV, "3")
    assert data.data_processes(1000) == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(data.PROCESSES_ENV, bad)
        with pytest.raises(DataError, match="GENBAC_DATA_PROCESSES must be a positive"):
            data.data_processes(1000)


# --------------------------------------------------------------------------------------- mixer

def test_each_phase_has_exactly_the_planned_sequences(plan, packed):
    mixer = Mixer(plan, packed, seed=1234)
    for phase in plan["schedule"]["phases"]:
        counts = {share["code"]: 0 for share in phase["shares"]}
        for step in range(phase["start_step"], phase["end_step"]):
            rows, codes = mixer.batch(step)
            assert rows.shape == (plan["schedule"]["batch"], SEQUENCE + 1)
            assert rows.dtype == np.int64
            for code in codes:
                counts[code] += 1
        assert counts == {share["code"]: share["sequences"] for share in phase["shares"]}


def test_the_late_language_appears_only_from_its_entry_step(plan, packed):
    bar = next(lang for lang in plan["schedule"]["languages"] if lang["code"] == "bar")
    mixer = Mixer(plan, packed, seed=1234)
    steps_with_bar = [s for s in range(plan["schedule"]["total_steps"]) if "bar" in mixer.batch(s)[1]]
    assert bar["first_step"] == 71 and min(steps_with_bar) >= bar["first_step"]
    assert mixer.tokens_seen(bar["first_step"])["bar"] == 0


def test_rows_come_from_their_language(plan, packed):
    mixer = Mixer(plan, packed, seed=1234)
    rows_by_code = {code: {tuple(r) for r in np.asarray(data.array)} for code, data in packed.items()}
    for step in (0, 40, 80, 93):
        rows, codes = mixer.batch(step)
        for row, code in zip(rows, codes):
            assert tuple(row) in rows_by_code[code]


def test_same_step_same_batch_across_instances_and_access_orders(plan, packed):
    uninterrupted = Mixer(plan, packed, seed=7)
    expected = [uninterrupted.batch(step) for step in range(plan["schedule"]["total_steps"])]
    resumed = Mixer(plan, packed, seed=7)  # a fresh process resuming at step 80, then going back
    for step in [80, 93, 3, 70, 71, 0]:
        rows, codes = resumed.batch(step)
        assert np.array_equal(rows, expected[step][0]) and codes == expected[step][1]
    different = Mixer(plan, packed, seed=8)
    assert any(different.batch(s)[1] != expected[s][1] for s in range(10))


def test_tokens_seen_matches_the_batches_and_the_plan(plan, packed):
    mixer = Mixer(plan, packed, seed=1234)
    schedule = plan["schedule"]
    running = {code: 0 for code in packed}
    for step in range(schedule["total_steps"]):
        assert mixer.tokens_seen(step) == running
        for code in mixer.batch(step)[1]:
            running[code] += SEQUENCE
    final = mixer.tokens_seen(schedule["total_steps"])
    assert final == running == {lang["code"]: lang["compiled_tokens"]
                                for lang in schedule["languages"]}
    with pytest.raises(IndexError):
        mixer.batch(schedule["total_steps"])


def test_a_small_corpus_repeats_in_a_new_order_each_epoch(plan, packed):
    mixer = Mixer(plan, packed, seed=1234)
    drawn = [tuple(row) for step in range(plan["schedule"]["total_steps"])
             for row, code in zip(*mixer.batch(step)) if code == "en"]
    n = packed["en"].n_sequences
    assert len(drawn) > 2 * n  # en is drawn for more than two epochs
    all_rows = {tuple(r) for r in np.asarray(packed["en"].array)}
    assert set(drawn[:n]) == all_rows and set(drawn[n:2 * n]) == all_rows  # each row once an epoch
    assert drawn[:n] != drawn[n:2 * n]


def test_mixer_refuses_missing_or_mismatched_data(plan, packed, tmp_path):
    with pytest.raises(DataError, match="no packed data for language 'bar'"):
        Mixer(plan, {k: v for k, v in packed.items() if k != "bar"}, seed=1)
    short = write_packed(tmp_path, "bar", np.zeros((3, 65), np.int32))
    with pytest.raises(DataError, match="packed for sequence 64"):
        Mixer(plan, {**packed, "bar": short}, seed=1)


# ------------------------------------------------------------------------------ mixer, property

def write_packed(directory: Path, code: str, rows: np.ndarray) -> PackedData:
    """A real packed directory (sequences.npy + meta.json) holding `rows`."""
    path = directory / f"{code}-train-test"
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "sequences.npy", rows)
    sequence = rows.shape[1] - 1
    (path / "meta.json").write_text(json.dumps(
        {"code": code, "split": "train", "sequence": sequence, "n_sequences": len(rows),
         "n_tokens": len(rows) * sequence}), encoding="utf-8")
    return PackedData.load(path, from_cache=False)


@st.composite
def small_plans(draw):
    codes = ["aa", "bb", "cc"][:draw(st.integers(1, 3))]
    batch = draw(st.integers(1, 5))
    phases, start = [], 0
    for index in range(1, draw(st.integers(1, 4)) + 1):
        steps = draw(st.integers(0, 6))
        slots = steps * batch
        cuts = sorted(draw(st.lists(st.integers(0, slots), min_size=len(codes) - 1,
                                    max_size=len(codes) - 1)))
        counts = [b - a for a, b in zip([0] + cuts, cuts + [slots])]
        phases.append({"index": index, "start_step": start, "end_step": start + steps,
                       "shares": [{"code": c, "sequences": n} for c, n in zip(codes, counts)]})
        start += steps
    order = draw(st.permutations(range(len(phases))))  # the mixer must not rely on plan order
    sizes = {code: draw(st.integers(1, 7)) for code in codes}
    seed = draw(st.integers(-2**40, 2**40))
    plan = {"schedule": {"batch": batch, "sequence": 3, "phases": [phases[i] for i in order]}}
    return plan, phases, sizes, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_plans())
def test_mixer_properties_on_random_plans(example):
    plan, phases, sizes, seed = example
    codes = [share["code"] for share in phases[0]["shares"]]
    with tempfile.TemporaryDirectory() as scratch:
        # row r of language i is [i, r, 0, 0]: a row says where it came from
        data = {code: write_packed(Path(scratch), code, np.array(
            [[i, r, 0, 0] for r in range(sizes[code])], np.int32)) for i, code in enumerate(codes)}
        mixer, twin = Mixer(plan, data, seed), Mixer(plan, data, seed)
        total = phases[-1]["end_step"]
        draws = {code: [] for code in codes}
        running = {code: 0 for code in codes}
        for phase in phases:
            counts = dict.fromkeys(codes, 0)
            for step in range(phase["start_step"], phase["end_step"]):
                assert mixer.tokens_seen(step) == running
                rows, row_codes = mixer.batch(step)
                for row, code in zip(rows, row_codes):
                    assert row[0] == codes.index(code)
                    draws[code].append(int(row[1]))
                    counts[code] += 1
                    running[code] += 3
            assert counts == {s["code"]: s["sequences"] for s in phase["shares"]}
        assert mixer.tokens_seen(total) == running
        for code, rows in draws.items():  # every epoch is a permutation of the language's rows
            n = sizes[code]
            for start in range(0, len(rows) - n + 1, n):
                assert sorted(rows[start:start + n]) == list(range(n))
            assert len(set(rows[len(rows) // n * n:])) == len(rows) % n
        for step in reversed(range(total)):  # any access order, another instance: same batch
            a, b = mixer.batch(step), twin.batch(step)
            assert np.array_equal(a[0], b[0]) and a[1] == b[1]
        del mixer, twin, data  # release the memory maps before the directory goes


# ------------------------------------------------------- mixer, its two bijections (no tables)

@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 31, 64, 100, 257, 1000, 4097])
def test_an_epoch_order_is_a_permutation_of_every_size(n):
    order = _Permutation(n, np.random.default_rng(n))
    rows = order(np.arange(n))
    assert sorted(rows.tolist()) == list(range(n))
    if n >= 8:  # a shuffle, and another one under another key
        assert rows.tolist() != list(range(n))
        assert rows.tolist() != _Permutation(n, np.random.default_rng(n + 1))(np.arange(n)).tolist()


def test_an_epoch_order_of_a_large_corpus_is_computed_per_row():
    n = 20_000_003  # GENBA-sized; no table of n entries exists
    order = _Permutation(n, np.random.default_rng(0))
    sample = np.arange(0, n, 997)
    rows = order(sample)
    assert rows.min() >= 0 and rows.max() < n and len(set(rows.tolist())) == len(sample)
    assert np.array_equal(order(sample[::-1]), rows[::-1])  # per element, not per call


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=5), st.integers(0, 2**32))
def test_an_interleave_deals_exact_counts_evenly(counts, seed):
    n = sum(counts)
    interleave = _Interleave(counts, np.random.default_rng(seed))
    language, own = interleave.deal(np.arange(n, dtype=np.int64))
    for lang, count in enumerate(counts):
        mine = language == lang
        assert mine.sum() == count
        assert own[mine].tolist() == list(range(count))  # its own slots, in order
        for k in range(n + 1):  # every prefix holds the language's share, within the tree depth
            seen = interleave.seen(lang, k)
            assert seen == int(mine[:k].sum())
            assert abs(seen - k * count / max(n, 1)) <= 3


# ------------------------------------------------------------------------------------ evaluation

def test_eval_batches_are_the_first_sequences_in_order(plan, tokenizer_dir, tmp_path):
    val = prepare_language("en", ["data/en/val.jsonl"], EXAMPLES, tokenizer_dir, SEQUENCE, tmp_path,
                           split="val", log=lambda _: None)
    assert val.path.name.startswith("en-val-")
    n = val.n_sequences
    assert n >= 5
    batches = eval_batches(val, batch=2, max_batches=2)
    assert [b.shape for b in batches] == [(2, SEQUENCE + 1)] * 2
    assert all(isinstance(b, np.memmap) and b.dtype == np.int32 for b in batches)  # no copies
    assert np.array_equal(np.concatenate(batches), val.array[:4])
    everything = eval_batches(val, batch=4, max_batches=100)
    assert sum(len(b) for b in everything) == n
    assert [len(b) for b in everything[:-1]] == [4] * (len(everything) - 1)
    assert all(np.array_equal(a, b) for a, b in zip(everything, eval_batches(val, 4, 100)))

    eval_set = EvalSet({"en": val}, batch=2, max_batches=2)
    assert [code for code, _ in eval_set] == ["en", "en"]
    assert eval_set.tokens("en") == 4 * SEQUENCE


def test_nothing_is_written_beside_the_sources():
    leftovers = [p for p in DATA.rglob("*") if p.suffix in (".arrow", ".lock") or p.name == "cache"]
    assert leftovers == []


def test_a_deleted_cache_directory_is_rebuilt(tmp_path, tokenizer_dir):
    data = prepare(["data/bar/train.jsonl"], EXAMPLES, tokenizer_dir, tmp_path / "cache")
    data.sequence_ids(0)
    shutil.rmtree(data.path)  # users may delete the cache at any time
    rebuilt = prepare(["data/bar/train.jsonl"], EXAMPLES, tokenizer_dir, tmp_path / "cache")
    assert not rebuilt.from_cache and rebuilt.path == data.path
