"""genbac's runs in an MLflow store, read back: which parent runs there are, which one a
command-line argument names, and how each went (status, the step it stopped at, losses, tokens,
throughput).

Read-only: nothing here creates a store, an experiment or a run, and only MLflow's client is
imported (never torch, transformers or datasets), so `genbac runs` and `genbac compare` start in
about the time `import mlflow` takes.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from genbac.errors import UserError

from . import metrics as names

# the tags a run is found and described by: written by executor.execute (parent) and
# Tracker.child (steps); runtime/provenance.py adds genbac.env.*
SPEC_HASH_TAG = "genbac.spec_hash"
STEP_TAG = "genbac.step"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag
WORK_DIR_TAG = "genbac.work_dir"  # the execution's work/, where runlock tells whether it is alive
VERSION_TAG = "genbac.version"
DEVICE_TAG = "genbac.device"  # the device actually used (preflight's description)
BASELINE_TAG = "genbac.baseline"  # what the step-0 evaluation found (equal to the base, or not)
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own
DESCRIPTION_TAG = "mlflow.note.content"  # MLflow's run description
SHORT = 8  # characters of a run id or spec hash shown in tables
MISSING = "—"  # a value a run does not have


class StoreError(UserError):
    """A problem the user can fix (no store there, an unknown or ambiguous run); no traceback."""


# --------------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------------

CREDENTIALS = re.compile(r"//([^/@\s:]*):[^@/\s]*@")  # the user:password@ of a URL in a text


def shown(text: str) -> str:
    """`text` (a store URI, or a message naming one) as genbac prints or stores it: the password
    of every URL in it (postgresql://user:pw@host/db, https://user:token@host) replaced by ***,
    so that it reaches no log, no job output and no state file."""
    return CREDENTIALS.sub(r"//\1:***@", text)


def open_store(uri: str):
    """An MlflowClient on an existing store; StoreError if there is none, so that looking at runs
    never leaves an empty mlflow.db behind (MLflow would create one on first use)."""
    if uri.startswith("sqlite:///"):
        _check_sqlite(Path(uri[len("sqlite:///"):]))
    elif uri.startswith(("http://", "https://")):
        _check_server(uri)
    elif "://" not in uri and not Path(uri).exists():
        raise StoreError(f"no MLflow store at {shown(uri)}")
    # artifact downloads draw a progress bar on stderr; a table is all this output should be
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    return mlflow_call(MlflowClient, tracking_uri=uri)


def _check_sqlite(path: Path) -> None:
    if not path.is_file():
        raise StoreError(f"no MLflow store at {path} (`genbac run` creates one; pass "
                         "--tracking-uri or set MLFLOW_TRACKING_URI for another)")
    try:  # read-only: a file that is not an MLflow database must not be turned into one
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not an MLflow store ({exc})") from None
    if "runs" not in tables:
        raise StoreError(f"{path} is not an MLflow store (it has no runs table)")


def _check_server(uri: str) -> None:
    # MLflow's client retries an unreachable server for minutes; ask once, briefly (urllib takes
    # no user:password in a URL: they go in a header, as MLflow's client sends them)
    import base64

    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError as exc:
        raise StoreError(f"{shown(uri)} is not a URL: {exc}") from None
    url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2],
                                                 path=parts.path.rstrip("/") + "/health"))
    request = urllib.request.Request(url)
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        request.add_header("Authorization", "Basic " + base64.b64encode(
            f"{user}:{password}".encode()).decode())
    try:
        urllib.request.urlopen(request, timeout=5).close()
    except urllib.error.HTTPError:
        pass  # something answers; MLflow's own calls will say whether it is a tracking server
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StoreError(f"cannot reach the MLflow server at {shown(uri)}: {reason}") from None


def mlflow_call(fn, *args, **kwargs):
    """An MLflow client call, its errors (a store of another version, a server error) as
    StoreError with MLflow's first line."""
    from mlflow.exceptions import MlflowException

    try:
        return fn(*args, **kwargs)
    except MlflowException as exc:
        # MLflow's messages name the request's URL, with any user:password of the URI in it
        first = (str(exc.message).splitlines() or [""])[0]
        raise StoreError(f"MLflow: {shown(first)}") from None


def _search_all(client, experiment_ids: list[str], filter_string: str, order_by=None) -> list:
    runs, token = [], None
    while True:
        page = mlflow_call(client.search_runs, experiment_ids, filter_string, max_results=1000,
                           order_by=order_by, page_token=token)
        runs += page
        token = page.token
        if not token:
            return runs


# --------------------------------------------------------------------------------------------------
# parent runs
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParentRun:
    """One execution of a spec: MLflow's parent run with the child runs of its steps."""

    run_id: str
    experiment_id: str
    experiment: str
    spec_hash: str
    status: str  # MLflow's: RUNNING (also a run killed by SIGKILL), FINISHED, FAILED, KILLED
    start_ms: int
    end_ms: int | None
    metrics: dict[str, float]  # the latest value of every metric
    work_dir: str | None = None  # where it ran (tagged since the run lock)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    name: str = ""  # MLflow's run name (runtime/naming.py)

    @property
    def shown_status(self) -> str:
        """MLflow's status, except that a RUNNING run whose work directory is on this machine and
        whose run lock nobody holds is INTERRUPTED: its process is gone (killed, crashed) and
        `genbac run` on that directory resumes it."""
        if self.status == "RUNNING" and self.work_dir:
            from .runlock import is_alive

            if is_alive(Path(self.work_dir)) is False:
                return "INTERRUPTED"
        return self.status

    @property
    def started(self) -> str:
        """UTC, so that the same store prints the same table on every machine."""
        return datetime.fromtimestamp(self.start_ms / 1000, timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S")

    @property
    def wall_time_s(self) -> float | None:
        return None if self.end_ms is None else (self.end_ms - self.start_ms) / 1000

    @property
    def languages(self) -> list[str]:
        """Language codes this run logged validation loss or tokens for, sorted."""
        codes = set()
        for key in self.metrics:
            parts = names.split(key)
            if parts and parts[0] in (names.VAL_LOSS, names.TOKENS):
                codes.add(parts[1])
        return sorted(codes)

    def start_val_loss(self, code: str) -> float | None:
        """The step-0 baseline of a language (the model training started from), if evaluated."""
        value = self.params.get(names.baseline_param(names.val_loss(code)))
        try:
            return None if value is None else float(value)
        except ValueError:
            return None


def experiments(client, name: str | None = None) -> dict[str, str]:
    """Experiment id -> name: all active ones, or the one called `name`."""
    found = {e.experiment_id: e.name for e in mlflow_call(client.search_experiments)}
    if name is None:
        return found
    match = {i: n for i, n in found.items() if n == name}
    if not match:
        names = ", ".join(sorted(set(found.values()))) or "none"
        raise StoreError(f"no experiment called {name!r} (there are: {names})")
    return match


def parent_runs(client, experiment_ids: dict[str, str]) -> list[ParentRun]:
    """genbac's parent runs (those tagged with a spec hash), newest first."""
    if not experiment_ids:
        return []
    found = _search_all(client, list(experiment_ids), f"tags.`{SPEC_HASH_TAG}` LIKE '%'",
                        order_by=["attributes.start_time DESC"])
    runs = [ParentRun(r.info.run_id, r.info.experiment_id, experiment_ids[r.info.experiment_id],
                      r.data.tags[SPEC_HASH_TAG], r.info.status, r.info.start_time,
                      r.info.end_time, dict(r.data.metrics), r.data.tags.get(WORK_DIR_TAG),
                      dict(r.data.params), dict(r.data.tags), r.info.run_name or "")
            for r in found]
    return sorted(runs, key=lambda r: (-r.start_ms, r.run_id))


def short_ids(values: list[str], length: int = SHORT) -> list[str]:
    """The shortest prefixes, at least `length` long, that tell all of `values` apart."""
    while length < max((len(v) for v in values), default=0):
        if len({v[:length] for v in values}) == len(set(values)):
            break
        length += 4
    return [v[:length] for v in values]


def resolve(client, arg: str, parents: list[ParentRun]) -> ParentRun:
    """The parent run an argument names: a run id (or a unique prefix; a step's child run stands
    for its parent) or a spec hash (or a unique prefix: the latest run of that spec)."""
    key = arg.strip().lower()
    if not re.fullmatch(r"[0-9a-f]+", key):
        raise StoreError(f"{arg!r} is neither a run id nor a spec hash (both are hexadecimal); "
                         "`genbac runs` lists them")
    by_id = [r for r in parents if r.run_id.startswith(key)]
    latest_of_hash: dict[str, ParentRun] = {}
    for r in parents:  # newest first: the first seen is the latest
        if r.spec_hash.startswith(key):
            latest_of_hash.setdefault(r.spec_hash, r)
    candidates = {r.run_id: f"run {r.run_id}  (spec {r.spec_hash[:12]}, {r.experiment}, "
                            f"{r.started})" for r in by_id}
    for spec_hash, r in latest_of_hash.items():
        candidates.setdefault(r.run_id, f"spec {spec_hash[:12]}  (latest run {r.run_id}, "
                                        f"{r.experiment}, {r.started})")
    if len(candidates) == 1:
        run_id = next(iter(candidates))
        return next(r for r in parents if r.run_id == run_id)
    if len(candidates) > 1:
        lines = "\n".join(f"  {c}" for c in candidates.values())
        raise StoreError(f"{arg!r} is ambiguous; it could be\n{lines}\ngive more characters")
    parent = _parent_of_step(client, key, parents)
    if parent is not None:
        return parent
    recent = "\n".join(f"  run {r.run_id}  spec {r.spec_hash[:12]}  {r.experiment}  {r.started}"
                       for r in parents[:5])
    known = f"; the latest:\n{recent}" if parents else " (there are no genbac runs in this store)"
    raise StoreError(f"no genbac run or spec hash starts with {arg!r}{known}")


def _parent_of_step(client, key: str, parents: list[ParentRun]) -> ParentRun | None:
    experiment_ids = sorted({r.experiment_id for r in parents})
    if not experiment_ids:
        return None
    steps = [r for r in _search_all(client, experiment_ids, f"tags.`{STEP_TAG}` LIKE '%'")
             if r.info.run_id.startswith(key)]
    parent_ids = {r.data.tags.get(PARENT_TAG) for r in steps}
    if len(steps) > 1 and len(parent_ids) > 1:
        lines = "\n".join(f"  step run {r.info.run_id}  ({r.data.tags[STEP_TAG]})" for r in steps)
        raise StoreError(f"{key!r} is ambiguous; it could be\n{lines}\ngive more characters")
    by_id = {r.run_id: r for r in parents}
    return by_id.get(parent_ids.pop()) if steps else None


def read_artifact(client, run_id: str, path: str) -> str | None:
    """A text artifact of the run; None if it has none (a run stopped before logging it)."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="genbac-artifact-") as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
            return Path(local).read_text(encoding="utf-8")
        except (MlflowException, OSError, ValueError):
            return None


def read_plan(client, run_id: str) -> dict | None:
    """The run's plan.json artifact; None if it has none or it is not JSON."""
    text = read_artifact(client, run_id, "plan.json")
    try:
        return None if text is None else json.loads(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# how a run went
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    status: str
    stopped_at: str | None  # the step an unfinished run stopped at, e.g. "phase-1 (step 20)"
    start_val_loss: dict[str, float | None]  # the step-0 baseline
    final_val_loss: dict[str, float | None]
    best_val_loss: dict[str, float | None]
    tokens: dict[str, float | None]
    tokens_per_sec: float | None  # training_rate: the median over the training steps
    wall_time_s: float | None  # parent run start to end; None while MLflow has no end

    @property
    def status_text(self) -> str:
        return self.status if self.stopped_at is None else f"{self.status} at {self.stopped_at}"

    def change(self, code: str) -> float | None:
        """Final minus step-0 validation loss: below zero the language gained, above zero it was
        forgotten."""
        start, final = self.start_val_loss.get(code), self.final_val_loss.get(code)
        return None if start is None or final is None else final - start


def change_text(change: float | None) -> str:
    """A change of validation loss as the table shows it: signed, named."""
    if change is None:
        return MISSING
    if abs(change) < 5e-5:
        return "±0.0000"
    return f"{change:+.4f} ({'gain' if change < 0 else 'forgotten'})".replace("-", "−")


def outcome(client, run: ParentRun, languages: list[str], *, best: bool = True) -> Outcome:
    """What the run achieved. `best=False` skips reading the validation histories (for listings)."""
    start = {c: run.start_val_loss(c) for c in languages}
    final = {c: run.metrics.get(names.val_loss(c)) for c in languages}
    lowest = {c: None for c in languages}
    if best:
        for c in languages:
            history = val_loss_history(client, run.run_id, c)
            lowest[c] = min((v for _, v in history), default=None)
    tokens = {c: run.metrics.get(names.tokens_of(c)) for c in languages}
    return Outcome(run.shown_status, stopped_at(client, run), start, final, lowest, tokens,
                   training_rate(client, run.run_id)[0], run.wall_time_s)


def val_loss_history(client, run_id: str, code: str) -> list[tuple[int, float]]:
    history = mlflow_call(client.get_metric_history, run_id, names.val_loss(code))
    return sorted((m.step, m.value) for m in history)


def training_rate(client, run_id: str) -> tuple[float | None, int]:
    """The run's training rate, computed this one way for `runs`, `compare` and `explain
    --calibrate`: the median of its per-step tokens_per_sec (either backend logs it for every
    training step, on the phase's run and the parent), so that the first steps (start-up,
    compilation) and a slow stretch do not move it; and over how many steps."""
    import statistics

    rates = [m.value for m in mlflow_call(client.get_metric_history, run_id, names.TOKENS_PER_SEC)
             if m.value > 0]
    return (statistics.median(rates) if rates else None), len(rates)


def stopped_at(client, run: ParentRun) -> str | None:
    """For a run that did not finish: the step that failed or was running when it stopped (with the
    last training step logged in a phase), or the last step that finished before it stopped."""
    if run.status == "FINISHED":
        return None
    children = _search_all(client, [run.experiment_id],
                           f"tags.`{PARENT_TAG}` = '{run.run_id}'")
    children.sort(key=lambda r: (r.info.start_time, r.info.run_id))
    open_ = [r for r in children if r.info.status != "FINISHED"]
    if open_:
        step = open_[-1]
        name = step.data.tags.get(STEP_TAG, step.info.run_name)
        logged = mlflow_call(client.get_metric_history, step.info.run_id, names.LOSS)
        if logged:
            return f"{name} (step {max(m.step for m in logged)})"
        return name
    if children:
        return f"after {children[-1].data.tags.get(STEP_TAG, children[-1].info.run_name)}"
    return "before its first step"


# --------------------------------------------------------------------------------------------------
# `genbac runs`: the listing
# --------------------------------------------------------------------------------------------------

def list_runs(uri: str, experiment: str | None = None, fmt: str = "text", limit: int = 50) -> str:
    from genbac.text import table

    if limit < 1:
        raise StoreError(f"--limit {limit}: give at least 1")
    client = open_store(uri)
    runs = parent_runs(client, experiments(client, experiment))[:limit]
    languages = sorted({c for r in runs for c in r.languages})
    outcomes = [outcome(client, r, languages, best=False) for r in runs]
    if fmt == "json":
        return json.dumps({"format": "genbac.runs/1", "runs": [
            {"run_id": r.run_id, "experiment": r.experiment, "name": r.name,
             "spec_hash": r.spec_hash,
             "started": r.started, "status": o.status, "stopped_at": o.stopped_at,
             "start_val_loss": o.start_val_loss, "final_val_loss": o.final_val_loss,
             "change_val_loss": {c: o.change(c) for c in languages},
             "tokens_per_sec": o.tokens_per_sec,
             "wall_time_s": o.wall_time_s} for r, o in zip(runs, outcomes)]},
            indent=2) + "\n"
    if not runs:
        where = f"experiment {experiment!r}" if experiment else shown(uri)
        return f"no genbac runs in {where}\n"
    ids = short_ids([r.run_id for r in runs])
    hashes = short_ids([r.spec_hash for r in runs])
    # a language's final loss, then its change from the step-0 baseline where a run has one
    columns = [(c, any(o.change(c) is not None for o in outcomes)) for c in languages]
    rows = [[i, r.experiment, r.name, r.started, h, o.status_text]
            + [cell for c, changed in columns
               for cell in ([loss_text(o.final_val_loss[c])]
                            + ([change_text(o.change(c))] if changed else []))]
            + [MISSING if o.tokens_per_sec is None else f"{o.tokens_per_sec:,.0f}"]
            for i, h, r, o in zip(ids, hashes, runs, outcomes)]
    headers = (["run", "experiment", "name", "started (UTC)", "spec", "status"]
               + [h for c, changed in columns
                  for h in [f"val loss {c}"] + ([f"change {c}"] if changed else [])]
               + ["tokens/s"])
    markdown = fmt == "markdown"
    if markdown:
        rows = [[cell.replace("|", "\\|") for cell in row] for row in rows]
    return "\n".join(table(headers, rows, markdown,
                            align="l" * 6 + "r" * (len(headers) - 6))) + "\n"


def loss_text(v: float | None) -> str:
    return MISSING if v is None else f"{v:.4f}"

