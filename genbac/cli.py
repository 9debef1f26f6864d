"""The `genbac` command line.

Exit status: 0 ok (warnings allowed), 1 the spec has errors, 2 usage errors (bad flags, unreadable
files, an output directory that cannot be written), 3 a genbac bug (an unexpected exception: one
line naming the file, and the traceback only with --debug or GENBAC_DEBUG=1). The compile-side commands import only the spec
and compiler packages; torch, transformers, datasets and mlflow are never loaded for them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from genbac import __version__
from genbac.errors import EXIT_BUG, EXIT_OK, EXIT_SPEC, UserError

EXIT_DIFFERENT = 1  # `diff`, as diff(1): 0 same, 1 different, 2 trouble
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # the shell's 128 + SIGINT, 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM during `genbac run` (a scheduler's stop, `kill`), raised like Ctrl-C so that the
    same clean-up runs: child processes stopped, MLflow runs closed as KILLED."""


def _raise_terminated(signum, frame):
    raise Terminated()


class UsageError(UserError):
    """A bad command line or an unreadable file named on it."""


# The spec file a command is working on, for the one line a genbac bug is reported with.
_CURRENT: list[str] = []


def _read_spec(path: str) -> str:
    from genbac.spec.limits import SourceProblem, read_source

    _CURRENT[:] = [path]
    try:
        return read_source(path)
    except SourceProblem as exc:
        if exc.missing:
            raise UsageError(f"no such file: {path}") from None
        raise UsageError(f"cannot read {path}: {exc}") from None


def _display_path(path: str) -> str:
    """Paths in diagnostics as the user wrote them, with forward slashes."""
    return path.replace(os.sep, "/")


def _printable(path: str) -> str:
    """A path in a line genbac prints: control characters shown as symbols (spec.limits.visible),
    so that a file name cannot drive the terminal."""
    from genbac.spec.limits import visible

    return visible(_display_path(path))


# `--format json` and `--format sarif` print one document per command, however many files it
# reads: `_report` collects the diagnostics here and `main` writes the document at the end
_COLLECTED: dict[str, list] = {}


def _report(diagnostics, sources: dict[str, str], fmt: str) -> None:
    from genbac.spec import diagnostics as d
    from genbac.spec.limits import MAX_DIAGNOSTICS

    diagnostics = sorted(diagnostics, key=lambda x: x.sort_key())
    if len(diagnostics) > MAX_DIAGNOSTICS:  # the first ones are the ones to fix
        print(f"genbac: {len(diagnostics):,} problems found; the first {MAX_DIAGNOSTICS} are "
              "shown", file=sys.stderr)
        diagnostics = diagnostics[:MAX_DIAGNOSTICS]
    if fmt in ("json", "sarif"):
        _COLLECTED.setdefault(fmt, []).extend(diagnostics)
    elif fmt == "github":
        sys.stdout.write(d.render_github(diagnostics))
    elif fmt == "concise":
        sys.stderr.write(d.render_concise(diagnostics))
    elif diagnostics:
        sys.stderr.write(d.render_text(diagnostics, sources, color=d.use_color(sys.stderr)))


def _imports(path: str, root: str | None):
    """How a spec's imports are read: from files under the project root (--root, else the
    directory above the spec that holds .git, else the spec's own directory)."""
    from genbac.spec.compose import Files, project_root

    return Files(Path(root) if root else project_root(Path(path))).read


def _plan_all(path: str, fmt: str, root: str | None = None, *, report_ok: bool = True):
    """Every experiment of a spec (one per sweep variant), with its diagnostics reported (errors
    always, warnings unless `report_ok` is false). None if it has errors."""
    from genbac.compiler.compile import plan_all
    from genbac.spec.diagnostics import SpecError, unique

    text = _read_spec(path)
    shown = _display_path(path)
    sources: dict[str, str] = {}
    try:
        planned = plan_all(text, shown, _imports(path, root), sources)
    except SpecError as exc:
        _report(exc.diagnostics, sources or {shown: text}, fmt)
        return None, exc.diagnostics
    diagnostics = [d for p in planned for d in p.diagnostics]
    diagnostics = unique(diagnostics)
    if report_ok:
        _report(diagnostics, sources, fmt)
    return planned, diagnostics


# --------------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------------

def cmd_check(args) -> int:
    from genbac.compiler.compile import check_source
    from genbac.spec.diagnostics import summary_line

    failed = False
    for path in args.specs:
        text, shown = _read_spec(path), _display_path(path)
        sources: dict[str, str] = {}
        checked = check_source(text, shown, _imports(path, args.root), sources)
        _report(checked.diagnostics, sources, args.format)
        ok = not any(d.is_error for d in checked.diagnostics)
        failed |= not ok
        if args.format != "text":
            continue
        if not ok:
            print(f"{_printable(path)}: {summary_line(checked.diagnostics)}", file=sys.stderr)
        elif checked.fragment:  # shared settings for other specs to import
            print(f"{_printable(path)}: ok (a fragment: its settings are checked where it is "
                  "imported)")
        extra = f", {summary_line(checked.diagnostics)}" if checked.diagnostics else ""
        for variant in checked.planned:
            plan, s = variant.plan, variant.plan.schedule
            n = len(s.phases)
            name = f" [{variant.name}]" if variant.name else ""
            print(f"{_printable(path)}{name}: ok ({n} phase{'s' if n != 1 else ''}, "
                  f"{s.total_steps:,} steps, "
                  f"{plan.growth.parameters:,} parameters{extra})")
    return EXIT_SPEC if failed else EXIT_OK


