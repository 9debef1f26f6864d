"""Every command's --help: a description of what it does, and examples of that command to copy."""

from __future__ import annotations

import pytest

from genbac.cli import COMMAND_PAGES, build_parser


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_every_command_has_a_page():
    assert set(_subcommands()) == set(COMMAND_PAGES)


@pytest.mark.parametrize("name", sorted(COMMAND_PAGES))
def test_help_has_a_description_and_examples_of_the_command(name):
    page = _subcommands()[name].format_help()
    usage, description = page.split("\n\n")[:2]
    assert usage.startswith(f"usage: genbac {name}")
    assert len(description.split()) >= 5 and not description.lstrip().startswith(("-", "options"))
    examples = page.split("\nexamples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith(f"  genbac {name}") for line in examples), examples

