"""Shell completion: the bash script is run by a real bash, as bash's completion would call it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from genbac.cli import COMMAND_PAGES, build_parser
from genbac.completion import script

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def complete(words: list[str], cwd, shell: str = "bash") -> list[str]:
    """What `genbac <words><TAB>` offers: the script sourced, COMP_WORDS set, _genbac called."""
    words_literal = " ".join(f"'{w}'" for w in ["genbac", *words])
    program = (f"{script(shell, build_parser()) if shell == 'bash' else ''}\n"
               f"COMP_WORDS=({words_literal}); COMP_CWORD={len(words)}\n"
               '_genbac; printf "%s\\n" "${COMPREPLY[@]}"\n')
    done = subprocess.run(["bash", "-c", program], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return sorted(line for line in done.stdout.splitlines() if line)


def test_commands_are_completed(tmp_path):
    assert complete(["c"], tmp_path) == ["check", "compare", "compile", "completion"]
    assert set(COMMAND_PAGES) <= set(complete([""], tmp_path))


def test_options_and_their_values_are_completed(tmp_path):
    assert complete(["check", "--fo"], tmp_path) == ["--format"]
    assert complete(["check", "--format", ""], tmp_path) == sorted(
        ["text", "concise", "json", "github", "sarif"])
    assert complete(["run", "x.genba", "--backend", "c"], tmp_path) == ["cszoo"]
    assert "--dry-run" in complete(["run", "--"], tmp_path)


def test_arguments_are_genba_files_and_directories(tmp_path):
    (tmp_path / "exp.genba").write_text("")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "out").mkdir()
    assert complete(["check", ""], tmp_path) == ["exp.genba", "out"]
    assert complete(["run", "e"], tmp_path) == ["exp.genba"]


def test_zsh_and_fish_scripts_cover_every_command():
    zsh = script("zsh", build_parser())
    assert "bashcompinit" in zsh and "complete -o filenames -F _genbac genbac" in zsh
    fish = script("fish", build_parser())
    for name in COMMAND_PAGES:
        assert f"-n '__fish_use_subcommand' -a {name} -d " in fish
    assert "__fish_seen_subcommand_from check' -l format -x -a 'text concise json github sarif'" \
        in fish
