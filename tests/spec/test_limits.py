"""The limits of spec/limits.py, each a located diagnostic (or a one-line usage error for a file
that cannot be read), never a traceback or a hang: one test per class of what the fuzzer and the
hostile cases found."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from genbac.cli import main
from genbac.compiler.compile import compile_all, plan_all
from genbac.spec import limits
from genbac.spec.compose import Files
from genbac.spec.diagnostics import SpecError, render_text

ROOT = Path(__file__).resolve().parents[2]
TINY = (ROOT / "examples" / "tiny-rehearsal.genba").read_text()


def errors(text: str, path: str = "t.genba", read=None) -> list:
    with pytest.raises(SpecError) as exc:
        plan_all(text, path, read)
    return exc.value.diagnostics


def where(text: str, needle: str) -> tuple[int, int]:
    """(line, col) of the first occurrence of needle."""
    offset = text.index(needle)
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def only(diagnostics, code: str):
    found = [d for d in diagnostics if d.code == code]
    assert found, [(d.code, d.message) for d in diagnostics]
    return found[0]


# -- the source itself ------------------------------------------------------------------------------

@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\u202e",
                                  "\u2066", "\x0c"])
@pytest.mark.parametrize("place", ["in a string", "in a comment"])
def test_forbidden_characters_are_refused_where_they_are(char, place):
    old = '"English"' if place == "in a string" else "# trained on"
    new = f'"Eng{char}lish"' if place == "in a string" else f"# trai{char}ned on"
    text = TINY.replace(old, new, 1)
    d = only(errors(text), "GB004")
    assert (d.span.line, d.span.col) == where(text, char)
    assert f"U+{ord(char):04X}" in d.message


def test_nesting_beyond_the_limit_is_refused_before_parsing():
    deep = "[" * (limits.MAX_NESTING + 5) + "1" + "]" * (limits.MAX_NESTING + 5)
    text = TINY.replace("seed = 1234", f"seed = {deep}")
    d = only(errors(text), "GB005")
    assert d.span.line == where(text, "seed = [")[0]
    # brackets inside strings and comments open nothing
    quiet = TINY.replace("seed = 1234", 'seed = 1234  # ' + "[" * 100).replace(
        '"English"', '"' + "(" * 100 + '"')
    assert not any(d.code == "GB005" for d in errors(quiet + "}") if d)


@pytest.mark.parametrize("literal", ["1e400", "9" * 5000, "1e999999999", "1e-400", "20000000T",
                                     "1" + "0" * 45])
def test_number_literals_beyond_any_setting(literal):
    text = TINY.replace("tokens = 8K", f"tokens = {literal}")
    d = only(errors(text), "GB006")
    assert (d.span.line, d.span.col) == where(text, literal)


@pytest.mark.parametrize("setting, value", [
    ("layers     = 4", "layers = 100000"), ("hidden     = 64", "hidden = 1e18"),
    ("vocab      = 1024", "vocab = 1T"), ("batch     = 8", "batch = 1e17"),
    ("seed = 1234", "seed = 1e12"), ("checkpoint every 20 steps", "checkpoint every 1e15 steps"),
    ("enter  = 75%", "enter = 1e18 tokens"), ("hardware = cpu", "hardware = cpu x 1e9"),
    ("context    = 512", "context = 1e15"),
])
def test_every_count_has_a_maximum(setting, value):
    text = TINY.replace(setting, value)
    d = only(errors(text), "GB113")
    assert d.span.line == where(text, value)[0]
    assert "beyond any training run" in d.message


def test_a_point_without_a_unit_is_not_guessed():
    text = TINY.replace("enter  = 75%", "enter  = 75")
    d = only(errors(text), "GB111")
    assert "75%" in d.help[0] and "75 tokens" in d.help[0]


def test_an_architecture_missing_its_keys_is_reported_not_a_crash():
    d = errors('experiment "x" { architecture t {} base = t }')
    assert sum(x.code == "GB104" for x in d) >= 6


def test_too_many_languages_and_phases():
    langs = "\n".join(f'  language l{i} {{ data = "x" tokens = 1K enter = {i}% }}'
                      for i in range(limits.MAX_LANGUAGES + 1))
    text = TINY.replace("  train {", langs + "\n  train {")
    assert "at most 64" in only(errors(text), "GB119").message
    langs = "\n".join(f'  language l{i} {{ data = "x" tokens = ~1K enter = {i * 1.5:.1f}% '
                      f'exit = {50 + i * 0.7:.1f}% }}' for i in range(40))
    text = TINY.replace("  train {", langs + "\n  train {").replace("tokens    = 96K",
                                                                   "tokens = 9600K")
    assert "phases; at most 64" in only(errors(text), "GB119").message


def test_a_sweep_of_large_variants_is_refused_before_it_is_solved_64_times():
    langs = "\n".join(f'  language l{i} {{ data = "x" tokens = 1K enter = {i}% }}'
                      for i in range(60))
    seeds = "sweep(" + ", ".join(str(i) for i in range(64)) + ")"
    text = TINY.replace("  train {", langs + "\n  train {").replace("seed = 1234", f"seed = {seeds}")
    d = only(errors(text), "GB119")
    assert "64 variants of 63 languages each" in d.message
    d = only(errors(text.replace(seeds, "sweep(1, 2, 3, 4)")), "GB119")  # 240 languages
    assert "4 variants need up to" in d.message and "language-phase cells" in d.message
    small = TINY.replace("seed = 1234", f"seed = {seeds}")  # 64 small variants are fine
    assert len(plan_all(small, "t.genba")) == 64


def test_a_long_spec_is_refused_in_time():
    text = TINY.replace("seed = 1234", "seed = 1  " * 6_000)
    d = only(errors(text), "GB007")
    assert "16,384" in d.message
    assert (d.span.line, d.span.col) == (1, 1)


# -- identifiers, names and paths -------------------------------------------------------------------

@pytest.mark.parametrize("old, new, code", [
    ('experiment "tiny-rehearsal"', 'experiment "tiny\\n"', "GB106"),  # `$` would match "\n"
    ('experiment "tiny-rehearsal"', 'experiment "a b"', "GB106"),
    ("architecture tiny", 'architecture "ti\\tny"', "GB106"),
    ('"English"', '"Eng\\nlish"', "GB118"),
    ('"English"', '"Eng\\tlish"', "GB118"),
    ('"data/en/train.jsonl"', '"data/en/\\ntrain.jsonl"', "GB118"),
    ('"data/en/val.jsonl"', '"data/en/\\tval.jsonl"', "GB118"),
])
def test_identifiers_names_and_paths(old, new, code):
    text = TINY.replace(old, new, 1)
    d = only(errors(text), code)
    assert d.span.line == where(text, new)[0]


def test_printable_names_of_every_script_are_kept():
    text = TINY.replace('"English"', '"Ελληνικά 中文 עברית 😀"')
    (planned,) = plan_all(text, "t.genba")
    assert planned.plan.spec.languages[0].name == "Ελληνικά 中文 עברית 😀"


# -- imports ----------------------------------------------------------------------------------------

def _project(tmp_path: Path, importing: str) -> Path:
    (tmp_path / ".git").mkdir(exist_ok=True)
    spec = tmp_path / "exp.genba"
    spec.write_text(f'import "{importing}"\n' + TINY)
    return spec


def _import_errors(tmp_path: Path, spec: Path) -> list:
    return errors(spec.read_text(), str(spec), Files(tmp_path).read)


def test_importing_a_fifo_does_not_wait_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "pipe.genba")
    spec = _project(tmp_path, "pipe.genba")
    result: list = []
    worker = threading.Thread(target=lambda: result.append(_import_errors(tmp_path, spec)),
                              daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "reading the FIFO blocked"
    d = only(result[0], "GB105")
    assert "not a regular file" in d.message


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null"])
def test_importing_a_device_is_refused(tmp_path, target):
    os.symlink(target, tmp_path / "dev.genba")
    spec = _project(tmp_path, "dev.genba")
    with pytest.raises(SpecError) as exc:  # the root check or the regular-file check
        compile_all(spec.read_text(), str(spec), project_dir=".", read=Files(tmp_path).read)
    assert {d.code for d in exc.value.diagnostics} & {"GB105", "GB107"}


def test_importing_a_directory_or_a_huge_file(tmp_path):
    (tmp_path / "dir.genba").mkdir()
    spec = _project(tmp_path, "dir.genba")
    assert "directory" in only(_import_errors(tmp_path, spec), "GB105").message
    with open(tmp_path / "huge.genba", "wb") as f:  # sparse: 200 MB that cost nothing to make
        f.truncate(200 * 1024 * 1024)
    spec = _project(tmp_path, "huge.genba")
    assert "larger than 64 KiB" in only(_import_errors(tmp_path, spec), "GB105").message


def test_an_import_path_with_a_nul_byte(tmp_path):
    spec = _project(tmp_path, "x")
    text = spec.read_text().replace('import "x"', 'import "a\x00b"')
    d = only(errors(text, str(spec), Files(tmp_path).read), "GB004")
    assert d.span.line == 1


def test_import_chains_and_counts(tmp_path):
    (tmp_path / ".git").mkdir(exist_ok=True)
    for i in range(1000):  # a chain 1,000 files deep
        (tmp_path / f"f{i}.genba").write_text(f'import "f{i + 1}.genba"\n' if i < 999 else
                                              "hardware = cpu\n")
    spec = tmp_path / "exp.genba"
    spec.write_text('import "f0.genba"\n' + TINY)
    d = only(_import_errors(tmp_path, spec), "GB117")
    assert "16 files deep" in d.message
    wide = "".join(f'import "w{i}.genba"\n' for i in range(100))
    for i in range(100):
        (tmp_path / f"w{i}.genba").write_text("hardware = cpu\n")
    spec.write_text(wide + TINY)
    assert "more than 64 files" in only(_import_errors(tmp_path, spec), "GB117").message


# -- the command line -------------------------------------------------------------------------------

def genbac(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genbac", *args], capture_output=True,
                          text=True, timeout=60, **kw)


def test_a_fifo_or_device_as_the_spec_is_a_usage_error(tmp_path):
    os.mkfifo(tmp_path / "pipe.genba")
    for path in (tmp_path / "pipe.genba", Path("/dev/zero")):
        r = genbac("check", str(path))
        assert r.returncode == 2, r.stderr
        assert "not a regular file" in r.stderr and "Traceback" not in r.stderr


def test_control_characters_never_reach_the_terminal(tmp_path):
    spec = tmp_path / "e\x1b[31mvil.genba"
    spec.write_text(TINY.replace('"English"', '"Eng\x1b]0;pwned\x07lish"'))
    r = genbac("check", str(spec))
    assert r.returncode == 1
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr
    assert "␛" in r.stderr and "GB004" in r.stderr


def test_carets_stay_under_their_column_with_control_pictures():
    text = TINY.replace('"English"', '"En\x1bglish"')
    d = only(errors(text), "GB004")
    out = render_text([d], {"t.genba": text})
    line, caret = next((a, b) for a, b in zip(out.splitlines(), out.splitlines()[1:])
                       if "␛" in a)
    assert caret.index("^") == line.index("␛")


def test_an_unexpected_exception_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "exp.genba"
    spec.write_text(TINY)

    def broken(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("genbac.compiler.compile.plan_all", broken)
    monkeypatch.delenv("GENBAC_DEBUG", raising=False)
    assert main(["check", str(spec)]) == 3
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert re.search(r"internal error \[GB999\] in `genbac check` on .*exp\.genba: "
                     r"ZeroDivisionError: division by zero\. This is a genbac bug", err)
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "check", str(spec)])


def test_templates_cannot_print_a_raw_value():
    from genbac.compiler.targets import render

    template = render.environment().from_string("# {{ value }}\n")
    with pytest.raises(TypeError, match="without `| yaml`, `| q` or `| comment`"):
        template.render(value="x\ny: 1")
    assert render.environment().from_string("# {{ v | comment }}").render(
        v="a\nb\x00c\u2028d é") == "# a\\nb\\x00c\\u2028d é"
