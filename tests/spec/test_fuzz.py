"""Fuzzing: whatever a spec says, genbac answers with diagnostics, quickly; never a traceback.

Two sources of specs: ones generated from the language's shapes (blocks, settings, values, with the
real vocabulary of keys so that lowering and planning are reached, and hostile numbers and strings
in every position), and byte-level mutations of the examples. Each is checked, formatted and, when
it is valid, compiled, with every generated YAML and JSON file parsed back. The only exception
allowed out of the pipeline is SpecError; a case slower than the hang bound fails (the bound
detects hangs on a loaded 2-core runner, it is not a benchmark: see bench/hostile_check.py).
The whole module is bounded to about a minute of CI time by its example counts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genbac.compiler import diff
from genbac.compiler.compile import compile_all, plan_all
from genbac.compiler.explain import explain, explain_sweep
from genbac.spec import lower
from genbac.spec.compose import Files
from genbac.spec.diagnostics import SpecError
from genbac.spec.format import format_source

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEEDS = sorted(EXAMPLES.rglob("*.genba"))
HANG_BOUND_S = 10.0

KEYS = sorted(lower.EXPERIMENT_KEYS | lower.ARCHITECTURE_KEYS | lower.LANGUAGE_KEYS
              | lower.TRAIN_KEYS | set().union(*lower.GROW_KEYS.values()) | lower.VOCAB_KEYS
              | {"en", "de", "bar", "lr", "to", "betas", "clip", "weight_decay", "momentum"})
BLOCKS = sorted(lower.EXPERIMENT_BLOCKS | {"experiment", "blocks", "depth"})
NAMES = sorted(set(lower.HARDWARE_KINDS) | set(lower.PRECISIONS) | set(lower.OPTIMIZERS)
               | set(lower.SCHEDULE_PIECES) | {"tiny", "llama3.2-1b", "smollm2-135m", "bpe",
                                               "identity", "copy", "all", "new", "interleave",
                                               "top", "sweep", "x1", "en"})
NUMBERS = ["0", "1", "2", "4", "8", "64", "90%", "100%", "101%", "0.5%", "~82B", "80M", "1.5e-4",
           "1e400", "1e-400", "9" * 60, "1e999999999", "1_000_000", "1000 steps", "5 tokens",
           "128 sequences", "-1", "1.5", "44K", "1T", "1e18", "0.0000001"]
STRINGS = ['"data/en/train.jsonl"', '"data/*/train.jsonl"', '""', '" "', '"a\\nb"', '"a\\tb"',
           '"$(touch PWNED)"', '"../../../etc/passwd"', '"hf:org/model"', '"German"',
           '"x\\"y"', '"\u00e9\u00e8\u4e2d"', '"' + "a" * 300 + '"']


def _values():
    leaf = (st.sampled_from(NUMBERS) | st.sampled_from(STRINGS) | st.sampled_from(NAMES)
            | st.sampled_from(["true", "false"]))

    def extend(inner):
        args = st.lists(st.tuples(st.none() | st.sampled_from(KEYS), inner), max_size=3)
        return (st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")
                | st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(" + ", ".join(xs) + ")")
                | st.tuples(st.sampled_from(NAMES), args).map(
                    lambda t: t[0] + "(" + ", ".join(v if k is None else f"{k} = {v}"
                                                     for k, v in t[1]) + ")")
                | st.tuples(inner, st.sampled_from(["from", "then", "x"]), inner).map(" ".join))

    return st.recursive(leaf, extend, max_leaves=8)


def _entries(depth: int):
    setting = (st.tuples(st.sampled_from(KEYS), st.sampled_from(["=", "every"]), _values())
               .map(" ".join))
    if depth == 0:
        return st.lists(setting, max_size=6)
    block = st.tuples(st.sampled_from(BLOCKS),
                      st.lists(st.sampled_from(["en", '"English"', "90%", "tiny", "blocks"]),
                               max_size=2),
                      _entries(depth - 1)).map(
        lambda t: " ".join([t[0], *t[1]]) + " {\n" + "\n".join(t[2]) + "\n}")
    return st.lists(setting | block, max_size=6)


SPECS = st.tuples(st.sampled_from(['"x"', '"tiny-rehearsal"', "x", '"a b"', '""']),
                  _entries(2)).map(lambda t: f"experiment {t[0]} {{\n" + "\n".join(t[1]) + "\n}\n")

INSERTS = ["\x00", "\x1b", "\u2028", "\u0085", "\u202e", "\n", '"', "{", "}", "[", "]", "(", ")",
           "=", "#", "~", "%", "1e400", "9" * 5000, "[" * 40, "x 4", " every ", "import \"x\"",
           "sweep(1, 2)", "\ufeff", "\t"]


@st.composite
def mutants(draw):
    path = draw(st.sampled_from(SEEDS))
    text = path.read_text(encoding="utf-8")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 40)))
        op = draw(st.sampled_from(["delete", "repeat", "insert", "byte"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "repeat":
            text = text[:i] + text[i:j] * draw(st.integers(2, 20)) + text[i:]
        elif op == "insert":
            text = text[:i] + draw(st.sampled_from(INSERTS + NUMBERS + STRINGS)) + text[i:]
        else:
            text = text[:i] + chr(draw(st.integers(0, 0x2FFF))) + text[j:]
    return path.relative_to(EXAMPLES).as_posix(), text


_ORIGINALS: dict[str, object] = {}


def _original_plan(path: str):
    """The plan of the example a mutant came from (for `genbac diff` of the two)."""
    if path not in _ORIGINALS:
        try:
            _ORIGINALS[path] = plan_all((EXAMPLES / path).read_text(encoding="utf-8"), path,
                                        Files(EXAMPLES).read)[0].plan
        except (SpecError, OSError):
            _ORIGINALS[path] = None
    return _ORIGINALS[path]


def check_case(text: str, path: str) -> None:
    """The pipeline as `genbac check`, `fmt`, `compile`, `explain` and `diff` run it, in
    process."""
    start = time.perf_counter()
    try:
        planned, files, _ = compile_all(text, path, project_dir="../examples",
                                        read=Files(EXAMPLES).read, sources={})
    except SpecError:
        planned, files = [], {}
    if len(planned) == 1:  # what reviewers read of a valid spec
        plan = planned[0].plan
        explain(plan, planned[0].diagnostics)
        explain(plan, planned[0].diagnostics, markdown=True)
        original = _original_plan(path)
        if original is not None:
            report = diff.compare(original, plan, old_source="a", new_source="b",
                                  identical_text=False)
            for render in (diff.render_text, diff.render_markdown, diff.render_json):
                render(report)
    elif planned:
        explain_sweep(planned)
    for rel, data in files.items():  # what a valid spec compiles to must parse back
        if rel.endswith(".yaml"):
            assert len(list(yaml.safe_load_all(data.decode("utf-8")))) == 1, rel
        elif rel.endswith(".json"):
            json.loads(data)
        elif rel.endswith(".sh"):
            assert b"\0" not in data
    try:
        format_source(text, path)
    except SpecError:
        pass
    elapsed = time.perf_counter() - start
    assert elapsed < HANG_BOUND_S, f"{elapsed:.1f} s for {text[:200]!r}"


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


@fuzz(800)
@given(SPECS)
def test_generated_specs_give_diagnostics_not_exceptions(text):
    check_case(text, "fuzz.genba")


@fuzz(1200)
@given(mutants())
def test_mutated_examples_give_diagnostics_not_exceptions(case):
    path, text = case
    check_case(text, path)


def test_generator_reaches_the_planner():
    """The generated specs are worth their time only if some get past parsing and lowering."""
    reached = []

    @fuzz(60)
    @given(mutants())
    def collect(case):
        try:
            compile_all(case[1], case[0], project_dir=".", read=Files(EXAMPLES).read, sources={})
            reached.append(case)
        except SpecError:
            pass

    collect()
    assert reached, "no mutant compiled: the mutations are too destructive to test the planner"
