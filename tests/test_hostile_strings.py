"""Hostile strings in every string a spec (or its file name) can carry, compiled and run.

For each field and each hostile value, the spec is compiled twice: once with the hostile value and
once with a benign twin. Either the hostile value is refused with a diagnostic that points at it,
or it compiles and then
- every generated YAML and JSON file parses (one YAML document each), and parses to the same data
  as the twin's, once the hostile value is put back to the twin's value: nothing around the value
  changed, and the value itself arrived unaltered;
- `run.sh` runs to the end, with stub `cszoo` and `genbac` that record their arguments, and the
  arguments are the twin's with the value put back (run.sh passes step names and config paths: a
  spec's strings reach the tools through steps.json and the YAML files, never through the shell);
  nothing else was executed (no PWNED file) and nothing was written outside the project;
- genbac's own stage steps, which run.sh calls as `genbac step . stage-…`, link exactly the file
  the value names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genbac.compiler.compile import compile_all
from genbac.spec.diagnostics import SpecError

SPEC = """\
experiment "hostile" {
  architecture tiny { hidden = 64  layers = 4  heads = 4  kv_heads = 2  ffn = 256  vocab = 1024 }
  base = tiny from "@WEIGHTS@"
  tokenizer = "@TOKENIZER@"
  grow blocks { add = 2 }
  language en "@NAME@" { data = "@DATA@"  tokens = ~44K  eval = "@EVAL@" }
  language de "German" { data = "de.jsonl"  tokens = ~44K }
  train { tokens = 96K  sequence = 128  batch = 8  optimizer = adamw(lr = 3e-3)
          checkpoint every 20 steps }
  hardware = cpu
}
"""
# each twin value is unique in the compiled output, so it can be replaced exactly
TWINS = {"WEIGHTS": "twin-weights", "TOKENIZER": "twin-tokenizer", "NAME": "Twinglish",
         "DATA": "twin-en.jsonl", "EVAL": "twin-en-val.jsonl"}
PATHS = {"WEIGHTS", "TOKENIZER", "DATA", "EVAL"}

PAYLOADS = [
    "$(touch PWNED)", "`touch PWNED`", "'; touch PWNED; '", '"; touch PWNED; "', "x; touch PWNED",
    "x && touch PWNED", "x | touch PWNED", "$((1+1))", "${HOME}", "$HOME", "~root", "-rf",
    "--config=/etc/passwd", "a b  c", " lead", "trail ", "x\ntouch PWNED\n#", "x\n---\ny: 1",
    "German\nsetup:\n  output_dir: /tmp/x", "x\r\ny", "a\tb", "x\u2028y", "x\u2029y", "x\u0085y",
    "x\x00y", "x\x1b[31my", "x\x07y", "x\x7fy", "x\u202ey", "x\u2066y", "\ufeffx", "{{ 7*7 }}",
    "{% raw %}", "${{ github.token }}", "::error::pwned", "%0A::set-env", "key: value",
    "- item", "&anchor", "*alias", "!!python/object/apply:os.system ['touch PWNED']", "? x",
    "| block", "> fold", "# comment", "'single'", "\\", "\\n", "a\\\"b", "\u00e9t\u00e9",
    "\u4e2d\u6587", "\u05e2\u05d1\u05e8\u05d9\u05ea", "\U0001f600", "x" * 300, "null", "true",
    "~", "0x10", "1e3", ".inf", "NO", "on", "*.jsonl", "[a-z]*", "../../../etc/passwd", "\t\t",
    "/abs/path", "hf:org/$(touch PWNED)",
]


def spec_literal(value: str) -> str:
    """`value` as the inside of a spec string: the language's own escapes, the rest raw."""
    return (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            .replace("\t", "\\t"))


def spec_with(field: str, value: str) -> str:
    text = SPEC
    for key, twin in TWINS.items():
        text = text.replace(f"@{key}@", spec_literal(value if key == field else twin))
    return text


def compile_text(text: str, path: str = "hostile.genba"):
    return compile_all(text, path, project_dir="..", sources={})


def put_in(data, twin: str, hostile: str):
    """The twin's parsed document with its value replaced by the hostile one, wherever it stands:
    what the hostile spec must compile to if nothing but the value changed."""
    if isinstance(data, str):
        return data.replace(twin, hostile)
    if isinstance(data, list):
        return [put_in(x, twin, hostile) for x in data]
    if isinstance(data, dict):
        return {put_in(k, twin, hostile): put_in(v, twin, hostile) for k, v in data.items()}
    return data


def plain_path(value: str) -> bool:
    """A path the test can create inside the project (no glob, no way out, not a hub id)."""
    return not (value.startswith(("/", "hf:")) or ".." in value or any(c in value for c in "*?[")
                or value != value.strip() or "\\" in value
                or any(len(part.encode()) > 200 for part in value.split("/")))  # NAME_MAX


