"""Schedule pass: phases, per-phase token allocation, mixture weights, tokens -> steps.

The allocation rule (documented in the README):

1. Budgets. Each language's budget is exact, unless written as approximate (`tokens = ~82B`). If the
   train block declares a total, approximate budgets are scaled together so that all budgets sum to
   it; without approximate budgets, a sum that differs from the total by more than one step's worth of
   tokens is an error.
2. Steps. total steps = round(total / (batch x sequence)). Every entry/exit point and explicit phase
   start p becomes a phase boundary at step round(p x total steps); consecutive boundaries make the
   phases.
3. Allocation. A language can only be drawn in the phases inside its window. Explicit phases (`phase
   90% { en = 50% … }`) keep their weights. Elsewhere each language's remaining budget is spread over
   its window in proportion to the phases' lengths, and then balanced by iterative proportional
   fitting, so that every phase is exactly full and every language gets exactly its budget: the most
   even spread (maximum entropy) the windows allow. When the windows make this impossible (a budget
   larger than its window, a stretch of training with too little data), that is an error naming them.
4. Rounding. Each language's total becomes a whole number of sequences (its budget rounded down or
   up, so within one sequence of it whenever the step count allows), then every phase's sequences
   (steps x batch) are divided among its languages so that both the phase totals and these language
   totals hold exactly, each cell the fitted value rounded down or up (a bipartite matching over the
   fractional cells). The Model Zoo mixture weight is sequences of the language / sequences of the
   phase. Compiled tokens per language therefore match their budgets within one step, usually within
   one sequence.

Example: GENBA (164B at 480 x 8192, en ~82B, de ~82B, bar 80M from 90%) -> 41,707 steps; phase 1 steps
0–37,536 en/de 50/50; phase 2 steps 37,536–41,707 with bar 9,766 sequences (80.0M tokens).
"""

from __future__ import annotations

import math
from itertools import combinations

from genbac.spec.diagnostics import Diagnostic, error, warning
from genbac.spec.ir import Point, Spec
from genbac.spec.limits import MAX_PHASES