def _calibration(plan, run_id: str, tracking_uri: str | None, markdown: bool) -> str:
    """`explain --calibrate RUN_ID`: the estimate redone with that run's measured rate. Only this
    option imports MLflow."""
    from genbac.compiler.calibrate import calibrate, render
    from genbac.runtime.calibrate import measure
    from genbac.runtime.tracking import default_tracking_uri

    measured = measure(run_id, tracking_uri or default_tracking_uri())
    return "\n" + render(plan.estimate, measured, calibrate(plan.estimate, measured),
                         markdown=markdown)


def cmd_explain(args) -> int:
    from genbac.compiler.compile import plan_json
    from genbac.compiler.explain import explain, explain_sweep

    if args.calibrate and args.format == "json":
        raise UsageError("--calibrate adds a table to text or markdown output, not to json")
    fmt = "text" if args.format in ("text", "markdown") else args.format
    planned, _ = _plan_all(args.spec, fmt, getattr(args, "root", None), report_ok=False)
    if planned is None:
        return EXIT_SPEC
    markdown = args.format == "markdown"
    if planned[0].name is None:  # one experiment
        plan = planned[0].plan
        if args.format == "json":
            sys.stdout.write(plan_json(plan).decode("utf-8"))
        else:
            sys.stdout.write(explain(plan, planned[0].diagnostics, markdown=markdown))
            if args.calibrate:
                sys.stdout.write(_calibration(plan, args.calibrate, args.tracking_uri, markdown))
        if args.plot:
            _plot(plan, args.plot)
        return EXIT_OK
    if args.calibrate:
        raise UsageError("--calibrate takes one experiment, not a sweep")
    if args.format == "json":  # a sweep: every variant's plan
        sys.stdout.write(json.dumps({
            "format": "genbac.sweep-plans/1",
            "variants": [{"name": v.name, "values": v.values, "plan": v.plan.to_json()}
                         for v in planned]}, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(explain_sweep(planned, markdown=markdown))
    if args.plot:  # one PNG per variant: mix.png -> mix-<variant>.png
        stem, dot, ext = args.plot.rpartition(".")
        for v in planned:
            _plot(v.plan, f"{stem}-{v.name}.{ext}" if dot else f"{args.plot}-{v.name}")
    return EXIT_OK


def _plot(plan, path: str) -> None:
    try:
        from genbac.plot import mixture_plot
    except ImportError:  # matplotlib comes with the `run` extra, not with the compiler
        raise UsageError("--plot needs matplotlib: pip install matplotlib") from None
    try:
        mixture_plot(plan, Path(path))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _read_side(arg: str, root: str | None):
    """A side of `diff`: (text, name shown, import reader). A file if one exists, else REV:PATH
    read from git (see genbac.revisions)."""
    if Path(arg).exists() or ":" not in arg:
        return _read_spec(arg), _display_path(arg), _imports(arg, root)
    from .revisions import read_revision

    return read_revision(arg)


def cmd_diff(args) -> int:
    """0: the same experiment; 1: different; 2: trouble (a usage error, or a side with errors)."""
    from genbac.compiler import diff
    from genbac.compiler.compile import plan_spec
    from genbac.spec.diagnostics import SpecError

    sides, broken = [], []
    for arg in (args.old, args.new):
        text, shown, read = _read_side(arg, args.root)
        sources: dict[str, str] = {}
        try:
            sides.append((plan_spec(text, shown, read, sources)[0], sources, shown))
        except SpecError as exc:
            _report(exc.diagnostics, sources or {shown: text}, "text")
            broken.append(shown)
    if broken:  # 1 would read as "the experiments differ"; a broken spec can't be compared
        raise UsageError(f"cannot diff: {' and '.join(broken)} "
                         f"{'has' if len(broken) == 1 else 'have'} errors (see above)")
    (old, old_files, old_name), (new, new_files, new_name) = sides
    # identical: the spec and every file it imports, byte for byte
    identical = list(old_files.values()) == list(new_files.values())
    report = diff.compare(old, new, old_source=old_name, new_source=new_name,
                          identical_text=identical)
    render = {"text": diff.render_text, "markdown": diff.render_markdown,
              "json": diff.render_json}[args.format]
    sys.stdout.write(render(report))
    return EXIT_OK if report.same_experiment else EXIT_DIFFERENT


def cmd_compile(args) -> int:
    from .output import write_atomic

    compiled = _compile(args)
    if compiled is None:
        return EXIT_SPEC
    out, planned, files = compiled
    write_atomic(out, files)
    if args.format == "text":
        _say_compiled(args.spec, out, planned, files)
    return EXIT_OK


def _compile(args):
    """Compile in memory: (output directory, planned variants, files), or None after reporting the
    spec's errors."""
    from genbac.compiler.compile import compile_all
    from genbac.spec.diagnostics import SpecError

    text = _read_spec(args.spec)
    shown = _display_path(args.spec)
    out = Path(args.output) if args.output else Path("out") / Path(args.spec).stem
    spec_dir = Path(args.spec).resolve().parent
    project_dir = os.path.relpath(spec_dir, out.resolve()).replace(os.sep, "/")
    sources: dict[str, str] = {}
    try:
        planned, files, diagnostics = compile_all(
            text, shown, project_dir=project_dir, target=args.target,
            read=_imports(args.spec, getattr(args, "root", None)), sources=sources)
    except SpecError as exc:
        _report(exc.diagnostics, sources or {shown: text}, args.format)
        if args.format == "text":
            from genbac.spec.diagnostics import summary_line

            print(f"{_printable(args.spec)}: {summary_line(exc.diagnostics)}; nothing written",
                  file=sys.stderr)
        return None
    _report(diagnostics, sources, args.format)
    return out, planned, files


def _say_compiled(spec: str, out: Path, planned, files) -> None:
    shown_out = _printable(str(out))
    print(f"compiled {_printable(spec)} -> {shown_out}/ ({len(files)} files)")
    for variant in planned:
        plan, s = variant.plan, variant.plan.schedule
        n = len(s.phases)
        where = f"  {shown_out}/{variant.name}/: " if variant.name else "  "
        swept = ", ".join(f"{k} = {v}" for k, v in variant.values.items())
        print(f"{where}{n} phase{'s' if n != 1 else ''}, {s.total_steps:,} steps; "
              f"spec {plan.spec_hash[:12]}" + (f"  ({swept})" if swept else ""))
    first = f"{shown_out}/{planned[0].name}" if planned[0].name else shown_out
    print(f"next: bash {first}/run.sh   (or review: genbac explain {_printable(spec)})")


def _variants(directory: Path, read) -> list[Path]:
    """The experiment directories of a compiled directory: itself, or a sweep's variants."""
    from genbac.compiler.artifact import SWEEP_INDEX

    try:
        index = json.loads(read(SWEEP_INDEX))
    except FileNotFoundError:
        return [directory]
    return [directory / v["dir"] for v in index["variants"]]


def _in_memory(files: dict[str, bytes], prefix: str = ""):
    """A reader of compiled files not written yet, like the disk's: FileNotFoundError if absent."""
    def read(name: str) -> bytes:
        try:
            return files[prefix + name]
        except KeyError:
            raise FileNotFoundError(name) from None

    return read


def _show_plan(artifact, verdict, state: dict) -> None:
    """`--dry-run`: the steps and their commands, then the preflight verdict."""
    import shlex

    done = set(state.get("done", []))
    backend = verdict.device.backend if verdict.device else "?"
    print(f"{_printable(str(artifact.directory))}: {len(artifact.steps.steps)} steps "
          f"({backend} backend)")
    for step in artifact.steps.steps:
        how = (shlex.join(step.argv) if step.engine == "genbac" or backend == "cszoo" else
               f"genbac's own {step.kind} (local backend)")
        mark = "done" if step.name in done else "todo"
        print(f"  {mark}  {step.name:<16} {_printable(how)}")
    for line in verdict.lines():
        print(f"  {_printable(line)}")


def cmd_preflight(args) -> int:
    """What `genbac run` checks before its first step (run.sh calls this)."""
    from genbac.runtime.executor import plan_run

    for directory in _variants(Path(args.compiled), lambda n: (Path(args.compiled) / n).read_text()):
        _, verdict, _ = plan_run(directory, args.backend)
        for line in verdict.lines():
            print(f"genbac: {_printable(line)}", file=sys.stderr if verdict.problems else sys.stdout)
        verdict.raise_if_refused()
    return EXIT_OK


def cmd_step(args) -> int:
    """One of genbac's own steps of a compiled experiment, without tracking (run.sh's)."""
    from genbac.compiler.artifact import Artifact
    from genbac.runtime.context import Context
    from genbac.runtime.steps import run_genbac_step

    artifact = Artifact.load(Path(args.compiled))
    names = [s.name for s in artifact.steps.steps]
    if args.name not in names:
        raise UsageError(f"{args.compiled} has no step {args.name!r} (its steps: "
                         f"{', '.join(names)})")
    run_genbac_step(Context(artifact, log=lambda line: print(line, flush=True)),
                    artifact.steps.get(args.name))
    return EXIT_OK


def cmd_run(args) -> int:
    import signal

    from genbac.compiler.artifact import Artifact
    from genbac.runtime.executor import execute, plan_run, preflight

    from .output import recover, write_atomic

    target = Path(args.target)
    if target.suffix == ".genba" or target.is_file():
        compiled = _compile(argparse.Namespace(spec=args.target, output=args.output,
                                               target="cszoo", format="text", root=args.root))
        if compiled is None:
            return EXIT_SPEC
        out, planned, files = compiled
        # preflight on what was compiled, before it is written: a refused run writes nothing
        ok = True
        for directory in _variants(out, _in_memory(files)):
            prefix = "" if directory == out else directory.name + "/"
            artifact = Artifact.from_files(out.resolve() / prefix, _in_memory(files, prefix))
            verdict = preflight(artifact, args.backend)
            if args.dry_run:
                _show_plan(artifact, verdict, {})
                ok = ok and verdict.ok  # every variant's verdict counts, not the last one's
            else:
                verdict.raise_if_refused()
        if args.dry_run:
            return EXIT_OK if ok else EXIT_SPEC
        write_atomic(out, files)
        _say_compiled(args.target, out, planned, files)
    else:
        out = target
        for line in recover(out):  # what an interrupted compile left, before anything runs
            print(line, file=sys.stderr)
    directories = _variants(out, lambda name: (out / name).read_text(encoding="utf-8"))
    if args.dry_run:
        ok = True
        for directory in directories:
            artifact, verdict, state = plan_run(directory, args.backend, restart=args.restart)
            _show_plan(artifact, verdict, state)
            ok = ok and verdict.ok
        return EXIT_OK if ok else EXIT_SPEC
    from genbac.runtime.tracking import default_tracking_uri

    uri = args.tracking_uri or default_tracking_uri()
    if args.compile:  # read by the trainer in this process and in torchrun's workers
        os.environ["GENBAC_COMPILE"] = "1"
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        for directory in directories:  # a sweep: its variants one after the other
            if directory != out:
                print(f"genbac: variant {directory.name}", flush=True)
            execute(directory, tracking_uri=uri, restart=args.restart, backend=args.backend,
                    log=lambda line: print(line, flush=True))
    except KeyboardInterrupt as exc:
        by = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
        print(f"genbac: stopped by {by}; its MLflow runs are marked KILLED. Run the same command "
              "again to resume from the last finished step and checkpoint", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    from genbac.runtime.runs import shown

    print(f"genbac: finished; tracked in {shown(uri)}")
    if uri.startswith("sqlite:///"):
        print(f"genbac: browse it with: mlflow ui --backend-store-uri {uri}")
    return EXIT_OK


def cmd_grow(args) -> int:
    from genbac.runtime.grow import run_grow

    try:
        run_grow(Path(args.plan), Path(args.base), Path(args.out), verify=not args.no_verify)
    except FileNotFoundError as exc:
        raise UsageError(f"no such file: {exc.filename}") from None
    return EXIT_OK


def cmd_tokenizer(args) -> int:
    from genbac.compiler.plan import Plan
    from genbac.runtime.sources import resolve_sources
    from genbac.runtime.tokenizer import train_bpe_tokenizer

    try:
        plan = Plan.model_validate_json(Path(args.plan).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the plan {args.plan}: {exc}") from None
    if plan.tokenizer_training is None:
        raise UsageError(f"{args.plan}: the spec does not ask for a trained tokenizer")
    files = [f for lang in plan.spec.languages
             for f in resolve_sources(list(lang.sources), Path(args.project))]
    train_bpe_tokenizer(files, plan.tokenizer_training, Path(args.out))
    print(f"genbac: trained a {plan.tokenizer_training}-token BPE tokenizer on {len(files)} "
          f"files -> {args.out}")
    return EXIT_OK


def cmd_compare(args) -> int:
    from genbac.runtime.compare import compare_command
    from genbac.runtime.tracking import default_tracking_uri

    if len(args.runs) < 2:
        raise UsageError("compare needs two or more runs (run ids or spec hashes; "
                         "`genbac runs` lists them)")
    plot_to = Path(args.plot) if args.plot else None
    try:
        text = compare_command(args.tracking_uri or default_tracking_uri(), args.runs,
                               show_all=args.all, fmt=args.format, plot_to=plot_to)
    except OSError as exc:  # the plot could not be written
        raise UsageError(f"cannot write {args.plot}: {exc.strerror or exc}") from None
    sys.stdout.write(text)
    if plot_to is not None:
        print(f"genbac: wrote {args.plot}", file=sys.stderr)
    return EXIT_OK


def cmd_runs(args) -> int:
    from genbac.runtime.runs import list_runs
    from genbac.runtime.tracking import default_tracking_uri

    text = list_runs(args.tracking_uri or default_tracking_uri(), args.experiment,
                     args.format, args.limit)
    sys.stdout.write(text)
    return EXIT_OK


def cmd_fmt(args) -> int:
    from genbac.spec.diagnostics import SpecError
    from genbac.spec.format import FormatError, format_source, unformatted_diagnostic
    from genbac.spec.limits import MAX_FILE_BYTES

    check = args.check or args.diff
    machine = args.format in ("json", "github", "sarif")
    if args.diff and machine:
        raise UsageError(f"--diff prints a diff, which --format {args.format} output cannot hold")
    found, sources, failed, changed, hint = [], {}, False, False, False
    for path in args.specs:
        # stdin read with the file limit (+1, so that too much is seen and refused by the parser)
        text = sys.stdin.read(MAX_FILE_BYTES + 1) if path == "-" else _read_spec(path)
        shown = "<stdin>" if path == "-" else _display_path(path)
        sources[shown] = text
        try:
            formatted = format_source(text, shown)
        except SpecError as exc:
            found += exc.diagnostics
            failed = True
            continue
        except FormatError as exc:  # a genbac bug; the file is left alone
            print(f"genbac: error: {exc}", file=sys.stderr)
            failed = True
            continue
        if path == "-" and not check:
            sys.stdout.write(formatted)
        elif formatted != text:
            changed = True
            if not check:
                _replace_file(Path(path), formatted, newline=_newline_of(Path(path)))
                print(f"reformatted {_printable(shown)}", file=sys.stderr)
            elif machine:
                found.append(unformatted_diagnostic(shown, text, formatted))
            else:
                print(_printable(shown))  # stdout stays the list of files, for scripts
                if args.diff:
                    sys.stdout.write(_unified_diff(text, formatted, shown))
                else:  # where, on stderr: the first line fmt would change
                    where = unformatted_diagnostic(shown, text, formatted).span
                    print(f"{_printable(shown)}:{where.line}: not in genbac fmt's layout from "
                          "this line", file=sys.stderr)
                    hint = True
    _report(found, sources, args.format)
    if hint:
        print("genbac: `genbac fmt --check --diff` shows what would change; `genbac fmt FILE` "
              "changes it", file=sys.stderr)
    return EXIT_SPEC if failed or (check and changed) else EXIT_OK


def _newline_of(path: Path) -> str:
    """The file's line ending, as its first line has it: fmt keeps a CRLF file CRLF (specs are read
    with universal newlines, so the layout itself never sees a carriage return)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return "\n"
    end = head.find(b"\n")
    return "\r\n" if end > 0 and head[end - 1:end] == b"\r" else "\n"


def cmd_init(args) -> int:
    from genbac.compiler.compile import plan_spec
    from genbac.compiler.starter import StarterProblem, starter_spec
    from genbac.spec.diagnostics import SpecError
    from genbac.spec.parser import quantity_of

    path = Path(args.spec)
    if path.suffix != ".genba":
        raise UsageError(f"{args.spec}: a spec file ends in .genba")
    if path.exists() and not args.force:
        raise UsageError(f"{args.spec} exists; choose another name, or --force to replace it")
    languages = [c.strip() for c in args.languages.split(",") if c.strip()]
    try:
        tokens = int(quantity_of(args.tokens))
    except ValueError:
        raise UsageError(f"--tokens {args.tokens!r}: a token count such as 10B or 500M") from None
    try:
        text = starter_spec(args.name or path.stem, args.base, languages, tokens=tokens,
                            hardware=args.hardware, grow=not args.no_grow)
    except StarterProblem as exc:
        raise UsageError(str(exc)) from None
    try:  # the promise is a spec that passes check: a model too large for the hardware is not
        plan_spec(text, path.name)
    except SpecError as exc:
        problems = "; ".join(d.message + (f" ({d.help[0]})" if d.help else "")
                             for d in exc.diagnostics if d.is_error)
        raise UsageError(f"these choices would not pass check: {problems}") from None
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent}: no such directory")
    _replace_file(path, text)
    shown = _display_path(str(path))
    print(f"genbac: wrote {shown}; next: genbac explain {shown}")
    return EXIT_OK


def cmd_lsp(args) -> int:
    try:
        from genbac.lsp.server import serve
    except ImportError as exc:  # pygls is a dependency; a broken install should say so
        raise UsageError(f"`genbac lsp` needs pygls 2 ({exc}); reinstall genbac, or "
                         "`pip install 'pygls>=2,<3'`") from None
    serve()
    return EXIT_OK


def cmd_completion(args) -> int:
    from .completion import script

    sys.stdout.write(script(args.shell, build_parser()))
    return EXIT_OK


def _replace_file(path: Path, text: str, newline: str = "\n") -> None:
    """A reader sees the old text or the new, never half (genbac.atomic); the mode is kept."""
    from .atomic import write_file

    if newline != "\n":
        text = text.replace("\n", newline)
    try:
        write_file(path.resolve(), text)  # a symbolic link keeps pointing at the rewritten file
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _unified_diff(before: str, after: str, shown: str) -> str:
    import difflib

    lines = difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                 f"a/{shown}", f"b/{shown}")
    return "".join(l if l.endswith("\n") else l + "\n\\ No newline at end of file\n"
                   for l in lines)


def cmd_schema(args) -> int:
    import json

    if args.plan:
        from genbac.compiler.plan import Plan as model
    else:
        from genbac.spec.ir import Spec as model
    # the shape of what genbac writes (plan.json, the IR as JSON): spans are never serialised
    schema = model.model_json_schema(mode="serialization")
    sys.stdout.write(json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# argument parsing
# --------------------------------------------------------------------------------------------------

# What each command's --help says above and below its options: one line on what it does, and
# examples to copy.
COMMAND_PAGES = {
    "compile": (
        "Validate a .genba spec and write the compiled experiment: Model Zoo configs, run.sh, "
        "steps.json, plan.json. Nothing is written when the spec has an error.",
        ["genbac compile examples/llama-genba-10b.genba", "genbac compile exp.genba -o out/exp"]),
    "check": (
        "Validate specs and report every problem with file:line:col; write nothing. Exit 0 when "
        "there are no errors (warnings allowed), 1 when there are.",
        ["genbac check examples/*.genba", "genbac check exp.genba --format github"]),
    "explain": (
        "Say what a spec will do: the model and its growth, phases and mixtures, each language's "
        "window and compiled tokens, the LR schedule, and time and energy estimates.",
        ["genbac explain examples/llama-genba-10b.genba",
         "genbac explain exp.genba --format markdown > plan.md"]),
    "diff": (
        None,
        ["genbac diff main:specs/exp.genba specs/exp.genba",
         "genbac diff old.genba new.genba --format markdown"]),
    "run": (
        "Run an experiment: compile the spec (or take a compiled directory), check its "
        "preconditions, then run its steps; resumable (run it again to continue), tracked in "
        "MLflow.",
        ["genbac run examples/tiny-rehearsal.genba",
         "genbac run out/exp --dry-run",
         "genbac run exp.genba --backend cszoo"]),
    "preflight": (
        "Check a compiled experiment's preconditions (data, weights, tokenizer, devices, disk) "
        "without running anything.",
        ["genbac preflight out/exp"]),
    "step": (
        "Run one of genbac's own steps of a compiled experiment, as run.sh does; nothing is "
        "tracked.",
        ["genbac step out/exp stage-en"]),
    "grow": (
        "Grow a Hugging Face checkpoint as a compiled plan says, tensor by tensor, and check that"
        " the grown model computes what the base did.",
        ["genbac grow --plan out/exp/plan.json --base ckpt/base --out ckpt/grown"]),
    "tokenizer": (
        "Train the byte-level BPE tokenizer a compiled plan asks for, from the spec's data.",
        ["genbac tokenizer --plan out/exp/plan.json --project . --out tok/"]),
    "compare": (
        "Put runs side by side: the spec fields that differ, losses per language and their change"
        " from the step-0 baseline, tokens, throughput, wall time, status.",
        ["genbac compare 3f2a9c 8b11d0", "genbac compare 3f2a9c 8b11d0 --format markdown"]),
    "runs": (
        "List genbac's runs in the MLflow store, newest first.",
        ["genbac runs", "genbac runs --experiment llama-genba-10b --limit 10"]),
    "fmt": (
        "Rewrite specs in the canonical layout, keeping comments; --check for CI.",
        ["genbac fmt exp.genba", "genbac fmt --check --diff specs/*.genba"]),
    "init": (
        "Write a commented starting spec for a base and its languages; it passes `genbac check` "
        "as written, and every value in it is a starting point to change.",
        ["genbac init nordic.genba --base llama3.2-3b --languages en,sv,is,fo --hardware "
         "'h100 x 4'"]),
    "completion": (
        "Print a completion script for bash, zsh or fish: commands, options, option values and "
        ".genba files.",
        ['genbac completion bash >> ~/.bashrc  # or: eval "$(genbac completion bash)"',
         "genbac completion fish > ~/.config/fish/completions/genbac.fish"]),
    "lsp": (
        "Run the language server for .genba files, speaking LSP over stdin and stdout: "
        "diagnostics as you type (with quick fixes), hover with what the compiler decided, "
        "completion, formatting, outline and go to definition. Editors start it; see the "
        "README for VS Code, Neovim and Helix.",
        ["genbac lsp", "genbac lsp --stdio  # what VS Code's client passes"]),
    "schema": (
        "Print the JSON Schema of the validated spec, or of plan.json.",
        ["genbac schema > genba.schema.json", "genbac schema --plan"]),
}


def _add_command(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    description, examples = COMMAND_PAGES[name]
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    if kwargs.get("epilog"):
        epilog = kwargs.pop("epilog") + "\n\n" + epilog
    kwargs.setdefault("description", description or kwargs.get("help"))
    return sub.add_parser(name, epilog=epilog, formatter_class=_HelpFormatter, **kwargs)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' lines as written; wraps the description and an epilog paragraph."""

    def _fill_text(self, text, width, indent):
        import textwrap

        paragraphs = text.split("\n\n")
        out = []
        for para in paragraphs:
            if para.startswith("examples:"):
                out.append(para)
            else:
                out.append(textwrap.fill(" ".join(para.split()), width, initial_indent=indent,
                                         subsequent_indent=indent))
        return "\n\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genbac",
        description="Compile continual-pretraining experiment specs (.genba) into runnable "
                    "Cerebras Model Zoo experiments.")
    parser.add_argument("--version", action="version", version=f"genbac {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an internal error (also GENBAC_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    formats = ["text", "concise", "json", "github", "sarif"]

    p = _add_command(sub, "compile", help="validate a spec and write the compiled experiment")
    p.add_argument("spec", help="the .genba file")
    p.add_argument("-o", "--output",
                   help="output directory (default: out/<spec file name without .genba>)")
    p.add_argument("--root", help="the project root that imports may not leave (default: the "
                                  "directory above the spec that holds .git)")
    p.add_argument("--target", default="cszoo", choices=["cszoo"],
                   help="what to generate (default: cszoo, Cerebras Model Zoo 2.10)")
    p.add_argument("--format", default="text", choices=formats, help="diagnostics format")
    p.set_defaults(func=cmd_compile)

    p = _add_command(sub, "check", help="validate specs; report every problem")
    p.add_argument("specs", nargs="+", metavar="spec", help=".genba files")
    p.add_argument("--root", help="the project root that imports may not leave (default: the "
                                  "directory above the spec that holds .git)")
    p.add_argument("--format", default="text", choices=formats, help="diagnostics format")
    p.set_defaults(func=cmd_check)

    p = _add_command(sub, "explain",
                     help="what a spec will do: phases, mixtures, layers, estimates")
    p.add_argument("spec", help="the .genba file")
    p.add_argument("--root", help="the project root that imports may not leave (default: the "
                                  "directory above the spec that holds .git)")
    p.add_argument("--format", default="text", choices=["text", "markdown", "json"],
                   help="text, markdown (for a PR comment), or json (the full plan)")
    p.add_argument("--calibrate", metavar="RUN",
                   help="also show time and energy re-estimated with the training rate measured "
                        "in this MLflow run (genbac run, either backend): a run id, a phase's "
                        "run id, or a unique prefix of a run id or spec hash")
    p.add_argument("--tracking-uri", help="the MLflow store of --calibrate's run (default: "
                                          "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)")
    p.add_argument("--plot", metavar="PNG",
                   help="also draw the mixture schedule (tokens per step by language, phase "
                        "boundaries) to this PNG; needs matplotlib")
    p.set_defaults(func=cmd_explain)

    p = _add_command(
        sub, "diff", help="what changed between two experiments, and what follows from it",
        description="Plan both specs and say what changed in the experiment (the spec) and what "
                    "follows (steps, phases, mixtures, layers, parameters, estimates).",
        epilog="OLD and NEW are files or git revisions REV:PATH (e.g. main:examples/exp.genba; "
               "PATH from the repository root, REV:./PATH from the current directory). Exit "
               "status: 0 the same experiment (same spec hash; formatting and comments may "
               "differ), 1 different, 2 trouble: a usage error or a spec with errors (its "
               "diagnostics on stderr).")
    p.add_argument("old", help="the old spec: a file or REV:PATH")
    p.add_argument("new", help="the new spec: a file or REV:PATH")
    p.add_argument("--format", default="text", choices=["text", "markdown", "json"],
                   help="text, markdown (for a PR comment), or json (structured changes)")
    p.add_argument("--root", help="for a side that is a file: the project root its imports may "
                                  "not leave (default: the directory above it holding .git); a "
                                  "REV:PATH side imports from the same revision")
    p.set_defaults(func=cmd_diff)

    p = _add_command(sub, "run", help="run an experiment (a .genba spec, compiled first, or a "
                                   "compiled directory), resumably, tracked in MLflow")
    p.add_argument("target", help="a .genba file or a compiled directory")
    p.add_argument("-o", "--output",
                   help="where to compile a spec (default: out/<spec file name without .genba>)")
    p.add_argument("--root", help="the project root that imports may not leave (default: the "
                                  "directory above the spec that holds .git)")
    p.add_argument("--backend", default="auto", choices=["auto", "local", "cszoo"],
                   help="auto (default): from the spec's hardware (CS-X: cszoo; GPUs and cpu: "
                        "local); local: PyTorch + transformers here, a labelled rehearsal when "
                        "the spec's hardware is not here; cszoo: Cerebras Model Zoo's `cszoo` "
                        "(on PATH or $GENBAC_CSZOO)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the steps and their commands and the preflight verdict; run "
                        "nothing, write nothing")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                                          "else sqlite:///mlflow.db in the working directory)")
    p.add_argument("--restart", action="store_true",
                   help="delete the run's state and checkpoints (work/) and start over")
    p.add_argument("--compile", action="store_true",
                   help="local: torch.compile the model for training (worth it on a GPU; the "
                        "first steps wait for the compilation)")
    p.set_defaults(func=cmd_run)

    p = _add_command(sub, "preflight", help="check a compiled experiment's preconditions, as "
                                         "`genbac run` does before its first step")
    p.add_argument("compiled", help="the compiled directory")
    p.add_argument("--backend", default="auto", choices=["auto", "local", "cszoo"])
    p.set_defaults(func=cmd_preflight)

    p = _add_command(sub, "step", help="run one of genbac's own steps of a compiled experiment "
                                    "(what run.sh calls; no tracking)")
    p.add_argument("compiled", help="the compiled directory")
    p.add_argument("name", help="the step's name in steps.json (e.g. stage-en, grow)")
    p.set_defaults(func=cmd_step)

    p = _add_command(sub, "grow", help="grow a Hugging Face checkpoint as a plan says (LLaMA Pro / "
                                    "depth up-scaling), streaming, and check function preservation")
    p.add_argument("--plan", required=True, help="plan.json of a compiled experiment")
    p.add_argument("--base", required=True, help="the base checkpoint directory")
    p.add_argument("--out", required=True, help="where to write the grown checkpoint")
    p.add_argument("--no-verify", action="store_true", help="skip the function-preservation check")
    p.set_defaults(func=cmd_grow)

    p = _add_command(sub, "tokenizer", help="train the BPE tokenizer a plan asks for")
    p.add_argument("--plan", required=True, help="plan.json of a compiled experiment")
    p.add_argument("--project", required=True, help="where the spec's data paths start")
    p.add_argument("--out", required=True, help="the tokenizer directory to write")
    p.set_defaults(func=cmd_tokenizer)

    tracking_help = ("MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db "
                     "in the working directory)")
    p = _add_command(sub, "compare", help="runs side by side in MLflow: the spec fields that "
                                          "differ, "
                                       "then losses, tokens, throughput, wall time, status")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="a run id or spec hash (or a unique prefix; a spec hash means its latest "
                        "run); two or more")
    p.add_argument("--all", action="store_true", help="show the identical spec fields too")
    p.add_argument("--format", default="text", choices=["text", "markdown", "json"])
    p.add_argument("--plot", metavar="PNG", help="also draw the validation-loss curves to PNG")
    p.add_argument("--tracking-uri", help=tracking_help)
    p.set_defaults(func=cmd_compare)

    p = _add_command(sub, "runs", help="list genbac's runs in MLflow, newest first, with status, "
                                    "final validation loss and throughput")
    p.add_argument("--experiment", metavar="NAME", help="only this experiment (the spec's name)")
    p.add_argument("--limit", type=int, default=50, help="at most this many runs (default 50)")
    p.add_argument("--format", default="text", choices=["text", "markdown", "json"])
    p.add_argument("--tracking-uri", help=tracking_help)
    p.set_defaults(func=cmd_runs)

    p = _add_command(sub, "fmt", help="rewrite specs in the canonical layout, comments kept")
    p.add_argument("specs", nargs="+", metavar="spec",
                   help=".genba files, or - for stdin to stdout")
    p.add_argument("--check", action="store_true",
                   help="change nothing; list the files that would change and exit 1 if any")
    p.add_argument("--diff", action="store_true", help="with the list, what would change "
                                                       "(a unified diff; implies --check)")
    p.add_argument("--format", default="text", choices=formats, help="diagnostics format")
    p.set_defaults(func=cmd_fmt)

    p = _add_command(sub, "init", help="write a commented starting spec that passes check")
    p.add_argument("spec", help="the .genba file to write")
    p.add_argument("--base", default="llama3.2-1b",
                   help="the base architecture (default llama3.2-1b): llama3.1-8b, llama3.1-70b, "
                        "llama3.2-1b, llama3.2-3b, smollm2-135m")
    p.add_argument("--languages", default="en", metavar="CODES",
                   help="comma-separated language codes (default: en), e.g. en,sv,is,fo")
    p.add_argument("--tokens", default="10B", help="the total token budget (default 10B)")
    p.add_argument("--hardware", help="KIND x N (default: h100 x 1 where the model's training "
                                      "state fits on one, else cs-2 x 1)")
    p.add_argument("--name", help="the experiment's name (default: the file name)")
    p.add_argument("--no-grow", action="store_true", help="no LLaMA-Pro block expansion")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_init)

    p = _add_command(sub, "completion", help="print a shell completion script")
    p.add_argument("shell", choices=["bash", "zsh", "fish"])
    p.set_defaults(func=cmd_completion)

    p = _add_command(sub, "lsp", help="run the language server for editors (LSP over stdio)")
    p.add_argument("--stdio", action="store_true",
                   help="talk over stdin and stdout (the default and only transport)")
    p.set_defaults(func=cmd_lsp)

    p = _add_command(sub, "schema", help="print the JSON Schema of the validated spec (the IR)")
    p.add_argument("--plan", action="store_true", help="the schema of plan.json instead")
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _COLLECTED.clear()
    _CURRENT.clear()
    try:
        return args.func(args)
    except UserError as exc:  # the one place a user's mistake becomes a message and a status
        from genbac.spec.limits import visible

        shown = "\n".join(visible(line) for line in str(exc).split("\n"))  # lines, not ␊
        print(f"genbac: error: {shown}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # the edge: whatever a spec or a run may still cause, no traceback
        if args.debug or os.environ.get("GENBAC_DEBUG"):
            raise
        return _internal_error(args.command, exc)
    finally:
        _write_collected(getattr(args, "format", None))


def _internal_error(command: str, exc: Exception) -> int:
    """One line for an exception nobody meant to raise: a bug in genbac, never the user's fault
    (a user's mistake is a diagnostic or a usage error). It names the file and says how to see
    more, so that a missed case is reported instead of shown as a traceback."""
    from genbac.spec.limits import visible

    where = f" on {_CURRENT[0]}" if _CURRENT else ""
    detail = str(exc).splitlines()[0][:200] if str(exc) else ""
    print(visible(f"genbac: internal error [GB999] in `genbac {command}`{where}: "
                  f"{type(exc).__name__}{': ' + detail if detail else ''}. This is a genbac bug, "
                  "please report it with the spec; --debug (or GENBAC_DEBUG=1) shows the "
                  "traceback"), file=sys.stderr)
    return EXIT_BUG


def _write_collected(fmt: str | None) -> None:
    from genbac.spec import diagnostics as d

    found = sorted(_COLLECTED.get(fmt, []), key=lambda x: x.sort_key())
    if fmt == "sarif":  # a SARIF log even with nothing in it: a CI upload step expects one
        sys.stdout.write(d.render_sarif(found, tool_version=__version__))
    elif fmt == "json" and fmt in _COLLECTED:  # not for commands with JSON of their own
        sys.stdout.write(d.render_json(found))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
