"""The `genbac` command line on broken specs: exit codes, where output goes, nothing written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from genbac.cli import main

from _genba_spec_fixtures import BASE, TRAIN_OPEN, insert_before, mutate

BROKEN = {
    "syntax": mutate(("    sequence = 8192", "    sequence: 8192")),
    "unclosed": BASE.rstrip().removesuffix("}"),
    "unknown-key": mutate(("    tokens = 164B", "    tokns = 164B")),
    "unknown-precision": mutate(("bf16", "bf61")),
    "unknown-hardware": mutate(("cs-2 x 1", "cs2 x 1")),
    "import": mutate(('experiment "mini"', 'import "common.genba"\nexperiment "mini"')),
    "budget-window": mutate(("tokens = 80M", "tokens = 20B")),
    "exact-budgets": mutate(("tokens = ~82B }\n  language de", "tokens = 82B }\n  language de"),
                            ("tokens = ~82B }\n  language bar", "tokens = 82B }\n  language bar")),
    "growth": mutate(("add = 8", "after = [3, 40]")),
    "gpu-memory": mutate(('llama3.1-8b from "hf:meta-llama/Llama-3.1-8B"', "llama3.1-70b"),
                         ("cs-2 x 1", "h100 x 8")),
    "empty-file": "",
    "not-genba": "key: value\nlist:\n  - 1\n",
}
WARN_ONLY = mutate(("lr = 1.5e-4", "lr = 0.05"))


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "genbac", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env=ENV)


ENV = {k: v for k, v in os.environ.items() if k != "FORCE_COLOR"} | {"NO_COLOR": "1"}


@pytest.fixture
def specs(tmp_path):
    for name, text in BROKEN.items():
        (tmp_path / f"{name}.genba").write_text(text, encoding="utf-8")
    (tmp_path / "ok.genba").write_text(BASE, encoding="utf-8")
    (tmp_path / "warn.genba").write_text(WARN_ONLY, encoding="utf-8")
    return tmp_path


# -- in-process: every broken spec is exit 1 for every command and format --------------------------

@pytest.mark.parametrize("fmt", ["text", "concise", "json", "github"])
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_check_exits_1_for_every_broken_spec(specs, name, fmt, capsys, monkeypatch):
    monkeypatch.chdir(specs)
    assert main(["check", f"{name}.genba", "--format", fmt]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if fmt == "json":
        assert json.loads(out)["errors"] >= 1
    elif fmt == "github":
        assert out.startswith(f"::error file={name}.genba,line=")
    elif fmt == "concise":
        assert err.startswith(f"{name}.genba:") and "error[GB" in err
    else:
        assert f"--> {name}.genba:" in err
        assert re.fullmatch(rf"{name}\.genba: \d+ errors?(, \d+ warnings?)?",
                            err.splitlines()[-1])


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_compile_writes_nothing_for_a_broken_spec(specs, name, capsys, monkeypatch):
    monkeypatch.chdir(specs)
    assert main(["compile", f"{name}.genba", "-o", "out/broken"]) == 1
    _, err = capsys.readouterr()
    assert not (specs / "out").exists()
    assert err.rstrip().endswith("nothing written")


# -- subprocess: the real command line ------------------------------------------------------------------

def test_check_text_output(specs):
    r = run_cli("check", "unknown-precision.genba", cwd=specs)
    assert r.returncode == 1
    assert r.stdout == ""
    assert "error[GB120]: unknown precision `bf61`" in r.stderr
    assert "  --> unknown-precision.genba:17:17" in r.stderr
    assert "17 |     precision = bf61\n   |                 ^^^^ unknown precision" in r.stderr
    assert r.stderr.rstrip().endswith("unknown-precision.genba: 1 error")
    assert "\x1b[" not in r.stderr  # stderr is not a terminal


def test_check_concise_output(specs):
    r = run_cli("check", "unknown-hardware.genba", "--format", "concise", cwd=specs)
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == ("unknown-hardware.genba:20:14: error[GB122] unknown "
                                        "hardware `cs2` (did you mean `cs-2`?)")


def test_check_github_output_goes_to_stdout(specs):
    r = run_cli("check", "unknown-precision.genba", "--format", "github", cwd=specs)
    assert r.returncode == 1
    assert r.stdout.startswith("::error file=unknown-precision.genba,line=17,col=17,")
    assert "%0Adid you mean `bf16`?" in r.stdout
    assert r.stderr == ""


def test_check_json_output_goes_to_stdout(specs):
    r = run_cli("check", "growth.genba", "--format", "json", cwd=specs)
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    [d] = doc["diagnostics"]
    assert d["code"] == "GB163"
    assert (d["location"]["file"], d["location"]["line"], d["location"]["col"]) == \
        ("growth.genba", 3, 29)


def test_check_json_of_many_files_is_one_document(specs):
    r = run_cli("check", "growth.genba", "unknown-precision.genba", "--format", "json", cwd=specs)
    assert r.returncode == 1
    doc = json.loads(r.stdout)  # one document, not one per file
    assert [(d["location"]["file"], d["code"]) for d in doc["diagnostics"]] == [
        ("growth.genba", "GB163"), ("unknown-precision.genba", "GB120")]
    assert doc["errors"] == 2


def test_cli_sorts_diagnostics_by_position(specs):
    text = mutate(("cs-2 x 1", "cs2 x 1"), ("bf16", "bf61"),
                  ('language de "German"', 'language en "German"'))
    (specs / "many.genba").write_text(text)
    r = run_cli("check", "many.genba", "--format", "concise", cwd=specs)
    assert r.returncode == 1
    assert [line.split(": ")[0] for line in r.stderr.splitlines()] == \
        ["many.genba:5:12", "many.genba:17:17", "many.genba:20:14"]


def test_compile_broken_spec_exit_1_and_no_output_directory(specs):
    out = specs / "build" / "exp"
    r = run_cli("compile", "budget-window.genba", "-o", out, cwd=specs)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "error[GB139]" in r.stderr
    assert not out.exists() and not (specs / "build").exists()


def test_compile_github_format_on_stdout(specs):
    r = run_cli("compile", "unknown-hardware.genba", "-o", specs / "o", "--format", "github",
                cwd=specs)
    assert r.returncode == 1
    assert r.stdout.startswith("::error file=unknown-hardware.genba,line=20,col=14,")
    assert not (specs / "o").exists()


def test_check_with_only_warnings_exits_0(specs):
    r = run_cli("check", "warn.genba", cwd=specs)
    assert r.returncode == 0
    assert "warning[GB901]" in r.stderr
    assert "warn.genba: ok (" in r.stdout and "1 warning" in r.stdout


def test_compile_with_only_warnings_exits_0_and_writes(specs):
    r = run_cli("compile", "warn.genba", "-o", specs / "out" / "warn", cwd=specs)
    assert r.returncode == 0, r.stderr
    assert "warning[GB901]" in r.stderr
    assert (specs / "out" / "warn" / "manifest.json").is_file()


def test_check_valid_spec_exits_0_quietly(specs):
    r = run_cli("check", "ok.genba", cwd=specs)
    assert r.returncode == 0
    assert r.stderr == ""


def test_check_many_specs_fails_if_one_fails(specs):
    r = run_cli("check", "ok.genba", "unknown-key.genba", cwd=specs)
    assert r.returncode == 1
    assert "ok.genba: ok (" in r.stdout
    assert "unknown-key.genba: 1 error" in r.stderr


@pytest.mark.parametrize("args", [
    pytest.param(["check", "missing.genba"], id="missing-file"),
    pytest.param(["compile", "missing.genba"], id="compile-missing-file"),
    pytest.param(["explain", "missing.genba"], id="explain-missing-file"),
    pytest.param(["check", "."], id="directory"),
    pytest.param(["check", "ok.genba", "--bogus"], id="unknown-flag"),
    pytest.param(["check", "ok.genba", "--format", "xml"], id="bad-format"),
    pytest.param(["frobnicate", "ok.genba"], id="unknown-command"),
    pytest.param([], id="no-command"),
])
def test_usage_errors_exit_2(specs, args):
    r = run_cli(*args, cwd=specs)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip()


def test_missing_file_message(specs):
    r = run_cli("check", "missing.genba", cwd=specs)
    assert r.stderr.strip() == "genbac: error: no such file: missing.genba"


def test_non_utf8_file_is_a_usage_error(specs):
    (specs / "latin1.genba").write_bytes(BASE.replace("German", "Deutsch ü").encode("latin-1"))
    r = run_cli("check", "latin1.genba", cwd=specs)
    assert r.returncode == 2
    assert "not UTF-8" in r.stderr and "Traceback" not in r.stderr


def test_empty_phase_gives_a_diagnostic_not_a_traceback(specs):
    # regression: `genbac check` used to die with a ValueError traceback here
    (specs / "empty-phase.genba").write_text(insert_before(TRAIN_OPEN, "  phase 50% { }\n"))
    r = run_cli("check", "empty-phase.genba", cwd=specs)
    assert "Traceback" not in r.stderr
    assert r.returncode == 1
    assert "empty-phase.genba:11:" in r.stderr