from .plan import LanguageShare, LanguageTotal, LrPiece, Phase, Schedule, piece_value


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def fmt_tokens(n: float, digits: int = 6) -> str:
    """82000000000 -> '82B', 80003072 -> '80.003M' (up to `digits` significant digits)."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.{digits}g}{suffix}"
    return f"{n:.{digits}g}"


def solve_schedule(spec: Spec) -> tuple[Schedule | None, list[Diagnostic]]:
    diagnostics: list[Diagnostic] = []
    train = spec.train
    languages = spec.languages
    tps = train.sequence * train.batch

    # 1. budgets --------------------------------------------------------------------------------
    written = sum(lang.tokens for lang in languages)
    total = train.tokens if train.tokens is not None else written
    targets = {lang.code: float(lang.tokens) for lang in languages}
    if train.tokens is not None and written != total:
        approx = [lang for lang in languages if lang.approx]
        budget_spans = [(lang.where("tokens"), f"{lang.code}: {fmt_tokens(lang.tokens)}")
                        for lang in languages]
        if approx:
            fixed = sum(lang.tokens for lang in languages if not lang.approx)
            flexible = sum(lang.tokens for lang in approx)
            factor = (total - fixed) / flexible
            if factor <= 0:
                diagnostics.append(error(
                    "GB140", f"the exact budgets alone ({fmt_tokens(fixed)}) reach the declared "
                    f"total of {fmt_tokens(total)}", train.where("tokens"), "total",
                    secondary=budget_spans,
                    help=("raise the total, or lower the exact budgets",)))
                return None, diagnostics
            for lang in approx:
                targets[lang.code] = lang.tokens * factor
            if abs(factor - 1) > 0.05:
                diagnostics.append(warning(
                    "GB905", f"approximate budgets are scaled by {factor:.4f} to fit the total of "
                    f"{fmt_tokens(total)}", train.where("tokens"), "declared total",
                    secondary=[(lang.where("tokens"), f"~{fmt_tokens(lang.tokens)} -> "
                                f"{fmt_tokens(targets[lang.code])}") for lang in approx]))
        elif abs(total - written) <= tps:
            targets = {c: t * total / written for c, t in targets.items()}
        else:
            diagnostics.append(error(
                "GB140", f"the language budgets sum to {fmt_tokens(written)}, but the declared "
                f"total is {fmt_tokens(total)}", train.where("tokens"),
                f"differs by {fmt_tokens(abs(total - written))}", secondary=budget_spans,
                help=("mark the budgets that may absorb the difference as approximate, e.g. "
                      f"`tokens = ~{fmt_tokens(max(lang.tokens for lang in languages))}` in "
                      f"`language {max(languages, key=lambda lang: lang.tokens).code}`",
                      "or drop `tokens` from `train` to train on exactly the sum")))
            return None, diagnostics

    # 2. steps and phase boundaries ---------------------------------------------------------------
    total_steps = round_half_up(total / tps)
    if total_steps < 1:
        diagnostics.append(error(
            "GB141", f"the run of {fmt_tokens(total)} tokens is shorter than one step of "
            f"{train.batch} x {train.sequence} = {fmt_tokens(tps)} tokens",
            train.where("tokens", "batch"), "less than one step",
            secondary=[(train.where("batch"), "batch"), (train.where("sequence"), "sequence")]))
        return None, diagnostics

    def fraction(point: Point, what: str) -> float | None:
        if point.percent is not None:
            return point.percent / 100
        if point.tokens > total:
            diagnostics.append(error(
                "GB130", f"{what} at {fmt_tokens(point.tokens)} tokens is beyond the end of "
                f"training ({fmt_tokens(total)})", point.span, "after the last step"))
            return None
        return point.tokens / total

    windows: dict[str, tuple[int, int]] = {}
    window_fracs: dict[str, tuple[float, float]] = {}
    for lang in languages:
        enter = fraction(lang.enter, f"`{lang.code}` enters")
        exit_ = fraction(lang.exit, f"`{lang.code}` exits")
        if enter is None or exit_ is None:
            continue
        enter_span = lang.where("enter", "code")
        exit_span = lang.where("exit", "code")
        if enter >= exit_:
            diagnostics.append(error(
                "GB136", f"`{lang.code}` has an empty window: it enters at "
                f"{lang.enter.describe()} and exits at {lang.exit.describe()}", enter_span,
                "enters here", secondary=[(exit_span, "exits here")]))
            continue
        start, end = round_half_up(enter * total_steps), round_half_up(exit_ * total_steps)
        if start >= end:
            diagnostics.append(error(
                "GB137", f"`{lang.code}`'s window {lang.enter.describe()}–{lang.exit.describe()} "
                f"is shorter than one step ({total_steps} steps in total)", enter_span,
                "window rounds to zero steps", secondary=[(exit_span, "exits here")],
                help=("widen the window, or use a smaller batch for more steps",)))
            continue
        windows[lang.code] = (start, end)
        window_fracs[lang.code] = (enter, exit_)

    explicit_at: dict[int, object] = {}
    for mixture in spec.phases:
        f = fraction(mixture.start, "the phase")
        if f is None:
            continue
        step = round_half_up(f * total_steps)
        if step >= total_steps:
            diagnostics.append(error(
                "GB137", f"the phase starting at {mixture.start.describe()} has no steps",
                mixture.where("start"), "at or after the last step"))
            continue
        if step in explicit_at:
            diagnostics.append(error(
                "GB102", f"two phases start at step {step}", mixture.where("start"),
                "same start", secondary=[(explicit_at[step].where("start"), "other phase")]))
            continue
        explicit_at[step] = mixture
    if any(d.is_error for d in diagnostics):
        return None, diagnostics

    bounds = sorted({0, total_steps, *explicit_at, *(s for w in windows.values() for s in w)})
    ranges = list(zip(bounds[:-1], bounds[1:]))
    if len(ranges) > MAX_PHASES:  # before the solver, whose work grows fast with the phases
        diagnostics.append(error(
            "GB119", f"the entry and exit points and explicit mixtures split the run into "
            f"{len(ranges)} phases; at most {MAX_PHASES} are allowed", spec.span, "too many phases",
            help=("let languages share entry and exit points",)))
        return None, diagnostics
    codes = [lang.code for lang in languages]
    active = {(c, p): windows[c][0] <= a and b <= windows[c][1]
              for c in codes for p, (a, b) in enumerate(ranges)}
    seq_count = [(b - a) * train.batch for a, b in ranges]
    total_sequences = total_steps * train.batch

    # explicit phases: fixed weights; an explicit mixture lasts until the next boundary
    explicit: dict[int, dict[str, float]] = {}
    for p, (a, _) in enumerate(ranges):
        mixture = explicit_at.get(a)
        if mixture is None:
            continue
        for code, weight in mixture.weights.items():
            if weight > 0 and not active[(code, p)]:
                lang = spec.language(code)
                diagnostics.append(error(
                    "GB138", f"`{code}` gets weight {weight:g} in the phase at "
                    f"{mixture.start.describe()}, outside its window "
                    f"{lang.enter.describe()}–{lang.exit.describe()}", mixture.where(code),
                    "not active in this phase",
                    secondary=[(lang.where("enter", "code"), "window")]))
        explicit[p] = {c: mixture.weights.get(c, 0.0) for c in codes}
    if any(d.is_error for d in diagnostics):
        return None, diagnostics

    # 3. allocation -------------------------------------------------------------------------------
    scale = total_sequences / total  # requested tokens -> compiled sequences
    rows = {c: targets[c] * scale for c in codes}
    fixed = {c: sum(explicit[p][c] * seq_count[p] for p in explicit) for c in codes}
    free = [p for p in range(len(ranges)) if p not in explicit]
    support = {c: [p for p in free if active[(c, p)]] for c in codes}
    remaining = {}
    for c in codes:
        lang = spec.language(c)
        left = rows[c] - fixed[c]
        if (not support[c] and abs(left) > train.batch) or left < -train.batch:
            got = fixed[c] / scale
            phase_spans = [(explicit_at[ranges[p][0]].where(c) or explicit_at[ranges[p][0]].span,
                            f"{100 * explicit[p][c]:.4g}% of the phase")
                           for p in explicit if explicit[p][c] > 0]
            diagnostics.append(error(
                "GB139", f"the explicit mixtures give `{c}` {fmt_tokens(got)} tokens, but its "
                f"budget is {fmt_tokens(targets[c])}", lang.where("tokens"), "budget",
                secondary=phase_spans,
                help=("change the weights, or leave a phase in the window to the solver",)))
            continue
        remaining[c] = max(left, 0.0) if support[c] else 0.0
    if any(d.is_error for d in diagnostics):
        return None, diagnostics

    capacity = sum(seq_count[p] for p in free)
    wanted = sum(remaining.values())
    if free and wanted > 0:
        remaining = {c: r * capacity / wanted for c, r in remaining.items()}
    _check_feasible(spec, remaining, support, free, ranges, seq_count, total_steps, scale,
                    targets, diagnostics)
    if any(d.is_error for d in diagnostics):
        return None, diagnostics
    # 4. whole sequences: integer totals per language first (each within one sequence of its
    # budget when the step count allows it), then an integer matrix with exactly those row and
    # phase totals, every cell the floor or ceiling of the fitted value
    if not explicit:
        exact = {c: targets[c] / train.sequence for c in codes}
        row_totals = _integer_rows(exact, capacity) or _integer_rows(remaining, capacity)
    else:
        row_totals = _integer_rows(remaining, capacity)
    x = _fit({c: float(row_totals[c]) for c in codes}, support, free, seq_count)
    free_counts = _round_matrix(x, row_totals, {p: seq_count[p] for p in free}, support)
    sequences: dict[tuple[str, int], int] = {}
    requested: dict[tuple[str, int], float] = {}
    carry = {c: 0.0 for c in codes}
    for p in range(len(ranges)):
        if p in explicit:
            ideal = {c: explicit[p][c] * seq_count[p] for c in codes}
            counts = _largest_remainder(ideal, seq_count[p], codes)
        elif free_counts is not None:
            ideal = {c: x.get((c, p), 0.0) for c in codes}
            counts = {c: free_counts.get((c, p), 0) for c in codes}
        else:  # numerically stuck: round phase by phase, carrying each language's remainder
            ideal = {c: x.get((c, p), 0.0) for c in codes}
            want = {c: max(ideal[c] + carry[c], 0.0) if active[(c, p)] else 0.0 for c in codes}
            counts = _largest_remainder(want, seq_count[p], codes)
        for c in codes:
            sequences[(c, p)] = counts[c]
            requested[(c, p)] = ideal[c] / scale  # in tokens
            carry[c] += ideal[c] - counts[c]

    # 5. results ----------------------------------------------------------------------------------
    lr_pieces, lr_deviation = _lr_pieces(spec, total_steps, ranges, diagnostics)
    if lr_pieces is None:
        return None, diagnostics
    phases = []
    for p, (a, b) in enumerate(ranges):
        shares = tuple(
            LanguageShare.make(code=c, weight=sequences[(c, p)] / seq_count[p],
                               sequences=sequences[(c, p)],
                               tokens=sequences[(c, p)] * train.sequence,
                               requested_tokens=requested[(c, p)])
            for c in codes)
        phases.append(Phase.make(index=p + 1, start_step=a, end_step=b,
                                 start_percent=100 * a / total_steps,
                                 end_percent=100 * b / total_steps,
                                 explicit=p in explicit, shares=shares, lr=lr_pieces[p]))
    totals = []
    for lang in languages:
        c = lang.code
        compiled = sum(sequences[(c, p)] for p in range(len(ranges))) * train.sequence
        drawn = [ranges[p][0] for p in range(len(ranges)) if sequences[(c, p)] > 0]
        epochs = targets[c] / lang.corpus if lang.corpus else None
        totals.append(LanguageTotal.make(
            code=c, name=lang.name, written_tokens=lang.tokens, approx=lang.approx,
            target_tokens=targets[c], compiled_tokens=compiled,
            enter_percent=100 * window_fracs[c][0], exit_percent=100 * window_fracs[c][1],
            first_step=min(drawn) if drawn else None, corpus=lang.corpus, epochs=epochs))
        if epochs is not None and epochs > 4:
            diagnostics.append(warning(
                "GB902", f"`{c}` repeats its corpus {epochs:.1f} times ({fmt_tokens(targets[c])} "
                f"tokens from {fmt_tokens(lang.corpus)})", lang.where("tokens"),
                f"{epochs:.1f} epochs", secondary=[(lang.where("corpus"), "corpus size")],
                help=("returns diminish quickly beyond about 4 epochs of the same data",)))
        if abs(compiled - targets[c]) > max(0.01 * targets[c], tps):
            diagnostics.append(warning(
                "GB903", f"rounding to whole steps changes `{c}`'s budget from "
                f"{fmt_tokens(targets[c])} to {fmt_tokens(compiled)}", lang.where("tokens"),
                "rounded", secondary=[(train.where("batch"), f"{fmt_tokens(tps)} tokens per step")],
                help=("use a smaller batch or sequence, or a budget of whole steps",)))
    return Schedule.make(
        requested_tokens=total, tokens_per_step=tps, sequence=train.sequence, batch=train.batch,
        total_steps=total_steps, compiled_tokens=total_steps * tps, phases=tuple(phases),
        languages=tuple(totals), lr_peak=train.optimizer.lr, lr_max_deviation=lr_deviation,
    ), diagnostics


def _describe_range(ranges, phases, total_steps) -> str:
    a = ranges[min(phases)][0]
    b = ranges[max(phases)][1]
    return f"{100 * a / total_steps:.4g}%–{100 * b / total_steps:.4g}%"


def _check_feasible(spec, rows, support, free, ranges, seq_count, total_steps, scale, targets,
                    diagnostics) -> None:
    """Hall's conditions for the transportation problem of languages into phases."""
    if not free:
        return
    eps = 1e-9 * max(1.0, sum(seq_count))
    if len(free) <= 12:
        subsets = (set(s) for k in range(1, len(free) + 1) for s in combinations(free, k))
    else:
        subsets = (set(free[i:j]) for i in range(len(free)) for j in range(i + 1, len(free) + 1))
    reported = set()
    for subset in subsets:
        cap = sum(seq_count[p] for p in subset)
        confined = [c for c in rows if support[c] and set(support[c]) <= subset and rows[c] > 0]
        need = sum(rows[c] for c in confined)
        if need > cap + eps and "over" not in reported:
            reported.add("over")
            where = _describe_range(ranges, subset, total_steps)
            names = ", ".join(f"`{c}`" for c in confined)
            first = spec.language(confined[0])
            diagnostics.append(error(
                "GB139", f"{names} need{'s' if len(confined) == 1 else ''} "
                f"{fmt_tokens(need / scale)} tokens in {where}, which holds only "
                f"{fmt_tokens(cap / scale)}", first.where("tokens"), "budget too large",
                secondary=[(spec.language(c).where("enter", "code"),
                            "window") for c in confined],
                help=("widen the window, lower the budget, or train on more tokens",)))
        reach = [c for c in rows if set(support[c]) & subset]
        have = sum(rows[c] for c in reach)
        if cap > have + eps and "under" not in reported:
            reported.add("under")
            where = _describe_range(ranges, subset, total_steps)
            if not reach:
                diagnostics.append(error(
                    "GB137", f"no language is active in {where} of training", spec.span
                    if spec.span else None, "no data for part of the run",
                    secondary=[(spec.language(c).where("enter", "code"),
                                "window") for c in rows],
                    help=("extend a language's window over that stretch",)))
            else:
                diagnostics.append(error(
                    "GB137", f"not enough data for {where} of training: "
                    + ", ".join(f"`{c}`" for c in reach)
                    + f" can give {fmt_tokens(have / scale)} tokens there, but it needs "
                    f"{fmt_tokens(cap / scale)}", spec.language(reach[0]).where("tokens"),
                    "budget too small for its window",
                    secondary=[(spec.language(c).where("tokens"), "budget") for c in reach[1:]],
                    help=("raise these budgets, widen other languages' windows, or lower the "
                          "total",)))


