"""`genbac compare`: two or more runs side by side — the spec fields that differ, then the outcome.

The spec is read from each run's plan.json artifact (the whole validated spec, untruncated; MLflow's
params cut values at 500 characters) and flattened the way the params are (`train.optimizer.lr`,
`languages.bar.enter.percent`), so a field has the same name here as in the MLflow UI. A few facts
the compiler derived from it (steps, phase boundaries, tokens per language, parameters) follow, then
what each run achieved, read from its metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from genbac.text import duration, table

from .naming import compare_labels
from .runs import (DEVICE_TAG, GIT_COMMIT_TAG, MISSING, VERSION_TAG, Outcome, ParentRun,
                   StoreError, change_text, experiments, loss_text, open_store, outcome,
                   parent_runs, read_artifact, read_plan, resolve, short_ids, val_loss_history)
from .tracking import flatten


@dataclass(frozen=True)
class Fields:
    """One section of named values per run: which differ, which are shown."""

    rows: list[tuple[str, list[str | None]]]  # (field, value per run), the shown ones
    total: int
    differing: int


@dataclass(frozen=True)
class Comparison:
    runs: list[ParentRun]
    labels: list[str]  # column headers: short run ids
    differs: list[str]  # each run's values of the spec fields that differ (runtime/naming.py)
    plans: list[dict | None]
    spec: Fields
    plan: Fields
    environment: Fields
    languages: list[str]
    outcomes: list[Outcome]
    no_plan: list[str]  # labels of runs without a readable plan.json artifact
    no_packages: list[str]  # labels of runs that recorded no installed packages (older runs)
    show_all: bool


def compare_command(uri: str, targets: list[str], *, show_all: bool = False, fmt: str = "text",
                    plot_to: Path | None = None) -> str:
    """The whole command: resolve the arguments to parent runs, compare, render, plot."""
    client = open_store(uri)
    parents = parent_runs(client, experiments(client))
    runs = [resolve(client, target, parents) for target in targets]
    for i, run in enumerate(runs):
        for j in range(i):
            if runs[j].run_id == run.run_id:
                raise StoreError(f"{targets[j]!r} and {targets[i]!r} are the same run "
                                 f"({run.run_id})")
    c = compare_runs(client, runs, show_all=show_all)
    if plot_to is not None:
        plot(client, c, plot_to)
    return to_json(c) if fmt == "json" else render(c, markdown=fmt == "markdown")


def compare_runs(client, runs: list[ParentRun], *, show_all: bool = False) -> Comparison:
    plans = [read_plan(client, r.run_id) for r in runs]
    labels = short_ids([r.run_id for r in runs])
    # languages in the plans' order (en, de, bar), then any only the metrics know
    languages: list[str] = []
    for plan in plans:
        for lang in (plan or {}).get("spec", {}).get("languages", []):
            if lang["code"] not in languages:
                languages.append(lang["code"])
    languages += sorted({c for r in runs for c in r.languages} - set(languages))
    specs = [flatten("", p["spec"], {}, limit=None) if p else {} for p in plans]
    spec = fields(specs, show_all)
    differing = [n for n, values in spec.rows if len(set(values)) > 1]  # rows: all, or these
    envs = environments(client, runs)
    no_packages = [label for label, env in zip(labels, envs)
                   if not any(k.startswith(PACKAGE) for k in env)]
    if no_packages:  # packages are compared only where every run recorded them
        envs = [{k: v for k, v in env.items() if not k.startswith(PACKAGE)} for env in envs]
    return Comparison(
        runs, labels, compare_labels(specs, differing), plans, spec,
        fields([plan_facts(p) if p else {} for p in plans], show_all),
        fields(envs, show_all),
        languages, [outcome(client, r, languages) for r in runs],
        [label for label, p in zip(labels, plans) if p is None], no_packages, show_all)


def plan_facts(plan: dict) -> dict[str, str]:
    """What the compiler made of the spec, where a spec change shows its consequences."""
    schedule = plan["schedule"]
    facts = {"steps": str(schedule["total_steps"]),
             "phases": ", ".join(f"{p['start_step']}–{p['end_step']}" for p in schedule["phases"])}
    for lang in schedule.get("languages", []):
        facts[f"tokens.{lang['code']}"] = str(lang["compiled_tokens"])
    facts["parameters"] = str(plan["growth"]["parameters"])
    return facts


PACKAGE = "package "  # an environment fact that is an installed package's version


def environments(client, runs: list[ParentRun]) -> list[dict[str, str]]:
    """Where and with what each run ran (runtime/provenance.py): its device, genbac, the
    `genbac.env.*` tags, the git commit, and every installed package's version (`package <name>`,
    from the environment/requirements.txt artifact)."""
    from .preflight import steady_description
    from .provenance import ARTIFACT_DIR, ENV_TAG, REQUIREMENTS, parse_requirements

    out = []
    for run in runs:
        tags = run.tags
        device = tags.get(DEVICE_TAG)
        env = {"device": steady_description(device) if device else None,
               "genbac": tags.get(VERSION_TAG)}
        env |= {k[len(ENV_TAG):]: v for k, v in sorted(tags.items()) if k.startswith(ENV_TAG)}
        env["git commit"] = tags.get(GIT_COMMIT_TAG)
        text = read_artifact(client, run.run_id, f"{ARTIFACT_DIR}/{REQUIREMENTS}")
        packages = parse_requirements(text) if text is not None else {}
        env |= {f"{PACKAGE}{name}": v for name, v in sorted(packages.items())}
        out.append({k: v for k, v in env.items() if v is not None})
    return out


def fields(per_run: list[dict[str, str]], show_all: bool) -> Fields:
    names: list[str] = []  # first-seen order: the spec's own reading order
    seen = set()
    for values in per_run:
        for name in values:
            if name not in seen:
                seen.add(name)
                names.append(name)
    rows = [(n, [values.get(n) for values in per_run]) for n in names]
    differ = [row for row in rows if len(set(row[1])) > 1]
    return Fields(rows if show_all else differ, len(rows), len(differ))


# --------------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------------

def _count(v: float | None) -> str:
    return MISSING if v is None else f"{v:,.0f}"


def _seconds(v: float | None) -> str:
    return MISSING if v is None else duration(v)


def outcome_rows(c: Comparison) -> list[list[str]]:
    o = c.outcomes
    rows = [[f"val loss {code} (start)"] + [loss_text(x.start_val_loss[code]) for x in o]
            for code in c.languages if any(x.start_val_loss[code] is not None for x in o)]
    rows += [[f"val loss {code} (final)"] + [loss_text(x.final_val_loss[code]) for x in o]
             for code in c.languages]
    rows += [[f"change {code} (final − start)"] + [change_text(x.change(code)) for x in o]
             for code in c.languages if any(x.change(code) is not None for x in o)]
    rows += [[f"val loss {code} (best)"] + [loss_text(x.best_val_loss[code]) for x in o]
             for code in c.languages]
    rows += [[f"tokens {code}"] + [_count(x.tokens[code]) for x in o] for code in c.languages]
    rows += [["throughput (tokens/s)"] + [_count(x.tokens_per_sec) for x in o],
             ["wall time"] + [_seconds(x.wall_time_s) for x in o],
             ["status"] + [x.status_text for x in o]]
    return rows


def _cell(value: str | None, markdown: bool) -> str:
    if value is None:
        return MISSING
    return value.replace("|", "\\|") if markdown else value


def _fields_heading(name: str, f: Fields, c: Comparison, noun: str) -> str:
    if f.differing == 0:
        head = f"{name}: all {f.total} {noun} the same"
    else:
        head = f"{name}: {f.differing} of {f.total} {noun} differ"
    if not c.show_all and f.total > f.differing:
        head += " (--all shows every one)"
    return head


def render(c: Comparison, markdown: bool = False) -> str:
    heading = (lambda t: f"### {t}") if markdown else (lambda t: t)
    out = [heading(f"{len(c.runs)} runs")]
    out += table(["run", "run id", "experiment", "name", "spec", "started (UTC)", "differs by"],
                  [[label, r.run_id, r.experiment, _cell(r.name, markdown), r.spec_hash[:12],
                    r.started, _cell(d or MISSING, markdown)]
                   for label, r, d in zip(c.labels, c.runs, c.differs)], markdown)

    def section(name: str, f: Fields, noun: str, column: str) -> list[str]:
        lines = ["", heading(_fields_heading(name, f, c, noun))]
        if f.rows:
            lines += table([column] + c.labels,
                           [[_cell(n, markdown)] + [_cell(v, markdown) for v in values]
                            for n, values in f.rows], markdown)
        return lines

    out += section("spec", c.spec, "fields", "field") + section("plan", c.plan, "facts", "fact")
    if c.no_plan:
        out += ["", f"no plan.json artifact (spec unknown): {', '.join(c.no_plan)}"]
    out += ["", heading("outcome")]
    out += table(["metric"] + c.labels, outcome_rows(c), markdown,
                  align="l" + "r" * len(c.labels))
    # where and with what they ran: the same machine and packages is the common case
    out += section("environment", c.environment, "facts", "fact")
    if c.no_packages:
        out += ["", f"installed packages not recorded (runs before genbac recorded them): "
                    f"{', '.join(c.no_packages)}"]
    return "\n".join(out) + "\n"


def to_json(c: Comparison) -> str:
    def section(f: Fields) -> dict:
        return {"total": f.total, "differing": f.differing,
                "fields": [{"field": n, "values": values} for n, values in f.rows]}

    doc = {
        "format": "genbac.compare/1",
        "shown": "all" if c.show_all else "differing",
        "runs": [{"label": label, "run_id": r.run_id, "experiment": r.experiment,
                  "name": r.name, "differs_by": d, "spec_hash": r.spec_hash,
                  "started": r.started, "plan": label not in c.no_plan}
                 for label, r, d in zip(c.labels, c.runs, c.differs)],
        "spec": section(c.spec),
        "plan": section(c.plan),
        "environment": section(c.environment),
        "packages_not_recorded": c.no_packages,
        "languages": c.languages,
        "outcome": [{"run_id": r.run_id, "status": o.status, "stopped_at": o.stopped_at,
                     "start_val_loss": o.start_val_loss, "final_val_loss": o.final_val_loss,
                     "change_val_loss": {code: o.change(code) for code in c.languages},
                     "best_val_loss": o.best_val_loss,
                     "tokens": o.tokens, "tokens_per_sec": o.tokens_per_sec,
                     "wall_time_s": o.wall_time_s} for r, o in zip(c.runs, c.outcomes)],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def plot(client, c: Comparison, out: Path) -> Path:
    """Validation loss against step: one panel per language, one colour per run, labelled by the
    values that differ; each run's phase boundaries dashed and the language's entry dotted, in the
    run's colour (from its plan.json)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not c.languages:
        raise StoreError("none of these runs logged a validation loss: nothing to plot")
    n = len(c.languages)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 3.6), dpi=110, sharex=True, squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, code in zip(axes[0], c.languages):
        for i, (label, run, plan) in enumerate(zip(c.labels, c.runs, c.plans)):
            colour = colours(i % 10)
            history = val_loss_history(client, run.run_id, code)
            if history:
                steps, values = zip(*history)
                # a `$` pair would be read as mathtext: the labels are text
                legend = f"{c.differs[i]} ({label})" if c.differs[i] else label
                legend = legend.replace("$", r"\$")
                ax.plot(steps, values, marker="o", markersize=3, color=colour, label=legend)
            for step, style in _marks(plan, code):
                ax.axvline(step, color=colour, linewidth=0.8, linestyle=style, alpha=0.6)
                if style == ":":
                    ax.text(step, 0.98, f" {code} enters", color=colour, fontsize=7, va="top",
                            transform=ax.get_xaxis_transform())
        ax.set_title(f"validation loss: {code}", fontsize=10)
        ax.set_xlabel("step (dashed: phase boundary; dotted: the language enters)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)
    return out


def _marks(plan: dict | None, code: str) -> list[tuple[int, str]]:
    """(step, line style) of a run's phase boundaries and the step language `code` enters."""
    if plan is None:
        return []
    schedule = plan["schedule"]
    marks = [(p["start_step"], "--") for p in schedule["phases"][1:]]
    for lang in schedule.get("languages", []):
        if lang["code"] == code and lang.get("first_step"):
            marks.append((lang["first_step"], ":"))
    return marks
