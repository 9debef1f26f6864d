"""`genbac fmt`: the canonical layout keeps meaning and comments, is idempotent, and the command
rewrites only what changes, atomically, and never a spec it cannot parse."""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
import sys
import typing
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genbac.cli import main
from genbac.compiler.spec_hash import spec_hash
from genbac.spec import ast
from genbac.spec.format import (ENTRY_NODES, GRAMMAR_RULES, FormatError, _Layout, _VALUE_LAYOUTS,
                                find_comments, format_source)
from genbac.spec.lower import load
from genbac.spec.parser import GRAMMAR

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.genba"))


def comments(text: str) -> Counter:
    return Counter(c.text for c in find_comments(text))


def hash_of(text: str) -> str:
    return spec_hash(load(text, "t.genba")[0])


@pytest.fixture(scope="module")
def lark_comments():
    """The comments as lark's own lexer sees them (the grammar's COMMENT terminal)."""
    from lark import Lark

    found = []
    parser = Lark(GRAMMAR.read_text(encoding="utf-8"), parser="lalr",
                  lexer_callbacks={"COMMENT": found.append})

    def lex(text: str) -> list[str]:
        found.clear()
        parser.parse(text)
        return [str(t).rstrip() for t in found]

    return lex


# --------------------------------------------------------------------------------------------------
# the examples are canonical
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_are_canonical_and_keep_hash_and_comments(path, lark_comments):
    text = path.read_text(encoding="utf-8")
    out = format_source(text, str(path))
    assert out == text, "run `genbac fmt examples/` (the examples show the canonical style)"
    squashed = re.sub(r"[ \t]+", " ", text).replace("{\n", "{ \n")  # a different layout ...
    assert format_source(squashed, "x") == text  # ... formats back to the same text
    assert hash_of(out) == hash_of(text) == hash_of(squashed)
    assert comments(out) == comments(text) and sum(comments(text).values()) > 0
    assert [c.text for c in find_comments(text)] == lark_comments(text)


# --------------------------------------------------------------------------------------------------
# layout rules
# --------------------------------------------------------------------------------------------------

def fmt(text: str) -> str:
    out = format_source(text, "t.genba")
    assert format_source(out, "t.genba") == out, "not idempotent"
    return out


def test_blocks_and_brackets_stay_on_one_line_when_their_first_entry_does():
    text = ('experiment "x" {  train { batch=8  seed =1 }\n'
            '  grow blocks {\n add = 2 init = identity }\n'
            '  opt = adamw(lr=1E-4,clip = 1.0)\n'
            '  data = [\n "a", "b"]\n'
            "  t = ( 1, ) c = 1000steps  h = cs-2 x\t4  e{}\n}\n")
    assert fmt(text) == (
        'experiment "x" {\n'
        "  train { batch = 8  seed = 1 }\n"
        "  grow blocks {\n"
        "    add  = 2\n"
        "    init = identity\n"
        "  }\n"
        "  opt  = adamw(lr = 1e-4, clip = 1.0)\n"
        "  data = [\n"
        '    "a",\n'
        '    "b",\n'
        "  ]\n"
        "  t    = (1,)\n"
        "  c    = 1000 steps\n"
        "  h    = cs-2 x 4\n"
        "  e {}\n"
        "}\n")


def test_tables_of_blocks_align_labels_and_similar_columns():
    text = ('language en "English" { data = "en/*.jsonl" tokens = ~82B }\n'
            'language bar "Bavarian" { data = "bar/*.jsonl" tokens = 80M enter = 90% }\n'
            'language de "German" {\n data = "de.jsonl"\n}\n')
    assert fmt(text) == (
        'language en  "English"  { data = "en/*.jsonl"   tokens = ~82B }\n'
        'language bar "Bavarian" { data = "bar/*.jsonl"  tokens = 80M   enter = 90% }\n'
        'language de  "German"   {\n'
        '  data = "de.jsonl"\n'
        "}\n")
    # a path much longer than the others: the labels align, the settings are not padded to it
    text = ('language en "English" { data = "en/*.jsonl" tokens = ~82B }\n'
            'language code "Python" { data = ["code/a/*.parquet", "code/b/*.jsonl"] tokens = 1B }\n')
    assert fmt(text) == (
        'language en   "English" { data = "en/*.jsonl"  tokens = ~82B }\n'
        'language code "Python"  { data = ["code/a/*.parquet", "code/b/*.jsonl"]  tokens = 1B }\n')
    # columns align while their keys agree; a row's cells past that are kept as they are
    text = 'l en { data = "x"  eval = ["e"]  tokens = 1 }\nl de { data = "y"  tokens = 2 }\n'
    assert fmt(text) == text