def _fit(rows, support, free, seq_count, iterations: int = 10000) -> dict[tuple[str, int], float]:
    """Iterative proportional fitting of rows (languages) and columns (phases) on the support."""
    x = {}
    for c, target in rows.items():
        span = sum(seq_count[p] for p in support[c])
        for p in support[c]:
            x[(c, p)] = target * seq_count[p] / span if span else 0.0
    if not x:
        return x
    tolerance = 1e-12 * sum(seq_count[p] for p in free)
    for _ in range(iterations):
        for p in free:
            col = sum(v for (c, q), v in x.items() if q == p)
            if col > 0:
                f = seq_count[p] / col
                for c in rows:
                    if (c, p) in x:
                        x[(c, p)] *= f
        worst = 0.0
        for c, target in rows.items():
            row = sum(x[(c, p)] for p in support[c])
            if row > 0:
                f = target / row
                for p in support[c]:
                    x[(c, p)] *= f
        for p in free:
            col = sum(v for (c, q), v in x.items() if q == p)
            worst = max(worst, abs(col - seq_count[p]))
        if worst <= tolerance:
            break
    return x


def _integer_rows(real: dict[str, float], total: int) -> dict[str, int] | None:
    """Each value rounded down or up so that they sum to `total`; None if that is impossible."""
    floors = {c: int(math.floor(v + 1e-9)) for c, v in real.items()}
    extra = total - sum(floors.values())
    fractional = sorted(real, key=lambda c: (-(real[c] - floors[c]), list(real).index(c)))
    if not 0 <= extra <= len(fractional):
        return None
    for c in fractional[:extra]:
        floors[c] += 1
    return floors


