"""The TextMate grammar (editors/vscode/syntaxes/genba.tmLanguage.json), run by the real
vscode-textmate + vscode-oniguruma (tests/editors/tokenize.js), against genbac's own parser: in
every example spec, each key, string, quantity and comment the parser finds is scoped as such by
the grammar, over every character of it; so are block kinds, call names and argument names."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from genbac.compiler.starter import starter_spec
from genbac.spec import ast
from genbac.spec.format import find_comments
from genbac.spec.parser import parse
from genbac.spec.span import Span

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "editors" / "vscode"
GRAMMAR = EXTENSION / "syntaxes" / "genba.tmLanguage.json"
MODULES = EXTENSION / "node_modules"
SPECS = sorted([*ROOT.glob("examples/**/*.genba"), *ROOT.glob("tests/fixtures/**/*.genba")])

KEY = "variable.other.property.genba"
STRING = "string.quoted.double.genba"
NUMBER = "constant.numeric.genba"
COMMENT = "comment.line.number-sign.genba"
BLOCK = "storage.type.block.genba"
FUNCTION = "entity.name.function.genba"
ARGUMENT = "variable.parameter.genba"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


@pytest.fixture(scope="module")
def tokenize(tmp_path_factory):
    assert (MODULES / "vscode-textmate").is_dir() and (MODULES / "vscode-oniguruma").is_dir(), (
        "vscode-textmate and vscode-oniguruma are missing: run scripts/setup.sh (it runs "
        "`npm ci` in editors/vscode)")
    extra = tmp_path_factory.mktemp("specs") / "starter.genba"
    extra.write_text(starter_spec("starter", "llama3.2-3b", ["en", "sv", "is", "fo"],
                                  hardware="h100 x 4"))

    def run(paths: list[Path]) -> dict[str, list]:
        r = subprocess.run(["node", str(ROOT / "tests" / "editors" / "tokenize.js"),
                            str(GRAMMAR), str(MODULES), *map(str, paths)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    return run, [*SPECS, extra]


def expected_scopes(document: ast.Document) -> list[tuple[object, str]]:
    """(span, scope) for each piece of the spec the grammar must scope."""
    found = [(Span.at_offset(document.path, document.text, c.start, len(c.text)), COMMENT)
             for c in find_comments(document.text)]

    def value(node):
        if isinstance(node, ast.Str):
            found.append((node.span, STRING))
        elif isinstance(node, ast.Quantity):
            found.append((node.span, NUMBER))
        elif isinstance(node, ast.Chain):
            for term in node.terms:
                value(term)
        elif isinstance(node, ast.Call):
            found.append((node.name.span, FUNCTION))
            for arg in node.args:
                if arg.key is not None:
                    found.append((arg.key.span, ARGUMENT))
                value(arg.value)
        elif isinstance(node, (ast.ListValue, ast.TupleValue)):
            for item in node.items:
                value(item)

    def entry(node):
        if isinstance(node, ast.Import):
            found.append((node.path.span, STRING))
        elif isinstance(node, ast.Setting):
            found.append((node.key.span, KEY))
            value(node.value)
        elif isinstance(node, ast.Block):
            found.append((node.kind.span, BLOCK))
            for label in node.labels:
                value(label)
            for e in node.entries:
                entry(e)

    for item in document.items:
        entry(item)
    return found


def utf16(line: str, col: int) -> int:
    return len(line[:col].encode("utf-16-le")) // 2


def test_the_grammar_scopes_what_the_parser_finds(tokenize):
    run, paths = tokenize
    tokens = run(paths)
    checked, problems = 0, []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
        by_line: dict[int, list] = {}
        for line, start, end, scopes in tokens[str(path)]:
            by_line.setdefault(line, []).append((start, end, scopes))
        for span, scope in expected_scopes(parse(text, str(path))):
            assert span.line == span.end_line, span  # each of these is on one line
            line = lines[span.line - 1]
            start, end = utf16(line, span.col - 1), utf16(line, span.end_col - 1)
            covering = [(s, e, sc) for s, e, sc in by_line.get(span.line - 1, [])
                        if s < end and e > start]
            covered = sum(min(e, end) - max(s, start) for s, e, _ in covering)
            wrong = [(line[s:e], sc[1:]) for s, e, sc in covering if scope not in sc]
            if covered != end - start or wrong:
                problems.append(f"{path.name}:{span.line}:{span.col} {line[span.col - 1:]!r}: "
                                f"expected {scope}, found {wrong}")
            checked += 1
    assert not problems, "\n".join(problems[:20])
    assert checked > 500  # every example, not a handful


def test_the_grammar_tells_keys_from_values_and_units(tmp_path, tokenize):
    run, _ = tokenize
    spec = tmp_path / "cases.genba"
    spec.write_text(
        'experiment "x" {\n'
        "  train { tokens = 5120  sequence = 64  checkpoint every 500 steps }\n"
        "  grow blocks { add = 2  train = new }\n"
        "  hardware = cs-2 x 4\n"
        '  language bar "Bavarian" { data = "a\\"b"  enter = ~90%  tokens = 1_000 tokens }\n'
        "}\n")
    found = {}
    lines = spec.read_text().split("\n")
    for line, start, end, scopes in run([spec])[str(spec)]:
        word = lines[line][start:end]
        if word.strip():
            found.setdefault(word, set()).update(scopes[1:])
    assert KEY in found["sequence"] and NUMBER not in found["sequence"]  # not `5120 sequence`
    assert "keyword.other.unit.genba" in found[" steps"]
    assert found["train"] >= {BLOCK, KEY}  # `train {` a block, `train = new` a key
    assert "keyword.operator.times.genba" in found["x"]
    assert "support.constant.genba" in found["cs-2"]
    assert "constant.character.escape.genba" in found['\\"']
    assert NUMBER in found["~90"] and NUMBER in found["1_000"]