def test_blank_lines_are_kept_single_and_never_at_block_edges():
    text = "\n\n# top\n\n\n\nexperiment \"x\" {\n\n\n  a = 1\n\n\n\n  bb = 2\n\n}\n\n\n"
    assert fmt(text) == '# top\n\nexperiment "x" {\n  a = 1\n\n  bb = 2\n}\n'


def test_a_number_never_swallows_the_next_key():
    # `8  sequence` on one line would read as the quantity `8 sequences`: the block stays open
    out = fmt("train { batch = 8\n sequence = 128 }\n")
    assert out == "train {\n  batch    = 8\n  sequence = 128\n}\n"


def test_comments_keep_their_places():
    text = (
        "# header\n"
        'experiment "t" {   # after the brace\n'
        "  base = tiny # trailing\n"
        "  # own line, before arch\n"
        "  arch # between key and =\n"
        "  = [  # after [\n"
        '     "a" , # after a\n'
        "\n"
        "     # before b\n"
        '     "b"\n'
        "     # dangling at the end of the list\n"
        "  ]   # after ]\n"
        "  sched = warmup(1%) # inside a chain\n"
        "     then cosine(to = 10%)  # end of the chain\n"
        "}\n"
        "# footer\n")
    out = fmt(text)
    assert out == (
        "# header\n"
        'experiment "t" {  # after the brace\n'
        "  base  = tiny    # trailing\n"
        "  # own line, before arch\n"
        "  # between key and =\n"
        "  arch  = [  # after [\n"
        '    "a",     # after a\n'
        "\n"
        "    # before b\n"
        '    "b",\n'
        "    # dangling at the end of the list\n"
        "  ]  # after ]\n"
        "  # inside a chain\n"
        "  sched = warmup(1%) then cosine(to = 10%)  # end of the chain\n"
        "}\n"
        "# footer\n")
    assert comments(out) == comments(text)


def test_only_comments_and_empty_files():
    assert fmt("") == "" and fmt("\n\n  \n") == ""
    assert fmt("  # one   \n\n\n#two") == "# one\n\n#two\n"


# --------------------------------------------------------------------------------------------------
# new grammar rules fail loudly
# --------------------------------------------------------------------------------------------------

def test_every_rule_of_the_grammar_has_a_layout():
    """A rule added to genba.lark shows up here: give it a layout in spec/format.py, then list it."""
    from lark import Lark

    rules = Lark(GRAMMAR.read_text(encoding="utf-8"), parser="lalr").rules
    in_tree = {str(r.alias or r.origin.name) for r in rules
               if not str(r.origin.name).startswith("_") and not (r.options.expand1 and not r.alias)}
    assert in_tree == GRAMMAR_RULES


def test_every_ast_node_has_a_layout():
    nodes = {cls for cls in vars(ast).values()
             if isinstance(cls, type) and issubclass(cls, tuple) and "span" in getattr(cls, "_fields", ())}
    laid_out = set(_VALUE_LAYOUTS) | set(ENTRY_NODES) | {ast.Arg}
    assert nodes == laid_out, nodes ^ laid_out


def test_an_unknown_node_is_an_error_not_lost_text():
    class Sweep(typing.NamedTuple):  # what a future grammar rule might produce
        values: tuple
        span: object

    layout = _Layout("", [])
    with pytest.raises(FormatError, match="no layout for a Sweep value"):
        layout.value(Sweep((), None), 0)
    with pytest.raises(FormatError, match="no layout for a Sweep entry"):
        layout.entry(Sweep((), None), 0, None)


# --------------------------------------------------------------------------------------------------
# random valid specs
# --------------------------------------------------------------------------------------------------

PUNCTUATION = set("{}()[],=")
UNIT_WORDS = re.compile(r"(steps?|tokens?|sequences?|seqs?)$")
BARE_NUMBER = re.compile(r"[+-]?[\d_.]+(?:[eE][+-]?\d+)?$")


def spellings(value: Decimal) -> list[str]:
    """Ways to write one number: 44000, 44_000, 44K, 0.044M, 4.4e4, 4.4E+4."""
    ways = [format(value, "f"), f"{value:e}".replace("e+", "e"), f"{value:E}"]
    if value == value.to_integral() and value >= 1000:
        ways.append(f"{int(value):_}")
    for scale, power in (("K", 3), ("M", 6), ("B", 9)):
        scaled = value / Decimal(10) ** power
        if Decimal("0.001") <= scaled:
            ways.append(format(scaled.normalize(), "f") + scale)
    return ways


