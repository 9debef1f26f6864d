"""Composition: imports, overrides and sweeps, resolved on the syntax tree before lowering.

    import "shared/catalogue.genba"      # fragments: languages, a hardware profile, a train block
    import "llama-genba-10b.genba"       # or a whole spec, to extend with overrides

    experiment "genba-bar-85" {
      language bar { enter = sweep(85%, 90%, 95%) }    # one compiled variant per value
    }

What an imported file says (its top-level settings and blocks, and the inside of its experiment
block if it has one) is the base; the importing experiment's own entries override it. A setting
replaces the imported setting of the same key; a block merges into the imported block it names
(`language bar`, `phase 90%`, `architecture tiny`, or by kind for `train`, `grow`, `vocab`), key by
key, unless it is a different kind of the same block (`grow depth` over `grow blocks`), which
replaces it. A call over a call of the same name merges its arguments (`optimizer = adamw(lr = 3e-4)`
keeps the imported `weight_decay` and `clip`; see merge_call); any other value replaces. Later
imports override earlier ones. Imports resolve relative to the importing file and may not leave the
project root; a cycle is an error. Every node keeps the span of the file it was written in, so
diagnostics point into that file.

`sweep(a, b, …)` may stand for any value; the experiment is expanded into the product of all
sweeps, each variant named after its values (`genba-bar-85-bar-enter85`).
"""

from __future__ import annotations

import itertools
import os
import posixpath
import re
from pathlib import Path
from typing import Callable, NamedTuple

from . import ast, limits
from .diagnostics import Diagnostic, SpecError, error
from .parser import parse, token_count

MAX_VARIANTS = 64  # a sweep is for "a few values"; beyond that a spec generator is the right tool
_KEYED_BLOCKS = {"language", "phase", "architecture"}  # identified by kind and first label


class ImportProblem(Exception):
    def __init__(self, code: str, message: str, label: str, *help: str):
        super().__init__(message)
        self.code, self.message, self.label, self.help = code, message, label, help


# --------------------------------------------------------------------------------------------------
# Reading imported files (the only side effect, behind one small interface)
# --------------------------------------------------------------------------------------------------

class Files:
    """Reads imports from disk, refusing any path that resolves outside `root`."""

    def __init__(self, root: Path):
        self.root = root

    def read(self, importer: str, target: str) -> tuple[str, str]:
        """(display path, text) of `target` as imported by the file shown as `importer`."""
        shown = posixpath.normpath(posixpath.join(posixpath.dirname(importer), target))
        bad = limits.bad_path_char(target)
        if bad is not None:  # a NUL would also make the operating system refuse it
            raise ImportProblem("GB118", f"import {target!r} holds the character "
                                f"{limits.describe_char(bad)}", "not allowed in a path",
                                "paths may hold any character but control characters")
        if os.path.isabs(target):
            raise ImportProblem("GB107", f"import {target!r} is an absolute path",
                                "imports are relative to this file",
                                "write the path relative to the importing file")
        real = Path(os.path.realpath(shown))
        root = Path(os.path.realpath(self.root))
        if real != root and root not in real.parents:
            raise ImportProblem("GB107", f"import {target!r} leaves the project root {root}",
                                "outside the project",
                                "a spec may only import files inside its project (the directory "
                                "with .git, or --root)")
        try:
            return shown, limits.read_source(real)
        except limits.SourceProblem as exc:
            if exc.missing:
                raise ImportProblem("GB105", f"import {target!r}: no such file ({shown})",
                                    "not found") from None
            raise ImportProblem("GB105", f"import {target!r} cannot be read ({shown}): {exc}",
                                "unreadable") from None


def project_root(spec_path: Path) -> Path:
    """The nearest directory above the spec holding `.git`, else the spec's own directory."""
    start = spec_path.resolve().parent
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return start


# --------------------------------------------------------------------------------------------------
# Imports and overrides
# --------------------------------------------------------------------------------------------------

Reader = Callable[[str, str], "tuple[str, str]"]  # (importer, target) -> (display path, text)


def compose(text: str, path: str, read: Reader, sources: dict[str, str]) -> ast.Document:
    """The document with its imports merged in; raises SpecError with every import problem.

    `sources` receives the text of every file read, by display path, also when an error is raised,
    so that diagnostics in imported files can be shown with their source lines."""
    sources[path] = text
    diagnostics: list[Diagnostic] = []
    doc = parse(text, path)
    base = _imported_entries(doc, read, sources, diagnostics, stack=(path,),
                             budget=_Budget(text))
    if diagnostics:
        raise SpecError(diagnostics)
    items = []
    for item in doc.items:
        if isinstance(item, ast.Import):
            continue
        if isinstance(item, ast.Block) and item.kind.value == "experiment" and base:
            item = item._replace(entries=tuple(merge(base, list(item.entries))))
        items.append(item)
    return doc._replace(items=tuple(items))


