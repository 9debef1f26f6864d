"""The byte-level BPE tokenizer: trained for real on the example corpora, loaded by transformers."""

import json
from pathlib import Path

import pytest

from genbac.runtime.data import DataError
from genbac.runtime.tokenizer import (BOS, EOS, PAD, load_fast_tokenizer, load_tokenizer,
                                      special_token_id, train_bpe_tokenizer, vocabulary_size)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data"
TRAIN_FILES = sorted(DATA.glob("*/train.jsonl"))




@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train_bpe_tokenizer(TRAIN_FILES, 1024, tmp_path_factory.mktemp("tok") / "bpe")


def example_texts(code: str, split: str = "train") -> list[str]:
    lines = (DATA / code / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines]


def test_exact_vocabulary_and_files(trained):
    assert sorted(p.name for p in trained.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    tokenizer = load_fast_tokenizer(trained)
    assert tokenizer.get_vocab_size(with_added_tokens=True) == 1024
    assert vocabulary_size(tokenizer) == 1024
    # special tokens first, then the 256 bytes
    assert [tokenizer.token_to_id(t) for t in (BOS, EOS, PAD)] == [0, 1, 2]


def test_loadable_by_transformers_auto_tokenizer(trained):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    auto = AutoTokenizer.from_pretrained(str(trained), local_files_only=True)
    assert isinstance(auto, PreTrainedTokenizerFast)
    assert (auto.bos_token, auto.eos_token, auto.pad_token) == (BOS, EOS, PAD)
    assert (auto.bos_token_id, auto.eos_token_id, auto.pad_token_id) == (0, 1, 2)
    assert len(auto) == 1024
    fast = load_tokenizer(trained)
    assert fast.eos_token_id == special_token_id(trained, "eos") == 1
    # a class name transformers 4.x (pinned by Model Zoo 2.10) also knows
    config = json.loads((trained / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"


@pytest.mark.parametrize("code", ["en", "de", "bar"])
def test_round_trip_is_exact_in_every_language(trained, code):
    tokenizer = load_tokenizer(trained)
    for text in example_texts(code, "val"):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    # byte-level: characters never seen in training still encode and decode
    unseen = "Grüß Gott, Øresund — 東京 🍺"
    assert tokenizer.decode(tokenizer(unseen)["input_ids"]) == unseen


def test_no_template_tokens_are_added(trained):
    tokenizer = load_tokenizer(trained)
    ids = tokenizer("Servus")["input_ids"]
    assert 0 not in ids and 1 not in ids


def test_training_is_deterministic(trained, tmp_path):
    again = train_bpe_tokenizer(TRAIN_FILES, 1024, tmp_path / "again")
    assert (again / "tokenizer.json").read_bytes() == (trained / "tokenizer.json").read_bytes()
    assert (again / "tokenizer_config.json").read_bytes() == \
        (trained / "tokenizer_config.json").read_bytes()


def test_retraining_replaces_the_directory_atomically(tmp_path):
    out = tmp_path / "tok"
    train_bpe_tokenizer(TRAIN_FILES, 300, out)
    train_bpe_tokenizer(TRAIN_FILES, 400, out)
    assert load_fast_tokenizer(out).get_vocab_size() == 400
    assert [p.name for p in tmp_path.iterdir()] == ["tok"]  # no temporary directories left


def test_trains_on_txt_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = example_texts("de")
    (tmp_path / "a.txt").write_text("\n".join(texts[:60]) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"text": texts[60:]}), tmp_path / "b.parquet")
    out = train_bpe_tokenizer([tmp_path / "a.txt", tmp_path / "b.parquet"], 500, tmp_path / "t")
    assert load_fast_tokenizer(out).get_vocab_size() == 500


def test_too_little_text_for_the_vocabulary(tmp_path):
    small = tmp_path / "small.jsonl"
    small.write_text(json.dumps({"text": "a tiny text"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="support only .* not the 5000"):
        train_bpe_tokenizer([small], 5000, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_vocabulary_below_the_byte_alphabet(tmp_path):
    with pytest.raises(DataError, match="at least 259"):
        train_bpe_tokenizer(TRAIN_FILES, 100, tmp_path / "out")


def test_missing_or_invalid_tokenizer_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(DataError, match="not a tokenizer directory"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="not a valid tokenizer file"):
        load_fast_tokenizer(tmp_path)


def test_missing_eos_in_the_config(trained, tmp_path):
    copy = tmp_path / "tok"
    copy.mkdir()
    (copy / "tokenizer.json").write_bytes((trained / "tokenizer.json").read_bytes())
    (copy / "tokenizer_config.json").write_text('{"bos_token": "<|bos|>"}', encoding="utf-8")
    with pytest.raises(DataError, match="names no eos_token"):
        special_token_id(copy, "eos")
