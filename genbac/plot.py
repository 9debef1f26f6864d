"""The planned mixture as a picture (`genbac explain --plot`, and the runtime's MLflow artifact).

Top: tokens per step by language, stacked (they add up to batch x sequence), over the steps of the
run, so each phase's mixture is a band of constant heights. Bottom: the tokens each language has
seen so far, on a log scale, so a small late language such as GENBA's 80M Bavarian tokens is
visible.
Phase boundaries are dashed lines in both.

matplotlib is imported only here, inside the function, with the Agg backend: nothing that merely
imports genbac pays for it. The PNG is byte-stable for the same plan (no software or time stamp).
"""

from __future__ import annotations

from pathlib import Path

from genbac.compiler.plan import Plan
from genbac.compiler.schedule import fmt_tokens


def mixture_plot(plan: Plan, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    schedule = plan.schedule
    codes = [lang.code for lang in schedule.languages]
    # a `$` pair would be read as mathtext (and malformed mathtext raises): names are text
    names = {lang.code: f"{lang.code} ({lang.name})".replace("$", r"\$")
             for lang in schedule.languages}
    steps, per_step = [], {c: [] for c in codes}
    for phase in schedule.phases:
        for step in (phase.start_step, phase.end_step):
            steps.append(step)
            for c in codes:
                per_step[c].append(phase.share(c).weight * schedule.tokens_per_step)
    # cumulative tokens, sampled densely: linear within a phase, so a log axis needs many points
    samples = sorted({round(i * schedule.total_steps / 400) for i in range(401)}
                     | {p.start_step for p in schedule.phases})
    seen = {c: [] for c in codes}
    for step in samples:
        for c in codes:
            n = 0.0
            for phase in schedule.phases:
                done = min(max(step - phase.start_step, 0), phase.steps)
                n += phase.share(c).tokens * done / phase.steps
            seen[c].append(n)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), dpi=110, sharex=True)
    top.stackplot(steps, [per_step[c] for c in codes], labels=[names[c] for c in codes],
                  alpha=0.85)
    top.set_ylim(0, schedule.tokens_per_step * 1.08)  # head room for the phase labels
    top.set_ylabel("tokens per step")
    # 3.9M rather than matplotlib's "1e6" offset, which would collide with the phase labels
    top.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_tokens(v)))
    top.set_title(f"{plan.name}: planned mixture ({schedule.batch} x {schedule.sequence:,} = "
                  f"{schedule.tokens_per_step:,} tokens per step)", fontsize=10)
    top.legend(loc="lower left", fontsize=8, ncol=len(codes))
    for c in codes:
        bottom.plot(samples, [v if v > 0 else float("nan") for v in seen[c]], label=names[c])
    bottom.set_yscale("log")
    bottom.set_ylabel("tokens seen")
    bottom.set_xlabel(f"step (of {schedule.total_steps:,}; "
                      f"{schedule.compiled_tokens / 1e9:.4g}B tokens in all)"
                      if schedule.compiled_tokens >= 1e9 else
                      f"step (of {schedule.total_steps:,}; {schedule.compiled_tokens:,} tokens "
                      "in all)")
    for ax in (top, bottom):
        for phase in schedule.phases[1:]:
            ax.axvline(phase.start_step, color="black", linewidth=0.8, linestyle="--")
    for phase in schedule.phases:
        top.annotate(f"phase {phase.index}", (phase.start_step, schedule.tokens_per_step * 1.01),
                     fontsize=8, annotation_clip=False)
    bottom.set_xlim(0, schedule.total_steps)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", metadata={"Software": None})
    plt.close(fig)
    return out