def parsed(files: dict[str, bytes]) -> dict:
    out = {}
    for rel, data in files.items():
        text = data.decode("utf-8")
        if rel.endswith(".yaml"):
            docs = list(yaml.safe_load_all(text))
            assert len(docs) == 1, f"{rel}: {len(docs)} YAML documents"
            out[rel] = docs[0]
        elif rel.endswith(".json"):
            out[rel] = json.loads(text)
    return out


STUB = """#!{python}
import json, os, sys
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
if os.environ.get("STUB_REAL_PREFLIGHT") and sys.argv[1:2] == ["preflight"]:
    os.execv(sys.executable, [sys.executable, "-m", "genbac", *sys.argv[1:]])
"""


def run_compiled(tmp: Path, files: dict[str, bytes], values: dict[str, str],
                 real_preflight: bool = False) -> list:
    """Write the output under tmp/project/out, make the files the spec names, run run.sh with
    stub tools (with `genbac preflight` the real one if asked); the tools' argument lists, in
    order."""
    project = tmp / "project"
    out = project / "out"
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    for key in ("DATA", "EVAL"):
        target = project / values[key]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text('{"text": "x"}\n')
    (project / "de.jsonl").write_text('{"text": "x"}\n')
    if not values["TOKENIZER"].startswith("hf:"):
        tok = project / values["TOKENIZER"]
        tok.mkdir(parents=True, exist_ok=True)
        (tok / "tokenizer.json").write_text("{}")
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("cszoo", "genbac"):
        (bin_dir / tool).write_text(STUB.format(python=sys.executable))
        (bin_dir / tool).chmod(0o755)
    log = tmp / "log.jsonl"
    env = {**os.environ, "STUB_LOG": str(log), "CSZOO": str(bin_dir / "cszoo"),
           "GENBAC": str(bin_dir / "genbac"),
           **({"STUB_REAL_PREFLIGHT": "1"} if real_preflight else {})}
    result = subprocess.run(["bash", "run.sh"], cwd=out, env=env, capture_output=True, text=True,
                            timeout=60)
    calls = [json.loads(line.replace(json.dumps(str(tmp))[1:-1], "<tmp>"))
             for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    _, files, _ = compile_text(spec_with(None, ""))
    result, calls = run_compiled(tmp_path_factory.mktemp("twin"), files, TWINS)
    assert result.returncode == 0, result.stderr
    return parsed(files), calls


def _refused_at_value(exc: SpecError, text: str, value: str) -> None:
    """A refusal is a diagnostic pointing into the line that holds the value."""
    line = next(i for i, l in enumerate(text.split("\n"), 1) if spec_literal(value) in l)
    codes = {d.code for d in exc.diagnostics}
    # GB123: an `hf:` value must be ORG/NAME[@REVISION]
    assert codes & {"GB004", "GB106", "GB114", "GB118", "GB123"}, [d.message for d in
                                                                  exc.diagnostics]
    assert any(d.span is not None and d.span.line == line for d in exc.diagnostics)


@pytest.mark.parametrize("field", sorted(TWINS))
@pytest.mark.parametrize("value", PAYLOADS, ids=[ascii(p)[:40] for p in PAYLOADS])
def test_hostile_value_is_refused_or_arrives_unaltered(tmp_path, twin, field, value):
    text = spec_with(field, value)
    try:
        _, files, _ = compile_text(text)
    except SpecError as exc:
        _refused_at_value(exc, text, value)
        return
    assert field in PATHS or value.isprintable(), "text shown to people must be printable"
    twin_docs, twin_calls = twin
    docs = parsed(files)
    # the value reaches the plan exactly as written (after the path rebase, which is a no-op here)
    assert value in json.dumps(docs["plan.json"]["spec"], ensure_ascii=False) or \
        json.dumps(value, ensure_ascii=False)[1:-1] in json.dumps(docs["plan.json"]["spec"],
                                                                   ensure_ascii=False)
    assert sorted(docs) == sorted(twin_docs)
    if field == "TOKENIZER" and value.startswith("hf:"):  # a hub id, not a directory: no twin
        assert all(doc["processing"]["huggingface_tokenizer"] == value[3:]
                   for rel, doc in docs.items() if rel.startswith("cszoo/preprocess/"))
        return
    if field == "WEIGHTS" and value.startswith("hf:"):  # the grow step's input is the hub id
        grow = next(s for s in docs["steps.json"]["steps"] if s["name"] == "grow")
        assert grow["inputs"][0] == {"path": value[3:], "root": "hub", "holds": "weights"}
        return
    for rel, doc in docs.items():
        if rel == "manifest.json":
            continue  # file hashes
        expected = put_in(twin_docs[rel], TWINS[field], value)
        if rel == "plan.json":  # the spec hash differs with the value; nothing else may
            doc, expected = ({k: v for k, v in d.items() if k != "spec_hash"}
                             for d in (doc, expected))
        assert doc == expected, rel
    if field in PATHS and not plain_path(value):
        return  # a glob, an absolute path or a way out names other files than the twin's
    result, calls = run_compiled(tmp_path, files, {**TWINS, field: value})
    assert not list(tmp_path.rglob("PWNED*")), "a payload was executed"
    assert {p.name for p in tmp_path.iterdir()} <= {"project", "bin", "log.jsonl"}
    assert result.returncode == 0, result.stderr
    assert calls == put_in(twin_calls, TWINS[field], value)
    if field in ("DATA", "EVAL"):
        job = "en-val" if field == "EVAL" else "en"
        target = (tmp_path / "project" / value).resolve()
        if not value.endswith((".jsonl", ".json", ".ndjson", ".parquet", ".txt", ".text")):
            from genbac.runtime.data import DataError

            with pytest.raises(DataError, match="unknown kind of data file"):
                staged_by_genbac(tmp_path / "project" / "out", job)
        else:
            assert staged_by_genbac(tmp_path / "project" / "out", job) == [target]


def staged_by_genbac(out: Path, job: str) -> list[Path]:
    """Run the real stage step of `job` (what `genbac step . stage-JOB` does) in this process;
    the files it linked."""
    from genbac.compiler.artifact import Artifact
    from genbac.runtime.context import Context
    from genbac.runtime.steps import run_genbac_step, staged

    ctx = Context(Artifact.load(out), log=lambda line: None)
    run_genbac_step(ctx, ctx.artifact.steps.get(f"stage-{job}"))
    return [p.resolve() for p in staged(ctx, job)]


@pytest.mark.parametrize("name", ["x\ntouch PWNED\n#", "x\rtouch PWNED", "a\u2028b", "a\x1bb",
                                  'a\\"b', "$(touch PWNED)", "'; touch PWNED '", "\u00e9"])
def test_hostile_spec_file_name(tmp_path, name):
    """The spec's own file name reaches comments and manifests: it never ends a comment, and
    arrives whole (a backslash is part of a POSIX file name, not a separator)."""
    from genbac.cli import main

    spec = tmp_path / f"{name}.genba"
    spec.write_text(spec_with(None, ""), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["compile", str(spec), "-o", str(out), "--root", str(tmp_path)]) == 0
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    docs = parsed(files)
    assert docs["manifest.json"]["spec"] == f"{name}.genba"
    for rel, data in files.items():
        if rel.endswith((".yaml", ".sh")):
            # every line of the header is still a comment or code genbac wrote
            header = data.decode("utf-8").split("\n")[:4]
            assert all(line.startswith("#") for line in header[1:3]), (rel, header)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("cszoo", "genbac"):
        (bin_dir / tool).write_text(STUB.format(python=sys.executable))
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "STUB_LOG": str(tmp_path / "log.jsonl"), "CSZOO": str(bin_dir / "cszoo"),
           "GENBAC": str(bin_dir / "genbac")}
    result = subprocess.run(["bash", str(out / "run.sh"), "--dry-run"], cwd=tmp_path,
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.rglob("PWNED*"))