def _round_matrix(x, rows: dict[str, int], cols: dict[int, int], support):
    """An integer matrix with the given row and column sums, each cell floor or ceil of x.

    x is a fractional solution with exactly these (integer) sums, so such a rounding exists; it is
    found as a bipartite b-matching (augmenting paths) over the cells with a fractional part.
    None if numerical error prevents it.
    """
    counts = {k: int(math.floor(v + 1e-9)) for k, v in x.items()}
    need_row = {c: rows[c] - sum(counts.get((c, p), 0) for p in cols) for c in rows}
    need_col = {p: cols[p] - sum(counts.get((c, p), 0) for c in rows) for p in cols}
    if any(v < 0 for v in need_row.values()) or any(v < 0 for v in need_col.values()):
        return None
    cells = {c: [p for p in support[c] if x.get((c, p), 0.0) - counts.get((c, p), 0) > 1e-9]
             for c in rows}
    assigned: dict[int, list[str]] = {p: [] for p in cols}  # phase -> languages given +1

    def augment(c, seen) -> bool:
        """Give language `c` one more sequence in some phase, moving others along a path."""
        for p in cells[c]:
            if p in seen or c in assigned[p]:  # a cell rounds up at most once
                continue
            seen.add(p)
            if len(assigned[p]) < need_col[p]:
                assigned[p].append(c)
                return True
            for other in list(assigned[p]):
                if augment(other, seen):
                    assigned[p].remove(other)
                    assigned[p].append(c)
                    return True
        return False

    for c in rows:
        for _ in range(need_row[c]):
            if not augment(c, set()):
                return None
    for p, langs in assigned.items():
        if len(langs) != need_col[p]:
            return None
        for c in langs:
            counts[(c, p)] = counts.get((c, p), 0) + 1
    return counts