def is_fragment(doc: ast.Document) -> bool:
    """A file of shared settings and blocks to import, not an experiment of its own."""
    return bool(doc.items) and not any(isinstance(i, ast.Block) and i.kind.value == "experiment"
                                       for i in doc.items)


class _Budget:
    """What one spec's imports may read together (spec.limits): files and bytes."""

    def __init__(self, spec_text: str):
        self.files, self.chars, self.tokens = 1, len(spec_text), token_count(spec_text)


def _imported_entries(doc: ast.Document, read, sources: dict[str, str],
                      diagnostics: list[Diagnostic], stack: tuple[str, ...],
                      budget: _Budget) -> list:
    """The merged entries of every file `doc` imports, in order (later imports win)."""
    merged: list = []
    for item in doc.items:
        if not isinstance(item, ast.Import):
            continue
        if len(stack) > limits.MAX_IMPORT_DEPTH:
            diagnostics.append(error(
                "GB117", f"imports are nested more than {limits.MAX_IMPORT_DEPTH} files deep",
                item.path.span, "one import too deep",
                help=(" -> ".join(stack[:3] + ("…",) + stack[-2:]),)))
            return merged
        if budget.files >= limits.MAX_IMPORTED_FILES:
            diagnostics.append(error(
                "GB117", f"the spec imports more than {limits.MAX_IMPORTED_FILES} files",
                item.path.span, "one import too many",
                help=("gather shared settings into fewer fragments",)))
            return merged
        if item.alias is not None:
            diagnostics.append(error(
                "GB105", "`import … as` is reserved and not supported", item.alias.span,
                "remove `as …`", help=("an import's settings merge into the experiment",)))
            continue
        try:
            shown, text = read(doc.path, item.path.value)
        except ImportProblem as problem:
            diagnostics.append(error(problem.code, problem.message, item.path.span, problem.label,
                                     help=problem.help))
            continue
        if shown in stack:
            chain = " -> ".join((*stack[stack.index(shown):], shown))
            diagnostics.append(error("GB108", f"import cycle: {chain}", item.path.span,
                                     "imported again here",
                                     help=("a file may not import itself, directly or not",)))
            continue
        budget.files += 1
        budget.chars += len(text)
        budget.tokens += token_count(text)
        if budget.tokens > limits.MAX_SOURCE_TOKENS:
            diagnostics.append(error(
                "GB117", f"the spec and its imports have more than "
                f"{limits.MAX_SOURCE_TOKENS:,} words, numbers and symbols together",
                item.path.span, "the limit is reached here"))
            return merged
        if budget.chars > limits.MAX_SOURCE_BYTES:
            diagnostics.append(error(
                "GB117", f"the spec and its imports are larger than "
                f"{limits.MAX_SOURCE_BYTES // 1024} KiB together", item.path.span,
                "the limit is reached here"))
            return merged
        sources[shown] = text
        try:
            imported = parse(text, shown)
        except SpecError as exc:
            diagnostics.extend(exc.diagnostics)
            continue
        own = _imported_entries(imported, read, sources, diagnostics, (*stack, shown), budget)
        merged = merge(merged, merge(own, _entries_of(imported)))
    return merged


def _entries_of(doc: ast.Document) -> list:
    """What a file contributes: its top-level settings and blocks, and its experiment's inside."""
    entries: list = []
    for item in doc.items:
        if isinstance(item, ast.Block) and item.kind.value == "experiment":
            entries.extend(item.entries)
        elif not isinstance(item, ast.Import):
            entries.append(item)
    return entries


def _identity(entry) -> tuple:
    if isinstance(entry, ast.Setting):
        return ("setting", entry.key.value)
    kind = entry.kind.value
    if kind in _KEYED_BLOCKS and entry.labels:
        return ("block", kind, ast.label_text(entry.labels[0]))
    return ("block", kind)


