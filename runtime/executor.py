"""Execute a compiled experiment: its step plan (steps.json), with a state file, resumably.

    load the artifact -> preflight -> lock -> state -> MLflow parent run -> each step not done

Every step of the plan runs under either backend: genbac's own steps (tokenizer, stage, base,
grow) are runtime/steps.py's everywhere; the tool's steps (prepare, convert, phase) are the
backend's: runtime/cszoo_backend.py runs their Model Zoo commands, runtime/local_backend.py does
them with genbac's trainer. The backend and the device come from preflight (runtime/preflight.py),
which refuses before anything is written or recorded.

`work/state.json` records the spec hash, the backend and every finished step. A rerun skips
finished steps and resumes an interrupted phase from its latest checkpoint; a compiled directory
whose spec hash differs from the state's is refused (`--restart` starts over). Every step is a
child run of one MLflow parent run, reopened on resume.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable

from genbac.compiler import artifact as layout
from genbac.compiler.artifact import Artifact
from genbac.errors import UserError

from .context import Context, RunError
from .preflight import Device, Verdict, preflight
from .runs import (DESCRIPTION_TAG, DEVICE_TAG, GIT_COMMIT_TAG, SPEC_HASH_TAG, VERSION_TAG,
                   WORK_DIR_TAG)
from .steps import run_genbac_step


def backend_for(device: Device, plan):
    if device.backend == "cszoo":
        from .cszoo_backend import CszooBackend

        return CszooBackend(plan)
    from .local_backend import LocalBackend

    return LocalBackend(plan)


def read_state(artifact: Artifact) -> dict:
    path = artifact.path(layout.STATE)
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} cannot be read ({exc}); rerun with --restart to start over "
                       "(this deletes work/)") from None


def check_state(artifact: Artifact, state: dict, backend: str) -> None:
    """A state file from another experiment or backend cannot be continued."""
    plan, work = artifact.plan, artifact.path(layout.WORK)
    if state and state.get("spec_hash") != plan.spec_hash:
        raise RunError(
            f"{work} holds a run of another version of this experiment (spec "
            f"{state.get('spec_hash', '?')[:12]}, now {plan.spec_hash[:12]}); its checkpoints do "
            "not fit the new plan. Rerun with --restart to start over (this deletes work/).")
    if state and state.get("backend", "local") != backend:
        raise RunError(
            f"{work} holds a run of the {state.get('backend', 'local')} backend; its steps and "
            f"checkpoints are not the {backend} backend's. Rerun with --backend "
            f"{state.get('backend', 'local')}, or with --restart to start over (this deletes "
            "work/).")


def plan_run(compiled: Path, backend: str = "auto", *, restart: bool = False
             ) -> tuple[Artifact, Verdict, dict]:
    """What `genbac run` would do, without doing any of it: the artifact, the preflight verdict
    and the state (finished steps) it would continue from."""
    artifact = Artifact.load(compiled)
    state = {} if restart else read_state(artifact)
    verdict = preflight(artifact, backend, set(state.get("done", [])))
    if verdict.device is not None and not restart:
        check_state(artifact, state, verdict.device.backend)
    return artifact, verdict, state


def execute(compiled: Path, *, tracking_uri: str, restart: bool = False,
            log: Callable[[str], None] = print, backend: str = "auto") -> dict:
    """Run the compiled experiment's steps with `backend` ("auto": from the spec's hardware,
    "local" or "cszoo"). One execution per directory at a time (runtime/runlock.py)."""
    from .runlock import RunLock

    artifact, verdict, _ = plan_run(compiled, backend, restart=restart)
    verdict.raise_if_refused()  # before the lock, the state file or MLflow
    for line in verdict.lines()[:-1]:
        log(f"genbac: {line}")
    with RunLock(artifact.path(layout.WORK)) as lock:
        if lock.unguarded:
            log(f"genbac: warning: {lock.path.parent} is on a filesystem without file locks; "
                "nothing stops a second `genbac run` of this directory")
        return _execute(artifact, verdict.device, lock, tracking_uri=tracking_uri,
                        restart=restart, log=log)


def _execute(artifact: Artifact, device: Device, lock, *, tracking_uri: str, restart: bool,
             log: Callable[[str], None]) -> dict:
    from genbac import __version__

    from genbac.spec.format import leading_comment

    from .naming import run_name
    from .runlock import LOCK_NAME
    from .provenance import environment, git_commit
    from .tracking import Tracker, flatten

    plan = artifact.plan
    work = artifact.path(layout.WORK)
    if restart and work.exists():
        _abandon_previous(artifact.path(layout.STATE), tracking_uri, log)
        for child in work.iterdir():
            if child.name == LOCK_NAME:
                continue  # held by this execution
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    state = read_state(artifact)  # again, under the lock
    check_state(artifact, state, device.backend)
    state.setdefault("spec_hash", plan.spec_hash)
    state.setdefault("done", [])
    state.setdefault("backend", device.backend)
    backend = backend_for(device, plan)
    tracker = Tracker(tracking_uri, plan.name, state)
    ctx = Context(artifact, state, tracker, log, device)
    fields = flatten("", json.loads(plan.spec.model_dump_json()), {})  # as the params hold it
    description = leading_comment(artifact.path(layout.SPEC).read_text(encoding="utf-8"))
    name = lambda previous: run_name(plan.name, plan.spec_hash, fields, previous)  # noqa: E731
    parent = tracker.parent(name, {
        **({DESCRIPTION_TAG: description} if description else {}),
        SPEC_HASH_TAG: plan.spec_hash, VERSION_TAG: __version__,
        "genbac.backend": device.backend, "genbac.hardware": plan.spec.hardware.describe(),
        DEVICE_TAG: device.description,
        "genbac.rehearsal": device.rehearsal or "no",
        WORK_DIR_TAG: str(work),
        **environment(device.backend, artifact.project / artifact.manifest.spec),
        **({GIT_COMMIT_TAG: c} if (c := git_commit(artifact.project)) else {})})
    lock.note(run_id=parent)
    ctx.save_state()
    if not state.get("logged_inputs"):
        _log_inputs(ctx, parent, fields, flatten)
        state["logged_inputs"] = True
        ctx.save_state()

    try:
        for step in artifact.steps.steps:
            if step.name in state["done"]:
                log(f"genbac: skip {step.name} (done)")
                continue
            started = time.perf_counter()
            log(f"genbac: {step.name} ...")
            ctx.run_id = tracker.child(step.name)
            try:
                if step.engine == "genbac":
                    result = run_genbac_step(ctx, step) or {}
                else:
                    result = backend.run(ctx, step) or {}
            except OSError as exc:
                tracker.finish(ctx.run_id, status="FAILED")
                where = f" {exc.filename}" if exc.filename else ""
                raise RunError(f"{step.name}: cannot write or read{where}: "
                               f"{exc.strerror or exc}") from None
            except UserError as exc:
                tracker.finish(ctx.run_id, status="FAILED")
                raise RunError(f"{step.name}: {exc}") from None
            except Exception:
                tracker.finish(ctx.run_id, status="FAILED")
                raise
            except BaseException:  # Ctrl-C, SIGTERM (see cli), SystemExit
                tracker.finish(ctx.run_id, status="KILLED")
                raise
            if result.get("params"):
                tracker.params(ctx.run_id, result["params"])
            if result.get("metrics"):
                tracker.metrics(ctx.run_id, 0, result["metrics"])
            tracker.finish(ctx.run_id)
            state["done"].append(step.name)
            ctx.save_state()
            log(f"genbac: {step.name} done in {time.perf_counter() - started:.1f} s")
    except BaseException as exc:
        interrupted = not isinstance(exc, Exception)
        tracker.finish(parent, status="KILLED" if interrupted else "FAILED")
        raise
    tracker.finish(parent)
    return state


def _log_inputs(ctx: Context, parent: str, fields: dict[str, str], flatten) -> None:
    """The spec's settings as parameters, and what was compiled as artifacts."""
    artifact, tracker = ctx.artifact, ctx.tracker
    plan = artifact.plan
    tracker.params(parent, fields)
    # the plan's estimates are constants: parameters beside the spec's, never per-step metrics
    estimate = json.loads(plan.estimate.model_dump_json())
    estimate["step_time_s"] = plan.estimate.seconds / plan.schedule.total_steps
    tracker.params(parent, flatten("estimate", estimate, {}))
    for name in (layout.SPEC, layout.PLAN, layout.STEPS):
        tracker.artifact(parent, artifact.path(name))
    from .provenance import (ARTIFACT_DIR, CSZOO_REQUIREMENTS, REQUIREMENTS, cszoo_installed,
                             requirements)

    tracker.text_artifact(parent, requirements(), f"{ARTIFACT_DIR}/{REQUIREMENTS}")
    if ctx.device is not None and ctx.device.backend == "cszoo":
        found = cszoo_installed()
        if found is not None and found[1]:
            tracker.text_artifact(parent, requirements(found[1], found[0]),
                                  f"{ARTIFACT_DIR}/{CSZOO_REQUIREMENTS}")
    for path in sorted(artifact.path("cszoo").rglob("*.yaml")):
        tracker.artifact(parent, path, "configs/" + str(path.parent.relative_to(ctx.compiled)))
    from genbac.plot import mixture_plot

    png = artifact.path(layout.MIXTURE_PNG)
    mixture_plot(artifact.plan, png)
    tracker.artifact(parent, png)


def _abandon_previous(state_path: Path, tracking_uri: str, log: Callable[[str], None]) -> None:
    """Before --restart wipes work/: the earlier execution's MLflow runs that are still RUNNING
    (killed without a chance to say so; this process holds the lock, so none is alive) become
    KILLED, so that the store does not show them running forever."""
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        return
    from .runs import shown
    from .tracking import close_abandoned

    runs = state.get("mlflow", {})
    ids = [runs.get("parent"), *runs.get("children", {}).values()]
    stored = runs.get("tracking_uri")  # as shown(): without its password, if it had one
    if stored and any(ids):
        uri = tracking_uri if shown(tracking_uri) == stored else stored
        closed = close_abandoned(uri, [i for i in ids if i])
        if closed:
            log(f"genbac: marked {closed} MLflow run(s) of the interrupted execution as KILLED")
