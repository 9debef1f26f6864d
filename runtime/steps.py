"""The steps genbac itself does, one implementation for every way of running an experiment: the
local and the cszoo backend call these functions, and run.sh calls them through `genbac step DIR
NAME` (genbac/cli.py). Each takes the run's Context and the Step from steps.json and returns what
to record in MLflow ({"params": …, "metrics": …}) or None.

    tokenizer         train the spec's BPE tokenizer on the training sources
    download          a `hf:` base or tokenizer into the Hugging Face cache (runtime/hub.py),
                      linked from work/hub/
    import-tokenizer  copy a tokenizer directory, made loadable by Model Zoo's transformers 4.57
    stage             link a job's source files into work/raw/<job>
    base              a seeded random base (a spec whose base has no weights)
    grow              the base grown as planned into work/grown (the checkpoint training starts from)
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from genbac.compiler import artifact as layout
from genbac.compiler.artifact import Input, Step

from . import metrics as names
from .context import Context, RunError


def input_path(ctx: Context, item: Input) -> Path:
    """Where a step input is on this machine."""
    if item.root == "project":
        return ctx.artifact.project_path(item.path)
    if item.root == "hub":  # only a download step reads one (compiler/targets/cszoo.py)
        raise RunError(f"hf:{item.path} is read through its download step, not directly")
    return ctx.path(item.path)


def sources(ctx: Context, step: Step) -> list[Path]:
    """The files a step's source patterns match, in the order the spec lists them (each
    pattern's matches sorted): the one resolution both backends and run.sh use."""
    from .sources import resolve_sources

    patterns = [i.path for i in step.inputs if i.root == "project" and i.holds == "files"]
    return resolve_sources(patterns, ctx.project)


def staged(ctx: Context, job: str) -> list[Path]:
    """The files a stage step linked for `job`, in staging order."""
    directory = ctx.path(layout.raw_dir(job))
    return [Path(p.readlink()) for p in sorted(directory.iterdir())] if directory.is_dir() else []


def tokenizer(ctx: Context, step: Step):
    from .tokenizer import train_bpe_tokenizer

    files = sources(ctx, step)
    train_bpe_tokenizer(files, ctx.plan.tokenizer_training, ctx.path(layout.TOKENIZER))
    return {"params": {"vocab": str(ctx.plan.tokenizer_training), "files": str(len(files))}}


def download(ctx: Context, step: Step):
    from genbac import atomic

    from .hub import download as fetch
    from .hub import ref_of

    (item,), (output,) = step.inputs, step.outputs
    ref = ref_of(item.path)
    ctx.log(f"genbac: {step.name}: {ref} into the Hugging Face cache")
    snapshot, commit = fetch(ref, item.holds)
    atomic.symlink(ctx.path(output), snapshot)
    ctx.log(f"genbac: {step.name}: {ref} is commit {commit} ({snapshot})")
    return {"params": {"repository": ref.repo, "revision": ref.revision or "main (unpinned)",
                       "commit": commit}}


def import_tokenizer(ctx: Context, step: Step):
    from .tokenizer import import_tokenizer as copy_portable

    source = input_path(ctx, step.inputs[0])
    copy_portable(source, ctx.path(layout.TOKENIZER))
    return {"params": {"tokenizer": str(source)}}


def stage(ctx: Context, step: Step):
    """Links numbered in order, so that two sources with one file name stay apart."""
    files = sources(ctx, step)
    directory = ctx.path(layout.raw_dir(step.job))
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for n, path in enumerate(files, 1):
        (directory / f"{n:04d}-{path.name}").symlink_to(path)
    return {"metrics": {"files": len(files)}}


def base(ctx: Context, step: Step):
    from .train import random_base

    random_base(ctx.plan, ctx.path(layout.BASE), ctx.plan.spec.train.seed)
    return {"params": {"init": "random", "seed": str(ctx.plan.spec.train.seed)}}


def grow(ctx: Context, step: Step):
    from .grow import REPORT_NAME, run_grow

    report = run_grow(ctx.path(layout.PLAN), input_path(ctx, step.inputs[0]),
                      ctx.path(layout.GROWN), log=ctx.log)
    if ctx.tracker is not None:
        ctx.tracker.artifact(ctx.run_id, ctx.path(layout.GROWN) / REPORT_NAME)
    verification = report.get("verification") or {}
    if verification.get("max_abs_diff") is None:
        return None
    return {"metrics": {names.FUNCTION_PRESERVATION: verification["max_abs_diff"]}}


GENBAC_STEPS: dict[str, Callable[[Context, Step], dict | None]] = {
    "tokenizer": tokenizer,
    "download": download,
    "import-tokenizer": import_tokenizer,
    "stage": stage,
    "base": base,
    "grow": grow,
}


def run_genbac_step(ctx: Context, step: Step):
    if step.engine != "genbac" or step.kind not in GENBAC_STEPS:
        raise RunError(f"step {step.name} is done by {step.argv[0]}, not by genbac")
    return GENBAC_STEPS[step.kind](ctx, step)