def merge(base: list, overrides: list) -> list:
    """`overrides` over `base`. Each base entry is overridden at most once, so an entry repeated
    within `overrides` itself stays repeated and lowering reports it where it was written."""
    result = list(base)
    open_slots = {}
    for i, entry in enumerate(base):
        open_slots.setdefault(_identity(entry), i)
    for entry in overrides:
        i = open_slots.pop(_identity(entry), None)
        if i is None:
            result.append(entry)
            continue
        old = result[i]
        if isinstance(entry, ast.Block) and isinstance(old, ast.Block) and _same_kind(old, entry):
            labels = entry.labels if len(entry.labels) >= len(old.labels) else old.labels
            entry = entry._replace(labels=labels,
                                   entries=tuple(merge(list(old.entries), list(entry.entries))))
        elif isinstance(entry, ast.Setting) and isinstance(old, ast.Setting):
            entry = entry._replace(value=merge_call(old.value, entry.value))
        result[i] = entry
    return result


def merge_call(old, new):
    """An override of a call by a call of the same name keeps the imported arguments it does not
    give: `optimizer = adamw(lr = 3e-4)` over `adamw(lr = 1.5e-4, weight_decay = 0.1, clip = 1.0)`
    is `adamw(lr = 3e-4, weight_decay = 0.1, clip = 1.0)`. Keyword arguments merge key by key (the
    override's win, new ones are appended); positional arguments, when the override gives any,
    replace the imported ones. Any other value, or a call of another name, replaces the old one.
    Each argument keeps the span of the file it was written in, so errors and `explain` point there."""
    if not (isinstance(old, ast.Call) and isinstance(new, ast.Call)
            and old.name.value == new.name.value):
        return new
    given = [a.key.value for a in new.args if a.key is not None]
    if len(given) != len(set(given)):
        return new  # an argument given twice: lowering reports it where it was written
    positional = [a for a in new.args if a.key is None] or [a for a in old.args if a.key is None]
    keywords = {a.key.value: a for a in old.args if a.key is not None}
    for arg in new.args:
        if arg.key is not None:
            keywords[arg.key.value] = arg  # replaces in place, or appends in the override's order
    return new._replace(args=(*positional, *keywords.values()))


def _same_kind(old: ast.Block, new: ast.Block) -> bool:
    """`grow depth` over `grow blocks` replaces; `language bar` over `language bar "Bavarian"`
    merges (the code is the identity; the name may be left out)."""
    if old.kind.value in _KEYED_BLOCKS:
        return True
    return [ast.label_text(x) for x in old.labels] == [ast.label_text(x) for x in new.labels]


# --------------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------------

class Variant(NamedTuple):
    name: str | None  # None: the spec sweeps nothing (the experiment keeps its own name)
    values: dict[str, str]  # swept setting (e.g. "language.bar.enter") -> the value as written
    document: ast.Document


def expand_sweeps(doc: ast.Document, sources: dict[str, str]) -> list[Variant]:
    """One document per combination of swept values; raises SpecError for a malformed sweep."""
    experiment = next((i for i in doc.items
                       if isinstance(i, ast.Block) and i.kind.value == "experiment"), None)
    if experiment is None:
        return [Variant(None, {}, doc)]
    sweeps: list[tuple[str, ast.Call]] = []
    diagnostics: list[Diagnostic] = []
    _find_sweeps(experiment.entries, (), sweeps, diagnostics)
    if diagnostics:
        raise SpecError(diagnostics)
    if not sweeps:
        return [Variant(None, {}, doc)]
    count = 1
    for _, call in sweeps:
        count *= len(call.args)
    if count > MAX_VARIANTS:
        first = sweeps[0][1].span
        raise SpecError([error(
            "GB109", f"the sweeps make {count} variants; at most {MAX_VARIANTS} are compiled",
            first, "sweeps multiply", secondary=[(c.span, f"{len(c.args)} values")
                                                 for _, c in sweeps[1:]],
            help=("sweep fewer values, or write the variants as separate specs that import a "
                  "common one",))])
    languages = sum(isinstance(e, ast.Block) and e.kind.value == "language"
                    for e in experiment.entries)
    if count * languages > limits.MAX_SWEPT_LANGUAGES:  # each variant is lowered and planned
        raise SpecError([error(
            "GB119", f"the sweeps make {count} variants of {languages} languages each; at most "
            f"{limits.MAX_SWEPT_LANGUAGES:,} languages are planned for one spec, all variants "
            "together", sweeps[0][1].span, "sweeps multiply",
            help=("sweep fewer values, or write the variants as separate specs that import a "
                  "common one",))])
    base_name = ast.label_text(experiment.labels[0]) if experiment.labels else "experiment"
    variants = []
    for choice in itertools.product(*(range(len(c.args)) for _, c in sweeps)):
        chosen = {id(call): call.args[k].value for (_, call), k in zip(sweeps, choice)}
        values = {where: _written(call.args[k].value, sources)
                  for (where, call), k in zip(sweeps, choice)}
        variants.append((values, _substitute(experiment, chosen)))
    names = _variant_names(base_name, [v for v, _ in variants])
    out = []
    for name, (values, block) in zip(names, variants):
        label = experiment.labels[0] if experiment.labels else None
        if label is not None:
            block = block._replace(labels=(ast.Str(name, label.span), *block.labels[1:]))
        items = tuple(block if item is experiment else item for item in doc.items)
        out.append(Variant(name, values, doc._replace(items=items)))
    return out


