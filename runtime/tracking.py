"""MLflow tracking for a run: one parent run per execution, a child run per step.

Uses `MlflowClient` with explicit run ids (no global "active run"), so a resumed execution reopens
the same runs, and a metric step that MLflow already holds is never logged twice.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from . import metrics as names
from .runs import shown

MAX_PARAM_VALUE = 500  # MLflow allows 6000; short values keep the params table readable


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else a SQLite store in the working directory (what `mlflow ui` opens)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def flatten(prefix: str, value, out: dict[str, str],
            limit: int | None = MAX_PARAM_VALUE) -> dict[str, str]:
    """Nested JSON as `a.b.c` -> text; languages keyed by code. `limit=None` keeps whole keys and
    values (`genbac compare` diffs them; MLflow params need the limit)."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else k, v, out, limit)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            key = v.get("code") if isinstance(v.get("code"), str) else str(i)
            flatten(f"{prefix}.{key}", v, out, limit)
    elif value is not None:
        text = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
        if limit is None:
            out[prefix] = text
        else:
            out[prefix[:250]] = text if len(text) <= limit else text[:limit - 1] + "…"
    return out


def close_abandoned(tracking_uri: str, run_ids: list[str]) -> int:
    """Mark those of `run_ids` that MLflow still has as RUNNING as KILLED; how many. For runs whose
    process is known to be gone; a store or run that cannot be reached is left as it is."""
    from .runs import StoreError, open_store

    try:
        client = open_store(tracking_uri)  # never creates a store that is gone
    except StoreError:
        return 0
    closed = 0
    for run_id in run_ids:
        try:
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_terminated(run_id, "KILLED")
                closed += 1
        except Exception:  # noqa: BLE001 - MLflow raises its own types per store
            continue
    return closed


class Tracker:
    def __init__(self, tracking_uri: str, experiment: str, state: dict):
        """`state` is the executor's persisted dict; run ids live in state["mlflow"]."""
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.uri = tracking_uri
        self.state = state.setdefault("mlflow", {})
        stored = shown(tracking_uri)  # work/state.json holds no password
        if stored != tracking_uri:  # nor the output: MLflow prints run links with the URI in them
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        if self.state.get("tracking_uri") not in (None, stored):
            self.state.clear()  # another store: start fresh runs there
        self.state["tracking_uri"] = stored
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self._last_step: dict[str, int] = {}

    # -- runs ------------------------------------------------------------------------------------

    def parent(self, name: Callable[[tuple[str, str, dict[str, str]] | None], str],
               tags: dict[str, str]) -> str:
        """The execution's parent run, reopened on resume; a new one is named by `name` from the
        experiment's latest earlier run (runtime/naming.py)."""
        run_id = self.state.get("parent")
        if run_id is None or not self._exists(run_id):
            run = self.client.create_run(self.experiment_id, run_name=name(self.latest_parent()),
                                         tags=tags)
            run_id = self.state["parent"] = run.info.run_id
        else:  # a resumed execution: the tags say where and with what it runs now
            self.client.update_run(run_id, status="RUNNING")
            self.tags(run_id, tags)
        return run_id

    def latest_parent(self) -> tuple[str, str, dict[str, str]] | None:
        """The experiment's latest genbac parent run as (name, spec hash, params), or None."""
        from .runs import SPEC_HASH_TAG

        found = self.client.search_runs([self.experiment_id], f"tags.`{SPEC_HASH_TAG}` LIKE '%'",
                                        max_results=1, order_by=["attributes.start_time DESC"])
        if not found:
            return None
        run = found[0]
        return run.info.run_name, run.data.tags[SPEC_HASH_TAG], dict(run.data.params)

    def child(self, step_name: str, tags: dict[str, str] | None = None) -> str:
        children = self.state.setdefault("children", {})
        run_id = children.get(step_name)
        if run_id is None or not self._exists(run_id):
            run = self.client.create_run(
                self.experiment_id, run_name=step_name,
                tags={"mlflow.parentRunId": self.state["parent"], "genbac.step": step_name,
                      **(tags or {})})
            run_id = children[step_name] = run.info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
        return run_id

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        """FINISHED, FAILED (an error), or KILLED (interrupted: Ctrl-C, SIGTERM)."""
        self.client.set_terminated(run_id, status)

    def _exists(self, run_id: str) -> bool:
        try:
            self.client.get_run(run_id)
            return True
        except Exception:  # noqa: BLE001 - MLflow raises its own types per store
            return False

    # -- data ------------------------------------------------------------------------------------

    def params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        have = self.client.get_run(run_id).data.params
        new = [Param(k, v) for k, v in sorted(params.items()) if k not in have]
        for i in range(0, len(new), 100):
            self.client.log_batch(run_id, params=new[i:i + 100])

    def tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in sorted(tags.items())])

    def metrics(self, run_id: str, step: int, values: dict[str, float]) -> None:
        """Log one step's metrics unless MLflow already has this step (a resumed run)."""
        from mlflow.entities import Metric

        if step <= self.last_step(run_id):
            return
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in sorted(values.items())]
        for i in range(0, len(batch), 500):
            self.client.log_batch(run_id, metrics=batch[i:i + 500])
        self._last_step[run_id] = step

    def last_step(self, run_id: str) -> int:
        if run_id not in self._last_step:
            history = self.client.get_metric_history(run_id, names.LOSS)
            self._last_step[run_id] = max((m.step for m in history), default=-1)
        return self._last_step[run_id]

    def artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def text_artifact(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)
