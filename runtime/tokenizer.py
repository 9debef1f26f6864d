"""Tokenizers for the runtime: train a byte-level BPE, load one, read its special tokens.

A tokenizer directory is a Hugging Face tokenizer directory: `tokenizer.json` (the `tokenizers`
model, the file whose hash keys the data cache) and `tokenizer_config.json` (bos/eos/pad names),
loadable with `transformers.AutoTokenizer.from_pretrained(dir)`.

`train_bpe_tokenizer` is deterministic: the same texts in the same order and the same vocabulary
size give the same `tokenizer.json` bytes. The texts are read in the order of `files` (the caller
sorts them; `data.resolve_sources` does), so a rerun reproduces the tokenizer of an earlier run.

transformers is imported only by the functions that need it: importing this module stays light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from genbac import atomic

from .sources import DataError, iter_texts

if TYPE_CHECKING:  # heavy imports, only for annotations
    import tokenizers
    from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SPECIAL_TOKENS = (BOS, EOS, PAD)  # ids 0, 1, 2 in a tokenizer trained here
BYTE_ALPHABET = 256
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
TRAINING_BATCH = 1000  # texts handed to the trainer at a time


def train_bpe_tokenizer(files: list[Path], vocab: int, out_dir: Path,
                        text_key: str = "text") -> Path:
    """Train a byte-level BPE of exactly `vocab` tokens on the texts of `files`; save it to `out_dir`.

    `out_dir` is replaced atomically: readers see the old tokenizer or the new one, never half.
    """
    minimum = BYTE_ALPHABET + len(SPECIAL_TOKENS)
    if vocab < minimum:
        raise DataError(f"a byte-level BPE needs a vocabulary of at least {minimum} tokens "
                        f"(256 bytes + {len(SPECIAL_TOKENS)} special tokens), not {vocab}")
    out_dir = Path(out_dir)
    tokenizer = _train_bpe(_batches(iter_texts([Path(f) for f in files], text_key)), vocab)
    trained = tokenizer.get_vocab_size(with_added_tokens=True)
    if trained != vocab:
        raise DataError(f"the tokenizer's training texts support only {trained} tokens, not the "
                        f"{vocab} asked for: give more text or ask for a smaller vocabulary")
    with atomic.directory(out_dir, replace=True) as work:
        _save_hf_directory(tokenizer, work)
    return out_dir


def _batches(texts: Iterator[list[str]]) -> Iterator[list[str]]:
    for block in texts:
        for first in range(0, len(block), TRAINING_BATCH):
            yield block[first:first + TRAINING_BATCH]


def _train_bpe(batches: Iterator[list[str]], vocab: int) -> "tokenizers.Tokenizer":
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    # Byte-level: every string is encodable (no unknown token) and decoding gives back its bytes.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 bytes, even those absent from the texts, so unseen characters still encode.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(batches, trainer)
    return tokenizer


def _save_hf_directory(tokenizer: "tokenizers.Tokenizer", directory: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS,
                                      pad_token=PAD, clean_up_tokenization_spaces=False)
    wrapped.save_pretrained(str(directory))
    make_portable(directory)


# The files of a tokenizer directory that tokenizers and transformers read (weights and model
# configs are not copied by import_tokenizer).
TOKENIZER_FILES = (TOKENIZER_FILE, CONFIG_FILE, "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja")


def portable_config(data: dict) -> dict:
    """tokenizer_config.json as every engine genbac hands it to can load it, with the same token
    ids: transformers 5 and the 4.57.1 that Model Zoo 2.10 pins (checked by hand against a real
    Model Zoo on genbac's BPE and SmolLM2's tokenizer: equal ids, special tokens and decoding).
    transformers 5 records the class as "TokenizersBackend", which 4.57.1 cannot load (`Tokenizer
    class TokenizersBackend does not exist or is not currently imported`); both read
    "PreTrainedTokenizerFast" (an alias in 5.x)."""
    data = dict(data)
    # Not dropped instead: without it 4.57 picks the class from config.json (LlamaTokenizerFast),
    # which puts a BOS before every text, and the token ids change.
    if data.get("tokenizer_class") in (None, "TokenizersBackend"):
        data["tokenizer_class"] = "PreTrainedTokenizerFast"
    # transformers 5 writes further special tokens as a list under "extra_special_tokens", which
    # 4.57 reads as a dict of named tokens ('list' object has no attribute 'keys'); its name for
    # the list is "additional_special_tokens".
    extra = data.get("extra_special_tokens")
    if isinstance(extra, list):
        del data["extra_special_tokens"]
        data.setdefault("additional_special_tokens", extra)
    return data


def make_portable(directory: Path) -> None:
    config = Path(directory) / CONFIG_FILE
    if not config.is_file():
        return
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{config} is not valid JSON: {error}") from None
    portable = portable_config(data)
    if portable != data:
        config.write_text(json.dumps(portable, indent=2, sort_keys=True, ensure_ascii=False) +
                          "\n", encoding="utf-8")


def import_tokenizer(source: Path, out_dir: Path) -> Path:
    """Copy the tokenizer files of directory `source` (a tokenizer or a model directory) to
    `out_dir`, made portable; `out_dir` is replaced atomically."""
    import shutil

    tokenizer_file(source)
    with atomic.directory(Path(out_dir), replace=True) as work:
        for name in TOKENIZER_FILES:
            if (Path(source) / name).is_file():
                shutil.copyfile(Path(source) / name, work / name)
        make_portable(work)
    return Path(out_dir)


def tokenizer_file(path: Path) -> Path:
    """The `tokenizer.json` of a tokenizer directory; DataError if there is none."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"tokenizer directory {path} does not exist")
    file = path / TOKENIZER_FILE
    if not file.is_file():
        raise DataError(f"{path} is not a tokenizer directory: it has no {TOKENIZER_FILE} "
                        "(save a fast tokenizer with save_pretrained)")
    return file


