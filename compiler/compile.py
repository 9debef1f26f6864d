"""The whole pipeline as one pure function: spec text -> Plan -> generated files (in memory).

    text --parse--> AST --lower--> Spec --plan--> Plan --target--> {path: bytes} + manifest

Writing the files is the CLI's job (`genbac.output`), so everything here can be tested without I/O.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import posixpath

from genbac.spec.diagnostics import Diagnostic, SpecError
from genbac.spec.lower import load

from .plan import Plan
from .planner import plan as make_plan


def plan_spec(text: str, path: str) -> tuple[Plan, list[Diagnostic]]:
    """Parse, validate and plan; raises SpecError carrying every diagnostic."""
    spec, diagnostics = load(text, path)
    plan, warnings = make_plan(spec)
    return plan, diagnostics + warnings


def plan_json(plan: Plan) -> bytes:
    return (json.dumps(plan.to_json(), indent=2, sort_keys=False,
                       ensure_ascii=False) + "\n").encode("utf-8")


def compile_spec(text: str, path: str, *, project_dir: str, target: str = "cszoo"
                 ) -> tuple[Plan, dict[str, bytes], list[Diagnostic]]:
    """All generated files of a spec, keyed by their path inside the output directory.

    `project_dir` is where the spec's relative paths start, as seen from the output directory
    (e.g. "../examples"); it is the only location that enters the output.
    """
    from . import targets

    plan, diagnostics = plan_spec(text, path)
    generate = targets.get(target)
    check = getattr(importlib.import_module(generate.__module__), "check", None)
    if check is not None:
        problems = check(plan)
        if any(d.is_error for d in problems):
            raise SpecError(diagnostics + problems)
        diagnostics = diagnostics + problems
    spec_file = posixpath.basename(path.replace("\\", "/"))
    files = {"spec.genba": text.encode("utf-8"), "plan.json": plan_json(plan)}
    files |= generate(plan, spec_file=spec_file, project_dir=project_dir)
    files["manifest.json"] = manifest(plan, files, spec_file, target, project_dir)
    return plan, dict(sorted(files.items())), diagnostics


def manifest(plan: Plan, files: dict[str, bytes], spec_file: str, target: str,
             project_dir: str) -> bytes:
    return (json.dumps({
        "format": "genbac.manifest/1",
        "genbac_version": plan.genbac_version,
        "name": plan.name,
        "spec": spec_file,
        "spec_hash": plan.spec_hash,
        "target": target,
        "project_dir": project_dir,  # where the spec's relative paths start, from the output
        "files": {p: hashlib.sha256(b).hexdigest() for p, b in sorted(files.items())},
    }, indent=2) + "\n").encode("utf-8")