def _largest_remainder(want: dict[str, float], total: int, order: list[str]) -> dict[str, int]:
    """Whole numbers proportional to `want` that sum to exactly `total`."""
    s = sum(want.values())
    if s <= 0:
        raise ValueError("no language to fill a phase")  # excluded by the feasibility check
    scaled = {c: want[c] * total / s for c in order}
    counts = {c: int(math.floor(scaled[c])) for c in order}
    left = total - sum(counts.values())
    by_remainder = sorted(order, key=lambda c: (-(scaled[c] - counts[c]), order.index(c)))
    for c in by_remainder[:left]:
        counts[c] += 1
    return counts


# --------------------------------------------------------------------------------------------------
# Learning rate
# --------------------------------------------------------------------------------------------------

_COSINE_KNOTS = 32


def _lr(x: float) -> float:
    """LRs as stored in the plan and written to configs: 10 significant digits, no float noise."""
    return float(f"{x:.10g}")


def _lr_pieces(spec: Spec, total_steps: int, ranges, diagnostics):
    """The one schedule of the spec over the run, cut into per-phase pieces.

    Model Zoo schedulers restart in every phase, so each phase gets the part of the one schedule that
    falls into it. Linear and constant parts cut exactly; a cosine that crosses a phase boundary is
    followed by linear pieces through points on the true curve, and the largest gap, relative to the
    peak LR, is reported (about 1e-4 for GENBA).
    """
    train = spec.train
    peak = train.optimizer.lr
    lengths = []
    for seg in train.schedule:
        if seg.length_percent is not None:
            lengths.append(round_half_up(seg.length_percent / 100 * total_steps))
        elif seg.length_steps is not None:
            lengths.append(seg.length_steps)
        else:
            lengths.append(None)
    fixed = sum(n for n in lengths if n is not None)
    if fixed > total_steps:
        diagnostics.append(error(
            "GB142", f"the schedule's pieces last {fixed} steps, longer than the run "
            f"({total_steps} steps)", train.where("schedule"), "too long",
            help=("give lengths in % of the run, e.g. `warmup(1%)`",)))
        return None, 0.0
    if any(seg.kind == "warmup" and n == 0 for seg, n in zip(train.schedule, lengths)):
        seg = next(s for s, n in zip(train.schedule, lengths) if s.kind == "warmup" and n == 0)
        diagnostics.append(warning(
            "GB906", f"the warmup rounds to 0 of {total_steps} steps", seg.span, "no warmup"))
    pieces = []  # global: (kind, start, end, lr_start, lr_end)
    level = 0.0 if train.schedule[0].kind == "warmup" else 1.0
    step = 0
    for seg, n in zip(train.schedule, lengths):
        if n is None:
            n = total_steps - step
        if seg.kind == "warmup":
            kind, end_level = "linear", 1.0
        elif seg.kind == "constant":
            kind, end_level = "constant", level
        else:
            kind, end_level = seg.kind, seg.to
        if n > 0:
            pieces.append((kind, step, step + n, level * peak, end_level * peak))
        level = end_level
        step += n
    if step < total_steps:
        pieces.append(("constant", step, total_steps, level * peak, level * peak))

    per_phase = []
    deviation = 0.0
    for start, end in ranges:
        cut = []
        for kind, a, b, la, lb in pieces:
            lo, hi = max(a, start), min(b, end)
            if lo >= hi:
                continue
            if kind == "cosine" and (lo, hi) != (a, b):
                # A cut cosine is not a half-cosine of its own: follow it with linear pieces
                # through knots on the true curve (32 per cut at most; error ~ (pi/32)^2/8).
                knots = min(_COSINE_KNOTS, hi - lo)
                edges = [lo + round_half_up(i * (hi - lo) / knots) for i in range(knots + 1)]
                for u, v in zip(edges[:-1], edges[1:]):
                    if u == v:
                        continue
                    su = piece_value(kind, la, lb, (u - a) / (b - a))
                    sv = piece_value(kind, la, lb, (v - a) / (b - a))
                    cut.append(LrPiece.make(kind="linear", start_step=u, steps=v - u,
                                            start_lr=_lr(su), end_lr=_lr(sv)))
                    for t in range(u, v + 1, max(1, (v - u) // 16)):
                        approx = su + (sv - su) * (t - u) / (v - u)
                        exact = piece_value(kind, la, lb, (t - a) / (b - a))
                        deviation = max(deviation, abs(approx - exact) / peak)
                continue
            sa = piece_value(kind, la, lb, (lo - a) / (b - a))
            sb = piece_value(kind, la, lb, (hi - a) / (b - a))
            cut.append(LrPiece.make(kind=kind, start_step=lo, steps=hi - lo, start_lr=_lr(sa),
                                    end_lr=_lr(sb)))
        per_phase.append(tuple(cut))
    return per_phase, deviation


def lr_at(phase: Phase, step: int) -> float:
    """The LR used for the update that starts at global step `step` (0-based) inside `phase`."""
    return phase.lr_at(step)
