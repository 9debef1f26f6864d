"""The planned mixture as a picture: the share of each language per phase (stacked), and the tokens
each language has seen so far (log scale, so a small late language such as GENBA's 80M Bavarian
tokens is visible), phase boundaries marked."""

from __future__ import annotations

from pathlib import Path

from genbac.compiler.plan import Plan


def mixture_plot(plan: Plan, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    schedule = plan.schedule
    codes = [lang.code for lang in schedule.languages]
    steps, share = [], {c: [] for c in codes}
    for phase in schedule.phases:
        for step in (phase.start_step, phase.end_step):
            steps.append(step)
            for c in codes:
                share[c].append(100 * phase.share(c).weight)
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
    top.stackplot(steps, [share[c] for c in codes], labels=codes, alpha=0.85)
    top.set_ylim(0, 100)
    top.set_ylabel("share of sequences (%)")
    top.set_title(f"{plan.name}: planned mixture", fontsize=10)
    top.legend(loc="lower left", fontsize=8, ncol=len(codes))
    for c in codes:
        bottom.plot(samples, [v if v > 0 else float("nan") for v in seen[c]], label=c)
    bottom.set_yscale("log")
    bottom.set_ylabel("tokens seen")
    bottom.set_xlabel("step")
    for ax in (top, bottom):
        for phase in schedule.phases[1:]:
            ax.axvline(phase.start_step, color="black", linewidth=0.8, linestyle="--")
    for phase in schedule.phases:
        top.annotate(f"phase {phase.index}", (phase.start_step, 101), fontsize=8,
                     annotation_clip=False)
    bottom.set_xlim(0, schedule.total_steps)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)
    return out
