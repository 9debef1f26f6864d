"""`genbac lsp` answering a real client: a `genbac lsp --stdio` process driven over JSON-RPC
(tests/lsp/lsp_client.py), as an editor drives it: open, change, diagnostics, quick fixes, hover,
completion, formatting, outline, definition, shutdown."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_client import Client, LspError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
GENBA = "llama-genba-10b.genba"


@pytest.fixture
def project(tmp_path) -> Path:
    """A project (a directory with .git) holding the GENBA example and the spec importing it."""
    (tmp_path / ".git").mkdir()
    shutil.copy(EXAMPLES / GENBA, tmp_path / GENBA)
    (tmp_path / "composition").mkdir()
    shutil.copy(EXAMPLES / "composition" / "genba-bar-entry.genba",
                tmp_path / "composition" / "genba-bar-entry.genba")
    return tmp_path


@pytest.fixture
def client(project):
    c = Client(cwd=project)
    c.initialize(project)
    yield c
    c.close()


def position_of(text: str, needle: str, delta: int = 0) -> tuple[int, int]:
    """(line, character) of `needle` in an ASCII text, 0-based as LSP counts."""
    offset = text.index(needle) + delta
    return text.count("\n", 0, offset), offset - (text.rfind("\n", 0, offset) + 1)


def test_initialize_says_what_the_server_does(project):
    c = Client(cwd=project)
    try:
        result = c.initialize(project)
        caps = result["capabilities"]
        assert result["serverInfo"]["name"] == "genbac"
        for provider in ("hoverProvider", "completionProvider", "documentFormattingProvider",
                         "documentSymbolProvider", "definitionProvider", "codeActionProvider"):
            assert caps.get(provider) not in (None, False), provider
        assert caps["textDocumentSync"]["change"] == 1  # full text: each change sends the file
        assert caps["positionEncoding"] == "utf-16"
        assert c.shutdown() == 0
    finally:
        c.close()


def test_diagnostics_follow_the_edits_with_codes_spans_and_fixes(client, project):
    path = project / GENBA
    text = path.read_text()
    uri = client.open(path)
    assert client.diagnostics(uri, 1) == []  # the GENBA example is clean

    broken = text.replace("enter  = 90%", "enter  = 90")
    client.change(uri, broken, 2)
    (d,) = client.diagnostics(uri, 2)
    line, col = position_of(broken, "enter  = 90", len("enter  = "))
    assert d["range"] == {"start": {"line": line, "character": col},
                          "end": {"line": line, "character": col + 2}}
    assert (d["code"], d["severity"], d["source"]) == ("GB111", 1, "genbac")
    assert "has no unit" in d["message"] and "help: write `90%`" in d["message"]

    actions = client.request("textDocument/codeAction", {
        "textDocument": {"uri": uri}, "range": d["range"], "context": {"diagnostics": [d]}})
    assert [a["title"] for a in actions] == ["Write `90%`", "Write `90 tokens`"]
    assert actions[0]["isPreferred"] and actions[0]["kind"] == "quickfix"
    (edit,) = actions[0]["edit"]["changes"][uri]
    assert edit == {"range": d["range"], "newText": "90%"}

    client.change(uri, text, 3)  # the fix applied: clean again
    assert client.diagnostics(uri, 3) == []


def test_every_syntax_error_at_once_and_secondary_spans_as_related_information(client, project):
    path = project / GENBA
    text = path.read_text()
    broken = (text.replace("tokens = 80M", "tokens = 80MB").replace("sequence  = 8192",
                                                                      "sequence: 8192")
              .replace("hardware = cs-2 x 1", "hardware = cs-2 x1"))
    uri = client.open(path, broken)
    found = client.diagnostics(uri, 1)
    assert [(d["code"], d["range"]["start"]["line"]) for d in found] == [
        ("GB003", position_of(broken, "80MB")[0]), ("GB001", position_of(broken, "sequence:")[0]),
        ("GB003", position_of(broken, "x1")[0])]

    twice = text.replace("    eval_steps       = 50\n", "    eval_steps       = 50\n"
                         "    eval_steps       = 60\n")
    client.change(uri, twice, 2)
    (d,) = client.diagnostics(uri, 2)
    assert d["code"] == "GB102"
    (related,) = d["relatedInformation"]
    assert related["message"] == "first set here"
    assert related["location"]["uri"] == uri
    assert related["location"]["range"]["start"]["line"] == position_of(twice, "eval_steps")[0]


def test_hover_shows_what_the_compiler_decided(client, project):
    path = project / GENBA
    text = path.read_text()
    uri = client.open(path)
    client.diagnostics(uri, 1)
    hover = client.request("textDocument/hover", client.at(uri, *position_of(text, "bar \"Bav")))
    value = hover["contents"]["value"]
    assert hover["contents"]["kind"] == "markdown"
    assert "first step 37,536" in value and "80,003,072 tokens compiled" in value
    # over a key: what it means, and the block's numbers
    hover = client.request("textDocument/hover", client.at(uri, *position_of(text, "enter  =")))
    assert "When the language enters training" in hover["contents"]["value"]
    assert "37,536" in hover["contents"]["value"]
    hover = client.request("textDocument/hover", client.at(uri, *position_of(text, "add   = 8")))
    assert "[0-3] +3 [4-7] +7" in hover["contents"]["value"]
    assert "9,775,157,248" in hover["contents"]["value"]
    hover = client.request("textDocument/hover", client.at(uri, *position_of(text, "hardware =")))
    assert "estimate" in hover["contents"]["value"] and "MWh" in hover["contents"]["value"]
    # between blocks there is nothing to say
    assert client.request("textDocument/hover", client.at(uri, 0, 3)) is None


def test_hover_of_a_sweep_shows_each_variant(client, project):
    path = project / "composition" / "genba-bar-entry.genba"
    text = path.read_text()
    uri = client.open(path)
    assert client.diagnostics(uri, 1) == []
    at = client.at(uri, *position_of(text, "language bar", 9))
    found = client.request("textDocument/hover", at)
    value = found["contents"]["value"]
    for variant in ("bar-enter85", "bar-enter90", "bar-enter95"):
        assert variant in value
    assert "first step 37,536" in value  # the 90% variant: the paper's


def test_completion_offers_the_keys_of_a_language_block(client, project):
    path = project / GENBA
    text = path.read_text()
    fresh = text.replace("  train {", '  language sv "Swedish" {\n    \n  }\n\n  train {')
    uri = client.open(path, fresh)
    line, _ = position_of(fresh, 'language sv "Swedish" {\n')
    items = client.request("textDocument/completion", client.at(uri, line + 1, 4))["items"]
    assert sorted(i["label"] for i in items) == ["corpus", "data", "enter", "eval", "exit",
                                                 "tokens"]
    enter = next(i for i in items if i["label"] == "enter")
    assert "%" in enter["documentation"]["value"] and enter["textEdit"]["newText"] == "enter = "
    # in the Bavarian block, the keys already set are not offered again
    line, _ = position_of(fresh, "    enter  = 90%")
    items = client.request("textDocument/completion", client.at(uri, line, 4))["items"]
    assert sorted(i["label"] for i in items) == ["corpus", "exit"]
    # values: hardware kinds after `hardware =`
    line, col = position_of(fresh, "hardware = cs-2", len("hardware = "))
    items = client.request("textDocument/completion", client.at(uri, line, col))["items"]
    assert {"cs-2", "cs-3", "h100", "a100", "cpu"} <= {i["label"] for i in items}
    # a name with dots and dashes is replaced whole, whatever the editor takes for a word
    typed = fresh.replace("base = llama3.1-8b from", "base = llama3.1-8 from")
    client.change(uri, typed, 2)
    line, col = position_of(typed, "llama3.1-8 from", len("llama3.1-8"))
    items = client.request("textDocument/completion", client.at(uri, line, col))["items"]
    edit = next(i for i in items if i["label"] == "llama3.1-8b")["textEdit"]
    assert edit["range"] == {"start": {"line": line, "character": col - len("llama3.1-8")},
                             "end": {"line": line, "character": col}}


def test_formatting_returns_what_genbac_fmt_writes(client, project):
    path = project / GENBA
    messy = path.read_text().replace("  train {\n    tokens    = 164B",
                                     "  train {\n        tokens=164B")
    uri = client.open(path, messy)
    (edit,) = client.request("textDocument/formatting", {
        "textDocument": {"uri": uri}, "options": {"tabSize": 2, "insertSpaces": True}})
    fmt = subprocess.run([sys.executable, "-m", "genbac", "fmt", "-"], input=messy,
                         capture_output=True, text=True, check=True).stdout
    assert edit["newText"] == fmt and fmt != messy
    lines = messy.split("\n")
    assert edit["range"] == {"start": {"line": 0, "character": 0},
                             "end": {"line": len(lines) - 1, "character": len(lines[-1])}}
    client.change(uri, fmt, 2)
    assert client.request("textDocument/formatting", {
        "textDocument": {"uri": uri}, "options": {"tabSize": 2, "insertSpaces": True}}) == []


def test_outline_and_go_to_definition(client, project):
    path = project / GENBA
    uri = client.open(path)
    (experiment,) = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    assert experiment["name"] == "llama-genba-10b"
    assert [(c["name"], c.get("detail")) for c in experiment["children"]] == [
        ("base", 'llama3.1-8b from "hf:meta-llama/Llama-3.1-8B"'), ("grow blocks", None),
        ("language en", "English"), ("language de", "German"), ("language bar", "Bavarian"),
        ("train", None), ("hardware", "cs-2 x 1")]

    spec = project / "composition" / "genba-bar-entry.genba"
    text = spec.read_text()
    uri = client.open(spec)
    found = client.request("textDocument/definition",
                           client.at(uri, *position_of(text, '"../llama', 3)))
    assert found["uri"] == path.resolve().as_uri()
    # the overriding `language bar` goes to the block it overrides, in the imported file
    found = client.request("textDocument/definition",
                           client.at(uri, *position_of(text, "language bar", 9)))
    genba = path.read_text()
    assert found["uri"] == path.resolve().as_uri()
    assert found["range"]["start"] == dict(zip(("line", "character"),
                                               position_of(genba, 'bar "Bavarian"')))


def test_an_unsaved_edit_to_an_imported_file_shows_in_the_spec_that_imports_it(client, project):
    base, spec = project / GENBA, project / "composition" / "genba-bar-entry.genba"
    spec_uri = client.open(spec)
    assert client.diagnostics(spec_uri, 1) == []
    base_uri = client.open(base)
    client.diagnostics(base_uri, 1)
    broken = base.read_text().replace("batch     = 480", "batch     = 480 steps")
    client.change(base_uri, broken, 2)
    (own,) = client.diagnostics(base_uri, 2)
    (there,) = client.wait_for("textDocument/publishDiagnostics",
                               lambda p: p["uri"] == spec_uri and p["diagnostics"])["diagnostics"]
    assert own["code"] == there["code"] == "GB111"
    assert there["message"].startswith(f"in ../{GENBA}: ")
    import_line = position_of(spec.read_text(), "import ")[0]
    assert there["range"]["start"]["line"] == import_line  # on the import statement
    assert there["relatedInformation"][0]["location"] == {"uri": base_uri, "range": own["range"]}


def test_closing_an_unsaved_import_rechecks_the_specs_that_import_it(client, project):
    base, spec = project / GENBA, project / "composition" / "genba-bar-entry.genba"
    spec_uri = client.open(spec)
    base_uri = client.open(base)
    client.change(base_uri, base.read_text().replace("batch     = 480", "batch     = 480 steps"), 2)
    client.wait_for("textDocument/publishDiagnostics",
                    lambda p: p["uri"] == spec_uri and p["diagnostics"])
    seen = len(client.notifications)
    client.notify("textDocument/didClose", {"textDocument": {"uri": base_uri}})
    assert client.wait_for("textDocument/publishDiagnostics",
                           lambda p: p["uri"] == spec_uri, after=seen)["diagnostics"] == []


def test_columns_are_counted_in_the_negotiated_encoding(project):
    path = project / GENBA
    text = path.read_text().replace('language bar "Bavarian" {',
                                    'language bar "Bairisch 🥨" {  enter = 90%  exit = 95')
    column = position_of(text.replace("🥨", "XX"), "exit = 95", len("exit = "))[1]
    for encodings, expected in ((None, column), (["utf-8"], column + 2), (["utf-32"], column - 1)):
        c = Client(cwd=project)
        try:
            chosen = c.initialize(project, encodings)["capabilities"]["positionEncoding"]
            uri = c.open(path, text.replace("    enter  = 90%\n", ""))
            found = [d for d in c.diagnostics(uri, 1) if d["code"] == "GB111"]
            assert found and found[0]["range"]["start"]["character"] == expected, chosen
        finally:
            c.close()


def test_the_server_stays_light_and_exits_cleanly(project):
    probe = ("import atexit, json, sys\n"
             "atexit.register(lambda: print(json.dumps(sorted(m for m in "
             "('torch', 'transformers', 'datasets', 'mlflow') if m in sys.modules)), "
             "file=sys.stderr))\n"
             "from genbac.cli import main\nsys.exit(main(['lsp']))\n")
    c = Client([sys.executable, "-c", probe], cwd=project)
    try:
        c.initialize(project)
        path = project / GENBA
        text = path.read_text()
        uri = c.open(path)
        c.diagnostics(uri, 1)
        c.request("textDocument/hover", c.at(uri, *position_of(text, "bar \"Bav")))
        c.request("textDocument/completion", c.at(uri, *position_of(text, "enter")))
        c.request("textDocument/formatting", {"textDocument": {"uri": uri}, "options": {
            "tabSize": 2, "insertSpaces": True}})
        assert c.shutdown() == 0
        assert json.loads(c.stderr.decode().strip().splitlines()[-1]) == []
    finally:
        c.close()


def test_a_request_before_initialize_is_an_error_not_a_crash(project):
    c = Client(cwd=project)
    try:
        with pytest.raises(LspError, match="initialized"):
            c.request("textDocument/hover", c.at("file:///x.genba", 0, 0), timeout=10)
        c.initialize(project)
        assert c.shutdown() == 0
    finally:
        c.close()