def number(draw, value: str, unit: str = "") -> str:
    ways = spellings(Decimal(value))
    text = draw(st.sampled_from([w for w in ways if not unit or w[-1] not in "KMB"]))
    if unit in ("%", ""):
        return text + unit
    return text + draw(st.sampled_from([" ", "", "  ", "\t"])) + unit


@st.composite
def valid_specs(draw) -> str:
    """A small, valid experiment, its tokens joined by random whitespace and comments."""
    def setting(key, *value):
        return [key, "=", *value]

    def block(head, entries):
        order = draw(st.permutations(entries))
        return [*head, "{", *[t for e in order for t in e], "}"]

    n = lambda v, unit="": number(draw, v, unit)  # noqa: E731
    architecture = block(["architecture", "tiny"], [
        setting(k, n(v)) for k, v in [("hidden", "64"), ("layers", "4"), ("heads", "4"),
                                      ("kv_heads", "2"), ("ffn", "256"), ("vocab", "1024")]])
    languages = []
    for code, name, budget in [("en", '"English"', "44000"), ("de", '"German"', "44000")]:
        entries = [setting("data", f'"data/{code}/train.jsonl"'),
                   setting("tokens", "~" + n(budget))]
        if code == "de" and draw(st.booleans()):
            entries.append(setting("enter", n("50", "%")))
        if draw(st.booleans()):
            entries.append(setting("eval", "[", f'"data/{code}/val.jsonl"', "]"))
        languages.append(block(["language", code, name], entries))
    optimizer = ["adamw", "(", "lr", "=", n("0.003"), ",", "clip", "=", n("1.0"), ")"]
    train = [setting("tokens", n("96000")), setting("sequence", n("128")),
             setting("batch", n("8")), setting("optimizer", *optimizer),
             setting("schedule", "warmup", "(", n("10", "%"), ")", "then", "cosine", "(", "to",
                     "=", n("10", "%"), ")"),
             ["checkpoint", "every", n("20", "steps")]]
    if draw(st.booleans()):
        train.append(setting("seed", n("1234")))
    body = [architecture, setting("base", "tiny")]
    if draw(st.booleans()):
        body.append(block(["grow", "blocks"], [setting("add", n("2")), setting("init", "identity")]))
    body += [*languages, block(["train"], train), setting("hardware", "cpu")]
    tokens = ["experiment", '"random"', "{", *[t for e in body for t in e], "}"]

    comment = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)
    out = [tokens[0]]
    for left, right in zip(tokens, tokens[1:]):
        kind = draw(st.sampled_from(["space", "newline", "comment", "none"]))
        # a bare number and a unit word on one line would be one quantity: `8 steps`
        hazard = BARE_NUMBER.match(left) and UNIT_WORDS.match(right)
        if kind == "none" and (left in PUNCTUATION or right in PUNCTUATION) and not hazard:
            sep = ""
        elif kind == "space" and not hazard:
            sep = draw(st.sampled_from([" ", "  ", "\t"]))
        elif kind == "comment":
            sep = draw(st.sampled_from([" ", "\n  "])) + "#" + draw(comment) + "\n"
        else:
            sep = draw(st.sampled_from(["\n", "\n\n", "\n    "]))
        out += [sep, right]
    return "".join(out) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=valid_specs())
def test_random_specs_format_idempotently_and_keep_hash_and_comments(text, lark_comments):
    out = format_source(text, "t.genba")
    assert format_source(out, "t.genba") == out
    assert hash_of(out) == hash_of(text)
    assert comments(out) == comments(text)
    assert [c.text for c in find_comments(text)] == lark_comments(text)


# --------------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------------