def test_a_missing_source_file_stops_run_sh_before_its_first_step(tmp_path):
    """A data path without wildcards that names no file: run.sh's preflight (`genbac preflight`,
    the checks of `genbac run`) refuses before the first step, so nothing is staged, stamped or
    preprocessed."""
    _, files, _ = compile_text(spec_with("EVAL", "missing/val.jsonl"))
    project = tmp_path / "project"
    result, calls = run_compiled(tmp_path, dict(files), TWINS, real_preflight=True)
    assert result.returncode == 1
    assert "stage-en-val: data source 'missing/val.jsonl' matches no file" in result.stderr
    assert [c[:2] for c in calls] == [["genbac", "preflight"]]  # and no step after it
    assert not list((project / "out" / "work").rglob("*.done"))


@pytest.mark.parametrize("value", [p + ".jsonl" for p in PAYLOADS if plain_path(p + ".jsonl")],
                         ids=lambda p: ascii(p)[:40])
def test_genbac_stages_exactly_the_named_file(tmp_path, value):
    """Each payload as a data file's name (with a readable suffix): genbac's stage step links
    that file and nothing else."""
    text = spec_with("DATA", value)
    try:
        _, files, _ = compile_text(text)
    except SpecError as exc:
        _refused_at_value(exc, text, value)
        return
    out = tmp_path / "project" / "out"
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    target = tmp_path / "project" / value
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text('{"text": "x"}\n')
    assert staged_by_genbac(out, "en") == [target.resolve()]
    assert not list(tmp_path.rglob("PWNED*"))
