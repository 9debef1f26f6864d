"""`genbac init`: a commented starting spec, from a base and languages, that passes `check` as it is.

A pure function of its choices (the CLI writes the file). Every value in the text is a starting
point, said so in a comment next to it; the numbers are neutral round values, not any paper's.
"""

from __future__ import annotations

import re

from genbac.spec.architectures import BUILTIN, DEFAULT_WEIGHTS, parameter_count
from genbac.spec.format import format_source
from genbac.spec.diagnostics import did_you_mean
from genbac.spec.ir import HARDWARE_KINDS
from genbac.spec.limits import is_identifier

from .schedule import fmt_tokens

# Names for the codes people most often start with; any other code is written without a name.
LANGUAGE_NAMES = {
    "ar": "Arabic", "bar": "Bavarian", "bg": "Bulgarian", "ca": "Catalan", "cs": "Czech",
    "cy": "Welsh", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "et": "Estonian", "eu": "Basque", "fi": "Finnish", "fo": "Faroese",
    "fr": "French", "ga": "Irish", "gl": "Galician", "hr": "Croatian", "hu": "Hungarian",
    "is": "Icelandic", "it": "Italian", "ja": "Japanese", "ko": "Korean", "lb": "Luxembourgish",
    "lt": "Lithuanian", "lv": "Latvian", "mt": "Maltese", "nb": "Norwegian Bokmål",
    "nl": "Dutch", "nn": "Norwegian Nynorsk", "no": "Norwegian", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sl": "Slovenian",
    "sr": "Serbian", "sv": "Swedish", "tr": "Turkish", "uk": "Ukrainian", "zh": "Chinese",
}
# Stricter than the language's own rule (spec.limits.LANGUAGE_CODE), on purpose: on the command
# line `--languages en,English` is far more often a name given for a code than a code.
_CODE = re.compile(r"[a-z]{2,3}(?:_[a-z0-9]{2,8})?")
_HARDWARE = re.compile(r"(?P<kind>[a-z0-9-]+)(?:\s*x\s*(?P<count>[0-9]+))?")


class StarterProblem(ValueError):
    """A choice that would not make a valid spec; the message says what to give instead."""


def default_hardware(base: str) -> str:
    """One H100 where the model's training state fits on it (16 bytes per parameter under
    data parallelism, see compiler.checks), else one CS-2, which streams weights."""
    params = parameter_count(BUILTIN[base])
    return "h100 x 1" if params * 16 <= 80e9 else "cs-2 x 1"


def starter_spec(name: str, base: str, languages: list[str], *, tokens: int = 10 ** 10,
                 hardware: str | None = None, grow: bool = True) -> str:
    """The text of a spec, in `genbac fmt`'s layout; raises StarterProblem for a choice no spec
    can hold. Whether the result passes every check (a model too large for the hardware) is
    for the caller to ask the planner."""
    if not is_identifier(name):
        raise StarterProblem(f"experiment name {name!r}: use letters, digits, `.`, `_` and `-` "
                             "(it becomes directory names and job labels)")
    if base not in BUILTIN:
        guess = did_you_mean(base, BUILTIN)
        raise StarterProblem(f"unknown base {base!r}" + (f"; did you mean {guess!r}?" if guess
                             else "") + "; the bases are " + ", ".join(sorted(BUILTIN)))
    if not languages:
        raise StarterProblem("give at least one language code, e.g. --languages en,sv")
    for code in languages:
        if not _CODE.fullmatch(code):
            raise StarterProblem(f"language code {code!r}: two or three lowercase letters "
                                 "(ISO 639), optionally `_` and a variant: en, bar, nb, de_ch")
    if len(set(languages)) != len(languages):
        raise StarterProblem("a language is given twice")
    if base in BUILTIN and hardware is None:
        hardware = default_hardware(base)
    m = _HARDWARE.fullmatch((hardware or "").strip())
    if m is None or m["kind"] not in HARDWARE_KINDS:
        kind = m["kind"] if m else hardware
        guess = did_you_mean(kind, HARDWARE_KINDS)
        raise StarterProblem(f"unknown hardware {hardware!r}" + (f"; did you mean {guess!r}?"
                             if guess else "") + "; write KIND or KIND x N, KIND one of "
                             + ", ".join(HARDWARE_KINDS))
    count = int(m["count"] or 1)
    if not 1 <= count <= 4096:
        raise StarterProblem(f"hardware count {count}: between 1 and 4096")
    if tokens < 10 ** 6 or tokens > 10 ** 14:
        raise StarterProblem("--tokens: between 1M and 100T")

    arch = BUILTIN[base]
    # about a quarter more layers, as LLaMA Pro did, in equal groups (the count must divide them)
    add = max(d for d in range(1, max(1, arch.layers // 4) + 1) if arch.layers % d == 0)
    share = tokens // len(languages)
    names = {c: LANGUAGE_NAMES.get(c) for c in languages}
    lines = [
        f"# {name}: continual pretraining of {base} on "
        + ", ".join(names[c] or c for c in languages) + ".",
        "#",
        "# Written by `genbac init`: every value is a starting point to change. `genbac explain`",
        "# shows what this compiles to (steps, phases, mixtures, layers, time); `genbac check` says",
        "# what is wrong with it. The language is described in genbac's README (\"The language\").",
        "",
        f'experiment "{name}" {{',
        f'  base = {base} from "{DEFAULT_WEIGHTS[base]}"',
        "",
    ]
    if grow:
        lines += [
            "  # LLaMA-Pro block expansion: new blocks, initialised as identities, learn the new",
            "  # languages while the base keeps computing what it did. Remove the block to train",
            "  # the base as it is.",
            "  grow blocks {",
            f"    add   = {add}  # {arch.layers} -> {arch.layers + add} layers, one after every "
            f"{arch.layers // add}th",
            "    init  = identity",
            "    train = all",
            "  }",
            "",
        ]
    lines += [
        "  # One block per language: where its text is (JSONL with a \"text\" field, parquet,",
        "  # plain text), its token budget (`~` lets it absorb the rounding to the total), and",
        "  # optionally when it enters or leaves training: `enter = 90%`, `exit = 95%`.",
    ]
    for code in languages:
        label = f' "{names[code]}"' if names[code] else ""
        lines.append(f'  language {code}{label} {{ data = "data/{code}/*.jsonl"  '
                     f'tokens = ~{fmt_tokens(share, 3)}  eval = "data/{code}/val.jsonl" }}')
    lines += [
        "",
        "  train {",
        f"    tokens    = {fmt_tokens(tokens)}",
        "    sequence  = 4096",
        "    batch     = 256  # sequences per step",
        "    optimizer = adamw(lr = 3e-4, betas = (0.9, 0.95), weight_decay = 0.1, clip = 1.0)",
        "    schedule  = warmup(1%) then cosine(to = 10%)",
        "    precision = bf16",
        "    checkpoint every 1000 steps",
        "    eval every 1000 steps",
        "  }",
        "",
        f"  hardware = {m['kind']} x {count}",
        "}",
    ]
    return format_source("\n".join(lines) + "\n", f"{name}.genba")  # the one layout
