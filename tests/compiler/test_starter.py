"""`genbac init`: a commented starting spec that passes check and fmt as written; bad choices are
usage errors that say what to give instead, and nothing is written."""

from __future__ import annotations

import pytest

from genbac.cli import main
from genbac.compiler.compile import plan_spec
from genbac.compiler.starter import StarterProblem, starter_spec
from genbac.spec.architectures import BUILTIN
from genbac.spec.format import format_source


@pytest.mark.parametrize("base", sorted(BUILTIN))
@pytest.mark.parametrize("languages,hardware,grow", [
    (["en"], None, True),
    (["en", "sv", "is", "fo"], None, True),
    (["de", "bar", "de_ch"], "cs-2", False),
])
def test_a_starter_spec_passes_check_and_fmt(base, languages, hardware, grow):
    text = starter_spec("starter", base, languages, hardware=hardware, grow=grow)
    plan, diagnostics = plan_spec(text, "starter.genba")
    assert not [d for d in diagnostics if d.is_error]
    assert [lang.code for lang in plan.spec.languages] == languages
    assert plan.spec.train.tokens == 10 ** 10
    assert (plan.growth.method != "none") == grow
    assert format_source(text, "starter.genba") == text  # already in fmt's layout
    assert all(line.startswith("#") for line in text.splitlines()[:5])  # says what it is


def test_init_writes_the_file_and_refuses_to_overwrite_it(tmp_path, capsys):
    path = tmp_path / "nordic.genba"
    args = ["init", str(path), "--base", "llama3.2-3b", "--languages", "en,sv,is,fo",
            "--hardware", "h100 x 4", "--tokens", "20B"]
    assert main(args) == 0
    text = path.read_text()
    assert 'experiment "nordic"' in text and "tokens    = 20B" in text
    assert 'language is "Icelandic"' in text and "hardware = h100 x 4" in text
    assert main(["check", str(path)]) == 0
    path.write_text("# mine\n")
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert path.read_text() == "# mine\n"  # kept
    assert main([*args, "--force"]) == 0 and path.read_text() == text


def test_hardware_the_model_does_not_fit_is_refused_with_the_reason(tmp_path, capsys):
    path = tmp_path / "big.genba"
    assert main(["init", str(path), "--base", "llama3.1-8b", "--hardware", "h100 x 1"]) == 2
    err = capsys.readouterr().err
    assert "would not pass check" in err and "training state 156 GB" in err
    assert not path.exists()
    assert main(["init", str(path), "--base", "llama3.1-8b"]) == 0  # default: a CS-2
    assert "hardware = cs-2 x 1" in path.read_text()


@pytest.mark.parametrize("option,value,message", [
    ("--base", "llama3-8b", "did you mean 'llama3.1-8b'"),
    ("--languages", "en,English", "language code 'English'"),
    ("--languages", "en,en", "given twice"),
    ("--hardware", "h1000 x 4", "did you mean 'h100'"),
    ("--hardware", "4 x h100", "write KIND or KIND x N"),
    ("--tokens", "ten", "a token count such as 10B"),
])
def test_bad_choices_are_usage_errors_and_write_nothing(tmp_path, capsys, option, value, message):
    path = tmp_path / "x.genba"
    assert main(["init", str(path), option, value]) == 2
    assert message in capsys.readouterr().err
    assert not path.exists()


def test_starter_problems_name_the_choices():
    with pytest.raises(StarterProblem, match="the bases are llama3.1-70b, llama3.1-8b"):
        starter_spec("x", "gpt2", ["en"])
