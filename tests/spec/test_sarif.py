"""`--format sarif`: one SARIF 2.1.0 log per command, for check, compile and fmt."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from genbac import __version__
from genbac.cli import main
from genbac.spec.diagnostics import Diagnostic, code_descriptions, render_sarif
from genbac.spec.span import Span

from _genba_spec_fixtures import BASE, mutate

# two errors and a warning, all found by one pass (lowering reports every problem it sees)
BROKEN = mutate(("    tokens = 164B", "    tokns = 164B"),  # GB101 at 12:5
                ("bf16", "bf61"),                            # GB120 at 17:17
                ("lr = 1.5e-4", "lr = 0.05"))                # GB901 (warning) at 15:28


def sarif(capsys, *args) -> tuple[int, dict]:
    code = main(list(args))
    out = capsys.readouterr().out
    assert out.endswith("}\n")
    return code, json.loads(out)


@pytest.fixture
def specs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("broken.genba").write_text(BROKEN)
    Path("ok.genba").write_text(BASE)
    return tmp_path


def test_check_writes_a_sarif_log_with_rules_and_located_results(specs, capsys):
    code, log = sarif(capsys, "check", "--format", "sarif", "broken.genba")
    assert code == 1
    assert log["$schema"].endswith("sarif-2.1.0.json") and log["version"] == "2.1.0"
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "genbac" and driver["version"] == __version__
    assert "informationUri" not in driver  # no invented home page
    assert [r["id"] for r in driver["rules"]] == ["GB101", "GB120", "GB901"]
    described = code_descriptions()
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] == described[rule["id"]]
        assert rule["help"]["text"] == (f"{rule['id']}: {described[rule['id']]}. All codes: "
                                        "spec/diagnostics.md in genbac.")
        assert "helpUri" not in rule

    results = run["results"]
    assert [(r["ruleId"], r["level"]) for r in results] == [
        ("GB101", "error"), ("GB901", "warning"), ("GB120", "error")]  # in the order of the file
    for r in results:
        assert driver["rules"][r["ruleIndex"]]["id"] == r["ruleId"]
        assert r["message"]["text"]
        (where,) = r["locations"]
        assert where["physicalLocation"]["artifactLocation"]["uri"] == "broken.genba"
    regions = [r["locations"][0]["physicalLocation"]["region"] for r in results]
    assert [(g["startLine"], g["startColumn"]) for g in regions] == [(12, 5), (15, 28), (17, 17)]
    assert regions[0] == {"startLine": 12, "startColumn": 5, "endLine": 12, "endColumn": 10}
    assert "did you mean `tokens`?" in results[0]["message"]["text"]


def test_one_log_for_several_files_and_an_empty_one_for_clean_specs(specs, capsys):
    code, log = sarif(capsys, "check", "--format", "sarif", "ok.genba", "broken.genba", "ok.genba")
    assert code == 1 and len(log["runs"]) == 1 and len(log["runs"][0]["results"]) == 3
    code, log = sarif(capsys, "check", "--format", "sarif", "ok.genba")
    assert code == 0 and log["runs"][0]["results"] == [] and log["runs"][0]["tool"]["driver"]["rules"] == []


def test_compile_and_fmt_speak_sarif_too(specs, capsys):
    code, log = sarif(capsys, "compile", "--format", "sarif", "broken.genba", "-o", "out")
    assert code == 1 and len(log["runs"][0]["results"]) == 3 and not Path("out").exists()
    Path("syntax.genba").write_text(BROKEN.replace("sequence = 8192", "sequence: 8192"))
    Path("ugly.genba").write_text(BASE.replace("base = ", "base   =  "))
    code, log = sarif(capsys, "fmt", "--check", "--format", "sarif", "syntax.genba", "ugly.genba")
    assert code == 1
    found = [(r["ruleId"], r["level"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
              r["locations"][0]["physicalLocation"]["region"]["startLine"])
             for r in log["runs"][0]["results"]]
    assert found == [("GB001", "error", "syntax.genba", 13), ("GB950", "warning", "ugly.genba", 2)]


def test_levels_uris_and_related_locations():
    span = Span("my specs/a b.genba", 3, 2, 3, 4, 20, 22)
    other = Span("my specs/a b.genba", 1, 1, 1, 5, 0, 4)
    notes = [Diagnostic("GB140", "error", "sums differ", span, secondary=((other, "declared here"),)),
             Diagnostic("GB999", "info", "not a documented code", None)]
    log = json.loads(render_sarif(notes, tool_version="9"))
    first, second = log["runs"][0]["results"]
    assert first["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "my%20specs/a%20b.genba"
    assert first["relatedLocations"] == [{"id": 0, "message": {"text": "declared here"},
                                          "physicalLocation": {
                                              "artifactLocation": {"uri": "my%20specs/a%20b.genba"},
                                              "region": {"startLine": 1, "startColumn": 1,
                                                         "endLine": 1, "endColumn": 5}}}]
    assert second["level"] == "note" and second["locations"] == []
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert rules[1] == {"id": "GB999", "shortDescription": {"text": "GB999"},
                        "help": {"text": "GB999: an undocumented code. All codes: "
                                         "spec/diagnostics.md in genbac."}}
    assert render_sarif(notes, tool_version="9") == render_sarif(notes, tool_version="9")


def test_every_documented_code_has_a_description():
    table = (Path(__file__).resolve().parents[2] / "spec" / "diagnostics.md").read_text()
    assert set(code_descriptions()) == set(re.findall(r"^\| (GB\d{3}) \|", table, re.M))
