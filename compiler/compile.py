"""The whole pipeline as one pure function: spec text -> Plan -> generated files (in memory).

    text --parse--> AST --compose--> AST --lower--> Spec --plan--> Plan --target--> {path: bytes}
                       (imports,       (one per
                        sweeps)         variant)

Writing the files is the CLI's job (`genbac.output`), and reading imported files goes through the
`read` function the caller passes (spec.compose.Files), so all of it can be tested without I/O.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import NamedTuple

from genbac.spec.diagnostics import Diagnostic, SpecError, error, unique
from genbac.spec.limits import MAX_PHASES, MAX_SCHEDULE_CELLS
from genbac.spec.lower import load, load_all

from .plan import Plan
from .planner import plan as make_plan


def plan_spec(text: str, path: str, read=None, sources: dict[str, str] | None = None
              ) -> tuple[Plan, list[Diagnostic]]:
    """Parse, validate and plan one experiment; raises SpecError carrying every diagnostic (also
    for a spec that sweeps: see plan_all)."""
    spec, diagnostics = load(text, path, read, sources)
    plan, warnings = make_plan(spec)
    return plan, diagnostics + warnings


class Planned(NamedTuple):
    name: str | None  # the variant's name, None when the spec sweeps nothing
    values: dict[str, str]  # swept setting -> value as written
    plan: Plan
    diagnostics: list[Diagnostic]


def plan_all(text: str, path: str, read=None, sources: dict[str, str] | None = None
             ) -> list[Planned]:
    """Every experiment of a spec (one, or one per sweep variant), planned; raises SpecError with
    the diagnostics of all variants (each reported once) if any has an error."""
    loaded_all = load_all(text, path, read, sources)
    _check_planning_budget(loaded_all)
    planned, problems = [], []
    for loaded in loaded_all:
        try:
            plan, warnings = make_plan(loaded.spec)
        except SpecError as exc:
            problems = unique([*problems, *exc.diagnostics])
            continue
        planned.append(Planned(loaded.name, loaded.values, plan, loaded.diagnostics + warnings))
    if problems:
        raise SpecError(unique([*problems, *(d for p in planned for d in p.diagnostics)]))
    return planned


class Checked(NamedTuple):
    """What checking one file found (check_source)."""

    document: object  # the file's own syntax tree (spec.ast.Document); None if it does not parse
    planned: tuple[Planned, ...]  # empty for a fragment or a file with errors
    diagnostics: tuple[Diagnostic, ...]  # of every file read, each once, in file order
    fragment: bool  # shared settings for other specs to import: checked where imported


def check_source(text: str, path: str, read, sources: dict[str, str]) -> Checked:
    """`genbac check` of one file, and the language server's: a fragment (settings outside any
    experiment) is checked for its syntax and imports, an experiment is planned (every sweep
    variant). `sources` receives every file read."""
    from genbac.spec.compose import compose, is_fragment
    from genbac.spec.parser import parse

    sources[path] = text
    try:
        document = parse(text, path)
    except SpecError as exc:
        return Checked(None, (), _in_order(exc.diagnostics), False)
    try:
        if is_fragment(document):
            compose(text, path, read, sources)
            return Checked(document, (), (), True)
        planned = plan_all(text, path, read, sources)
    except SpecError as exc:
        return Checked(document, (), _in_order(exc.diagnostics), is_fragment(document))
    return Checked(document, tuple(planned),
                   _in_order(d for p in planned for d in p.diagnostics), False)


def _in_order(diagnostics) -> tuple[Diagnostic, ...]:
    return tuple(sorted(unique(diagnostics), key=lambda d: d.sort_key()))


def schedule_cells(spec) -> int:
    """An upper bound, from the spec alone, on the language-phase cells its schedule solve works
    on: languages x (distinct entry, exit and phase points + 1), at most MAX_PHASES phases."""
    points = {(p.percent, p.tokens) for lang in spec.languages for p in (lang.enter, lang.exit)}
    points |= {(m.start.percent, m.start.tokens) for m in spec.phases}
    return len(spec.languages) * min(len(points | {(0.0, None), (100.0, None)}) - 1, MAX_PHASES)


def _check_planning_budget(loaded: list) -> None:
    """Bounded work per spec: a sweep's variants are solved within one budget of cells, checked
    before the first solve (one experiment is bounded by the language and phase limits)."""
    if len(loaded) < 2:
        return
    cells = [schedule_cells(x.spec) for x in loaded]
    if sum(cells) > MAX_SCHEDULE_CELLS:
        raise SpecError([error(
            "GB119", f"the sweep's {len(loaded)} variants need up to {sum(cells):,} language-phase "
            f"cells solved together; at most {MAX_SCHEDULE_CELLS:,} are planned for one spec",
            loaded[0].spec.span, "too much to plan at once",
            help=("sweep fewer values, or fewer languages and entry points",))])


def plan_json(plan: Plan) -> bytes:
    return (json.dumps(plan.to_json(), indent=2, sort_keys=False,
                       ensure_ascii=False) + "\n").encode("utf-8")


def compile_spec(text: str, path: str, *, project_dir: str, target: str = "cszoo"
                 ) -> tuple[Plan, dict[str, bytes], list[Diagnostic]]:
    """All generated files of a spec, keyed by their path inside the output directory.

    `project_dir` is where the spec's relative paths start, as seen from the output directory
    (e.g. "../examples"); it is the only location that enters the output.
    """
    plan, diagnostics = plan_spec(text, path)
    files, diagnostics = generate_files(plan, diagnostics, text, path, project_dir=project_dir,
                                        target=target)
    return plan, files, diagnostics


def compile_all(text: str, path: str, *, project_dir: str, target: str = "cszoo", read=None,
                sources: dict[str, str] | None = None
                ) -> tuple[list[Planned], dict[str, bytes], list[Diagnostic]]:
    """Like compile_spec, for any spec: one experiment at the top of the output, or, for a spec
    that sweeps, one directory per variant and an index (index.json, plus a manifest)."""
    sources = {} if sources is None else sources
    planned = plan_all(text, path, read, sources)
    imports = {p: hashlib.sha256(t.encode("utf-8")).hexdigest()
               for p, t in sorted(sources.items()) if p != path}
    if planned[0].name is None:
        files, diagnostics = generate_files(planned[0].plan, planned[0].diagnostics, text, path,
                                            project_dir=project_dir, target=target,
                                            imports=imports)
        return planned, files, diagnostics
    files, diagnostics = {}, []
    for variant in planned:
        own, found = generate_files(variant.plan, variant.diagnostics, text, path,
                                    project_dir=posixpath.join("..", project_dir), target=target,
                                    imports=imports)
        files |= {f"{variant.name}/{rel}": data for rel, data in own.items()}
        diagnostics = unique([*diagnostics, *found])
    index = (json.dumps({
        "format": "genbac.sweep/1",
        "spec": posixpath.basename(path),
        "variants": [{"name": v.name, "dir": v.name, "spec_hash": v.plan.spec_hash,
                      "values": v.values} for v in planned],
    }, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    from .artifact import MANIFEST, SWEEP_INDEX

    files[SWEEP_INDEX] = index
    files[MANIFEST] = (json.dumps({
        "format": "genbac.sweep-manifest/1",
        "genbac_version": planned[0].plan.genbac_version,
        "files": {p: hashlib.sha256(b).hexdigest() for p, b in sorted(files.items())},
        # imported files (as the compiling user named them) and their hashes, for provenance:
        # their content is in plan.json's resolved spec
        **({"imports": imports} if imports else {}),
    }, indent=2) + "\n").encode("utf-8")
    return planned, dict(sorted(files.items())), diagnostics


def generate_files(plan: Plan, diagnostics: list[Diagnostic], text: str, path: str, *,
                   project_dir: str, target: str, imports: dict[str, str] | None = None
                   ) -> tuple[dict[str, bytes], list[Diagnostic]]:
    """One experiment's files: the target's, spec.genba, plan.json, steps.json and the
    manifest (compiler/artifact.py)."""
    from . import artifact, targets

    generator = targets.get(target)
    problems = generator.check(plan)
    if any(d.is_error for d in problems):
        raise SpecError(diagnostics + problems)
    diagnostics = diagnostics + problems
    # `path` is the spec as the CLI shows it, with forward slashes already: a backslash is part of
    # a (POSIX) file name, not a separator
    spec_file = posixpath.basename(path)
    steps = generator.steps(plan)
    files = {artifact.SPEC: text.encode("utf-8"), artifact.PLAN: plan_json(plan),
             artifact.STEPS: artifact.steps_json(
                 artifact.StepPlan.make(target=target, steps=tuple(steps)))}
    files |= generator.files(plan, steps, spec_file=spec_file, project_dir=project_dir)
    files[artifact.MANIFEST] = artifact.Manifest.make(
        genbac_version=plan.genbac_version, name=plan.name, spec=spec_file,
        spec_hash=plan.spec_hash, target=target, project_dir=project_dir,
        files={p: hashlib.sha256(b).hexdigest() for p, b in sorted(files.items())},
        imports=imports or {}).to_bytes()
    return dict(sorted(files.items())), diagnostics