UGLY = 'experiment "x" {\n  base   =  tiny   # keep me\n  hardware=cpu\n}\n'
PRETTY = 'experiment "x" {\n  base     = tiny  # keep me\n  hardware = cpu\n}\n'
BROKEN = 'experiment "x" {\n  base: tiny\n}\n'


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, text in [("ugly.genba", UGLY), ("pretty.genba", PRETTY), ("broken.genba", BROKEN)]:
        Path(name).write_text(text)
        os.utime(name, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    return tmp_path


def mtime(name: str) -> int:
    return os.stat(name).st_mtime_ns


def test_check_lists_what_would_change_and_changes_nothing(files, capsys):
    assert main(["fmt", "--check", "pretty.genba"]) == 0
    assert main(["fmt", "--check", "pretty.genba", "ugly.genba"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "ugly.genba\n"  # the list, for scripts
    assert "ugly.genba:2: not in genbac fmt's layout from this line" in captured.err
    assert "`genbac fmt --check --diff` shows what would change" in captured.err
    assert Path("ugly.genba").read_text() == UGLY and mtime("ugly.genba") == 10 ** 18
    assert main(["fmt", "--check", "--diff", "ugly.genba"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("ugly.genba\n--- a/ugly.genba\n+++ b/ugly.genba\n")
    assert "\n-  hardware=cpu\n" in out and "\n+  hardware = cpu\n" in out
    assert Path("ugly.genba").read_text() == UGLY


def test_check_in_machine_formats_reports_where_the_layout_differs(files, capsys):
    assert main(["fmt", "--check", "--format", "github", "ugly.genba", "pretty.genba"]) == 1
    assert capsys.readouterr().out.startswith(
        "::warning file=ugly.genba,line=2,col=1,endLine=2,endColumn=29,title=GB950::")
    assert main(["fmt", "--diff", "--format", "json", "ugly.genba"]) == 2  # a usage error


def test_fmt_rewrites_atomically_and_leaves_canonical_files_alone(files, capsys):
    os.chmod("ugly.genba", 0o640)
    assert main(["fmt", "ugly.genba", "pretty.genba"]) == 0
    assert capsys.readouterr().err == "reformatted ugly.genba\n"
    assert Path("ugly.genba").read_text() == PRETTY
    assert os.stat("ugly.genba").st_mode & 0o777 == 0o640
    assert mtime("pretty.genba") == 10 ** 18  # not touched
    assert sorted(p.name for p in files.iterdir()) == ["broken.genba", "pretty.genba", "ugly.genba"]
    assert main(["fmt", "ugly.genba"]) == 0 and mtime("pretty.genba") == 10 ** 18


def test_a_crlf_file_keeps_its_line_endings(files, capsys):
    crlf = lambda text: text.replace("\n", "\r\n").encode()  # noqa: E731
    Path("ugly.genba").write_bytes(crlf(UGLY))
    Path("pretty.genba").write_bytes(crlf(PRETTY))
    os.utime("pretty.genba", ns=(10 ** 18, 10 ** 18))
    assert main(["fmt", "--check", "pretty.genba"]) == 0  # canonical in its own line endings
    assert main(["fmt", "ugly.genba", "pretty.genba"]) == 0
    assert Path("ugly.genba").read_bytes() == crlf(PRETTY)
    assert mtime("pretty.genba") == 10 ** 18  # not touched


def test_a_syntax_error_is_reported_and_the_file_left_alone(files, capsys):
    assert main(["fmt", "broken.genba", "ugly.genba"]) == 1
    err = capsys.readouterr().err
    assert "error[GB001]: unexpected `:`" in err and "--> broken.genba:2:7" in err
    assert Path("broken.genba").read_text() == BROKEN and mtime("broken.genba") == 10 ** 18
    assert Path("ugly.genba").read_text() == PRETTY  # the other files are still formatted


def test_stdin_to_stdout(files, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(UGLY))
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr().out == PRETTY
    monkeypatch.setattr(sys, "stdin", io.StringIO(BROKEN))
    assert main(["fmt", "-"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "--> <stdin>:2:7" in captured.err


def test_a_file_that_is_not_there_is_a_usage_error(files, capsys):
    assert main(["fmt", "missing.genba"]) == 2
    assert capsys.readouterr().err == "genbac: error: no such file: missing.genba\n"


# --------------------------------------------------------------------------------------------------
# pre-commit hooks
# --------------------------------------------------------------------------------------------------

def hook_command(entry: str) -> list[str]:
    words = shlex.split(entry)
    assert words[0] == "genbac"
    return [sys.executable, "-m", "genbac", *words[1:]]  # the console script, without PATH


@pytest.mark.parametrize("hook", ["genbac-fmt", "genbac-check"])
def test_pre_commit_hooks_run_on_the_examples(hook, tmp_path):
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    spec = hooks[hook]
    files = [str(p.relative_to(ROOT)) for p in EXAMPLES if re.search(spec["files"], p.name)]
    assert len(files) == len(EXAMPLES)
    r = subprocess.run(hook_command(spec["entry"]) + files, cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    # and the hook does fail a commit of a file it objects to
    bad = tmp_path / "bad.genba"
    bad.write_text(UGLY if hook == "genbac-fmt" else BROKEN)
    r = subprocess.run(hook_command(spec["entry"]) + [str(bad)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and str(bad).replace(os.sep, "/") in r.stdout + r.stderr


def test_leading_comment_is_the_spec_s_opening_comment():
    from genbac.spec.format import leading_comment

    text = "\n# What this is:\n#   indented\n#\n# second paragraph\n\nexperiment \"x\" {  # not this\n}\n"
    assert leading_comment(text) == "What this is:\n  indented\n\nsecond paragraph"
    assert leading_comment('experiment "x" {}\n# after\n') == ""
    assert leading_comment("#no space\n") == "no space"
