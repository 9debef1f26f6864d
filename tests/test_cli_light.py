"""The compile-side commands stay light: they never import the training stack."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ["torch", "transformers", "datasets", "mlflow"]

PROBE = """
import json, sys
from genbac.cli import main
code = main(sys.argv[1:])
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [
    ["check", "examples/llama-genba-10b.genba"],
    ["explain", "examples/llama-genba-10b.genba"],
    ["explain", "--format", "markdown", "examples/tiny-rehearsal.genba"],
    ["explain", "--format", "markdown", "examples/llama-genba-10b.genba"],
    ["diff", "examples/llama-genba-10b.genba", "examples/llama-genba-10b.genba"],
    ["diff", "--format", "markdown", "tests/fixtures/diff/base.genba",
     "tests/fixtures/diff/base.genba"],
    ["compile", "examples/llama-genba-10b.genba", "-o", "{tmp}/out"],
    ["fmt", "--check", "examples/llama-genba-10b.genba", "examples/tiny-rehearsal.genba"],
    ["check", "--format", "sarif", "examples/tiny-rehearsal.genba"],
    ["schema"],
    ["schema", "--plan"],
    ["init", "{tmp}/starter.genba", "--base", "llama3.2-3b", "--languages", "en,sv"],
])
def test_commands_do_not_import_heavy_packages(args, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], cwd=ROOT,
                       capture_output=True, text=True)
    result = json.loads(r.stderr.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}


def test_explain_traces_every_genba_number(examples):
    r = subprocess.run([sys.executable, "-m", "genbac", "explain",
                        str(examples["llama-genba-10b"])], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for fact in ["41,707 steps", "3,932,160 tokens per step", "0–37,536", "37,536–41,707",
                 "9,775,157,248", "8,030,261,248 + 8 x 218,112,000", "4, 9, 14, 19, 24, 29, 34, 39",
                 "80,003,072", "90%–100%", "[0-3] +3 [4-7] +7", "assumed"]:
        assert fact in out, fact


def test_explain_json_is_the_plan(examples):
    r = subprocess.run([sys.executable, "-m", "genbac", "explain", "--format", "json",
                        str(examples["tiny-rehearsal"])], capture_output=True, text=True)
    plan = json.loads(r.stdout)
    assert plan["format"] == "genbac.plan/1"
    assert plan["schedule"]["total_steps"] == 94
    assert [p["end_step"] for p in plan["schedule"]["phases"]] == [71, 94]
