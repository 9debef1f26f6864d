"""libyaml and the pure-Python emitter must write the same bytes, or output would depend on the
machine (PyYAML falls back to pure Python where libyaml is missing)."""

import pytest
import yaml

from genbac.compiler.compile import compile_spec
from genbac.compiler.targets import render


class PureDumper(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True


PureDumper.add_representer(str, render._represent_str)


@pytest.mark.parametrize("name", ["llama-genba-10b", "tiny-rehearsal", "solar-depth-upscaling",
                                  "llama-pro-3b"])
def test_emitters_agree(examples, name):
    plan, files, _ = compile_spec(examples[name].read_text(), "x.genba", project_dir=".")
    for rel, data in files.items():
        if not rel.endswith(".yaml"):
            continue
        doc = yaml.safe_load(data)
        assert render.to_yaml(doc, PureDumper) == render.to_yaml(doc), rel


def test_strings_round_trip():
    tricky = ["yes", "no", "on", "null", "~", "1e3", "0x10", "12:30", "- a", "a: b", "#x", "'q'",
              '"dq"', "line\nbreak", "tab\there", "ünïcode", " lead", "trail ", "", "%TAG", "@at",
              "`tick`", "*alias", "&anchor", "!tag", "{a}", "[b]", "a,b", "?", "|", ">"]
    doc = {"values": tricky}
    assert yaml.safe_load(render.to_yaml(doc)) == doc
