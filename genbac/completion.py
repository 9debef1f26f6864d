"""Shell completion scripts for bash, zsh and fish, made from the command line's own parser.

    eval "$(genbac completion bash)"                         # ~/.bashrc
    eval "$(genbac completion zsh)"                          # ~/.zshrc
    genbac completion fish > ~/.config/fish/completions/genbac.fish

They complete commands, each command's options, the values of options with choices (`--format`,
`--backend`), and otherwise `.genba` files and directories (a compiled experiment is a directory).
Made from `build_parser()`, so a new option is completed without touching this module.
"""

from __future__ import annotations

import argparse
import shlex

SHELLS = ("bash", "zsh", "fish")


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _summaries(parser: argparse.ArgumentParser) -> dict[str, str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a.help or "" for a in action._choices_actions}


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    if shell == "bash":
        return _bash(parser)
    if shell == "zsh":
        return _zsh(parser)
    if shell == "fish":
        return _fish(parser)
    raise ValueError(shell)


def _bash(parser: argparse.ArgumentParser) -> str:
    commands = _commands(parser)
    top = " ".join([*commands, *(s for a in _options(parser) for s in a.option_strings)])
    option_cases, choice_cases = [], []
    for name, sub in commands.items():
        opts = " ".join(s for a in _options(sub) for s in a.option_strings)
        option_cases.append(f"        {name}) opts={shlex.quote(opts)} ;;")
        for action in _options(sub):
            if action.choices:
                words = " ".join(str(c) for c in action.choices)
                for s in action.option_strings:
                    choice_cases.append(f"        {name}:{s}) COMPREPLY=($(compgen -W "
                                        f"{shlex.quote(words)} -- \"$cur\")); return ;;")
            elif action.nargs != 0:
                for s in action.option_strings:
                    choice_cases.append(f"        {name}:{s}) COMPREPLY=($(compgen -f -- "
                                        "\"$cur\")); return ;;")
    return "\n".join([
        "# bash completion for genbac (made by `genbac completion bash`)",
        "_genbac() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local cmd="${COMP_WORDS[1]}" opts=""',
        "    if [[ $COMP_CWORD -eq 1 ]]; then",
        f'        COMPREPLY=($(compgen -W {shlex.quote(top)} -- "$cur")); return',
        "    fi",
        '    case "$cmd:$prev" in',
        *choice_cases,
        "    esac",
        '    case "$cmd" in',
        *option_cases,
        "    esac",
        '    if [[ $cur == -* ]]; then',
        '        COMPREPLY=($(compgen -W "$opts" -- "$cur")); return',
        "    fi",
        "    # specs and compiled experiments: .genba files and directories",
        '    COMPREPLY=($(compgen -d -- "$cur") $(compgen -f -X \'!*.genba\' -- "$cur"))',
        "}",
        "complete -o filenames -F _genbac genbac",
        "",
    ])


def _zsh(parser: argparse.ArgumentParser) -> str:
    # zsh runs bash completion functions through its own bashcompinit, the documented way to share
    # one definition between the two shells
    return "\n".join([
        "# zsh completion for genbac (made by `genbac completion zsh`)",
        "autoload -U +X bashcompinit && bashcompinit",
        _bash(parser),
    ])


def _fish_text(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish(parser: argparse.ArgumentParser) -> str:
    lines = ["# fish completion for genbac (made by `genbac completion fish`)",
             "complete -c genbac -f"]
    for name, summary in _summaries(parser).items():
        lines.append(f"complete -c genbac -n '__fish_use_subcommand' -a {name} "
                     f"-d {_fish_text(summary)}")
    for name, sub in _commands(parser).items():
        seen = f"-n '__fish_seen_subcommand_from {name}'"
        for action in _options(sub):
            flags = []
            for s in action.option_strings:
                flags.append(f"-l {s[2:]}" if s.startswith("--") else f"-s {s[1:]}")
            value = ""
            if action.choices:
                value = " -x -a " + _fish_text(" ".join(str(c) for c in action.choices))
            elif action.nargs != 0:
                value = " -r -F"
            help_text = (action.help or "").split("(")[0].strip()
            lines.append(f"complete -c genbac {seen} {' '.join(flags)}{value} "
                         f"-d {_fish_text(help_text)}")
        lines.append(f"complete -c genbac {seen} -k -a '(__fish_complete_suffix .genba)'")
        lines.append(f"complete -c genbac {seen} -k -a '(__fish_complete_directories)'")
    return "\n".join(lines) + "\n"
