"""Rendering helpers shared by targets: a jinja2 environment whose only way to print a value is a
YAML serialiser (`| yaml`) or shell quoting (`| q`). Spec strings are untrusted input."""

from __future__ import annotations

import os
import shlex
from functools import lru_cache

import yaml


# libyaml's emitter is 5x faster than the pure-Python one and, for the block-style documents written
# here, byte-identical to it (tests/targets/test_yaml_emitters.py checks this on every golden file).
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):
    """Block style, insertion order, no anchors/aliases: stable, reviewable output."""

    def ignore_aliases(self, data):
        return True


def _represent_str(dumper, data: str):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def to_yaml(data, dumper=None) -> str:
    return yaml.dump(data, Dumper=dumper or _Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100, indent=2).rstrip("\n")


def shell_quote(value) -> str:
    return shlex.quote(str(value))


def _bytecode_cache(jinja2):
    """Compiled templates cached beside the parser tables: compiling them costs more than using them."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = os.path.join(base, "genbac", "templates")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(directory)


@lru_cache(maxsize=1)
def environment():
    import jinja2

    from genbac import templates

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.dirname(templates.__file__)),
        bytecode_cache=_bytecode_cache(jinja2),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.filters["yaml"] = to_yaml
    env.filters["q"] = shell_quote
    return env


def render(template: str, **context) -> bytes:
    return environment().get_template(template).render(**context).encode("utf-8")