def _find_sweeps(entries, where: tuple[str, ...], found: list, diagnostics: list) -> None:
    for entry in entries:
        if isinstance(entry, ast.Block):
            labels = tuple(ast.label_text(x) for x in entry.labels[:1])
            _find_sweeps(entry.entries, (*where, entry.kind.value, *labels), found, diagnostics)
        else:
            _sweeps_in(entry.value, ".".join((*where, entry.key.value)), found, diagnostics,
                       inside=False)


def _sweeps_in(value, where: str, found: list, diagnostics: list, inside: bool) -> None:
    if isinstance(value, ast.Call):
        if value.name.value == "sweep":
            if inside:
                diagnostics.append(error("GB109", "a sweep inside a sweep", value.span,
                                         "not allowed", help=("sweep each setting once",)))
                return
            problems = [a for a in value.args if a.key is not None]
            if problems:
                diagnostics.append(error("GB109", "`sweep` takes values, not `name = value`",
                                         problems[0].span, "a keyword argument"))
            elif len(value.args) < 2:
                diagnostics.append(error("GB109", "a sweep needs at least two values",
                                         value.span, f"{len(value.args)} value(s)",
                                         help=("write the value itself, or `sweep(a, b)`",)))
            else:
                found.append((where, value))
                for arg in value.args:
                    _sweeps_in(arg.value, where, found, diagnostics, inside=True)
            return
        for arg in value.args:
            key = f"{where}.{arg.key.value}" if arg.key is not None else where
            _sweeps_in(arg.value, key, found, diagnostics, inside)
    elif isinstance(value, ast.Chain):
        for term in value.terms:
            _sweeps_in(term, where, found, diagnostics, inside)
    elif isinstance(value, (ast.ListValue, ast.TupleValue)):
        for item in value.items:
            _sweeps_in(item, where, found, diagnostics, inside)


def _substitute(node, chosen: dict[int, object]):
    """`node` with each chosen sweep call replaced by its value (the AST is immutable)."""
    if isinstance(node, ast.Call) and id(node) in chosen:
        return chosen[id(node)]
    if isinstance(node, ast.Block):
        return node._replace(entries=tuple(_substitute(e, chosen) for e in node.entries))
    if isinstance(node, ast.Setting):
        return node._replace(value=_substitute(node.value, chosen))
    if isinstance(node, ast.Call):
        return node._replace(args=tuple(a._replace(value=_substitute(a.value, chosen))
                                        for a in node.args))
    if isinstance(node, ast.Chain):
        return node._replace(terms=tuple(_substitute(t, chosen) for t in node.terms))
    if isinstance(node, (ast.ListValue, ast.TupleValue)):
        return node._replace(items=tuple(_substitute(i, chosen) for i in node.items))
    return node


def _written(value, sources: dict[str, str]) -> str:
    """A value as it was written, from the text of the file it was written in."""
    span = value.span
    return sources[span.path][span.start:span.end]


def _slug(where: str, value: str) -> str:
    parts = where.split(".")
    key = parts[-1] if parts[0] != "language" or len(parts) < 3 else f"{parts[1]}-{parts[-1]}"
    value = value.replace("%", "").replace("~", "").replace('"', "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{key}{value}").strip("._-")


def _variant_names(base: str, values: list[dict[str, str]]) -> list[str]:
    """`<name>-<key><value>…`, or `<name>-<n>` when that would be too long or not unique."""
    names = [f"{base}-" + "-".join(_slug(w, v) for w, v in vals.items()) for vals in values]
    ok = all(len(n) <= 63 and re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?", n)
             for n in names)
    if ok and len(set(names)) == len(names):
        return names
    return [f"{base}-{i}" for i in range(1, len(values) + 1)]