def load_fast_tokenizer(path: Path) -> "tokenizers.Tokenizer":
    """The bare `tokenizers` model of a tokenizer directory (no transformers import)."""
    from tokenizers import Tokenizer

    file = tokenizer_file(path)
    try:
        return Tokenizer.from_file(str(file))
    except Exception as error:  # the library raises plain Exceptions for a malformed file
        raise DataError(f"{file} is not a valid tokenizer file: {error}") from None


def load_tokenizer(path: Path) -> "PreTrainedTokenizerFast":
    """The tokenizer directory as a transformers fast tokenizer."""
    tokenizer_file(path)
    from transformers import PreTrainedTokenizerFast

    try:
        return PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
    except Exception as error:
        raise DataError(f"{path} could not be loaded as a tokenizer: {error}") from None


def special_token_id(path: Path, role: str, tokenizer: "tokenizers.Tokenizer | None" = None) -> int:
    """The id of the tokenizer's `role` token ("eos", "bos", "pad") as its config names it."""
    path = Path(path)
    name = _configured_token(path, role)
    if name is None:
        raise DataError(f"tokenizer {path} names no {role}_token in {CONFIG_FILE}")
    tokenizer = tokenizer or load_fast_tokenizer(path)
    token_id = tokenizer.token_to_id(name)
    if token_id is None:
        raise DataError(f"tokenizer {path}: its {role}_token {name!r} is not in its vocabulary")
    return token_id


def _configured_token(path: Path, role: str) -> str | None:
    # tokenizer_config.json is where save_pretrained writes them; older directories keep them in
    # special_tokens_map.json.
    for name in (CONFIG_FILE, "special_tokens_map.json"):
        file = path / name
        if not file.is_file():
            continue
        try:
            value = json.loads(file.read_text(encoding="utf-8")).get(f"{role}_token")
        except (json.JSONDecodeError, AttributeError) as error:
            raise DataError(f"{file} is not a valid JSON object: {error}") from None
        if isinstance(value, dict):  # AddedToken serialised as {"content": ..., ...}
            value = value.get("content")
        if isinstance(value, str):
            return value
    return None


def vocabulary_size(tokenizer: "tokenizers.Tokenizer") -> int:
    """One more than the largest token id: the embedding rows a model needs for this tokenizer."""
    return max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1


__all__ = ["BOS", "EOS", "PAD", "train_bpe_tokenizer", "import_tokenizer", "portable_config", "load_tokenizer", "load_fast_tokenizer",
           "tokenizer_file", "special_token_id", "vocabulary_size"]
