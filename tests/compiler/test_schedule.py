"""The schedule solver: the GENBA numbers, and properties that must hold for any feasible spec."""

import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from genbac.compiler.compile import plan_spec
from genbac.compiler.schedule import lr_at, round_half_up
from genbac.spec.diagnostics import SpecError


def genba_plan(examples):
    path = examples["llama-genba-10b"]
    return plan_spec(path.read_text(), str(path))[0]


def test_genba_steps_and_phases(examples):
    s = genba_plan(examples).schedule
    assert s.tokens_per_step == 480 * 8192 == 3_932_160
    assert s.total_steps == 41_707  # 164e9 / 3,932,160 = 41,707.3
    assert [(p.start_step, p.end_step) for p in s.phases] == [(0, 37_536), (37_536, 41_707)]
    assert sum(p.steps for p in s.phases) == s.total_steps


def test_genba_bavarian_only_in_last_phase_within_one_step(examples):
    s = genba_plan(examples).schedule
    first, last = s.phases
    assert first.share("bar").sequences == 0 and first.share("bar").weight == 0
    bar = next(lang for lang in s.languages if lang.code == "bar")
    assert bar.first_step == 37_536
    assert abs(bar.compiled_tokens - 80_000_000) <= s.tokens_per_step
    assert last.share("bar").tokens == bar.compiled_tokens
    # en and de share everything else equally and absorb the 80M (they were written `~82B`)
    assert first.share("en").weight == pytest.approx(0.5)
    en = next(lang for lang in s.languages if lang.code == "en")
    assert en.target_tokens == pytest.approx(81.96e9)


def test_genba_weights_are_sequence_ratios(examples):
    for phase in genba_plan(examples).schedule.phases:
        assert sum(sh.sequences for sh in phase.shares) == phase.steps * 480
        for sh in phase.shares:
            assert sh.weight == sh.sequences / (phase.steps * 480)


def test_lr_schedule_follows_warmup_then_cosine(examples):
    plan = genba_plan(examples)
    s = plan.schedule
    peak = 1.5e-4
    first, last = s.phases
    assert lr_at(first, 0) == 0.0
    warmup = round(0.01 * s.total_steps)
    assert lr_at(first, warmup) == pytest.approx(peak)
    # the true cosine from the end of warmup to 10% of peak, sampled in both phases
    for step in (warmup + 1000, 20_000, 37_535, 37_536, 40_000, 41_706):
        phase = first if step < 37_536 else last
        frac = (step - warmup) / (s.total_steps - warmup)
        want = 0.1 * peak + 0.9 * peak * 0.5 * (1 + math.cos(math.pi * frac))
        assert lr_at(phase, step) == pytest.approx(want, abs=1e-3 * peak)
    assert s.lr_max_deviation < 1e-3
    # pieces tile each phase exactly
    for phase in s.phases:
        assert phase.lr[0].start_step == phase.start_step
        assert sum(p.steps for p in phase.lr) == phase.steps


SPEC = """
experiment "prop" {{
  base = smollm2-135m
  {languages}
  train {{
    {total}
    sequence = {sequence}
    batch = {batch}
    optimizer = adamw(lr = 1e-4)
    checkpoint every 100 steps
  }}
  hardware = cpu
}}
"""


@st.composite
def specs(draw):
    n = draw(st.integers(1, 4))
    sequence = draw(st.sampled_from([64, 128, 512, 2048]))
    batch = draw(st.integers(1, 64))
    tps = sequence * batch
    steps = draw(st.integers(20, 5000))
    langs = []
    for i in range(n):
        if i == 0:
            enter, exit_ = 0, 100
        else:
            enter = draw(st.integers(0, 95))
            exit_ = draw(st.integers(enter + 5, 100))
        langs.append([f"l{i}", enter, exit_])
    total = steps * tps
    # budgets: small languages get at most a fraction of their window; the first fills the rest
    budgets = []
    for code, enter, exit_ in langs[1:]:
        window = total * (exit_ - enter) / 100
        budgets.append(int(window * draw(st.floats(0.01, 0.45))))
    budgets.insert(0, total - sum(budgets))
    approx = draw(st.booleans())
    declare_total = draw(st.booleans())
    blocks = []
    for (code, enter, exit_), b in zip(langs, budgets):
        written = f"~{b}" if approx and code == "l0" else str(b)
        blocks.append(f'language {code} {{ data = "d/{code}" tokens = {written} '
                      f"enter = {enter}% exit = {exit_}% }}")
    return SPEC.format(languages="\n  ".join(blocks),
                       total=f"tokens = {total}" if declare_total else "",
                       sequence=sequence, batch=batch), budgets, tps


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_solver_properties(case):
    text, budgets, tps = case
    try:
        plan, _ = plan_spec(text, "prop.genba")
    except SpecError as exc:
        # infeasible draws must be reported as spec errors with a location, never crash
        assert exc.diagnostics and all(d.span is not None for d in exc.diagnostics if d.is_error)
        assume(False)
    s = plan.schedule
    assert sum(p.steps for p in s.phases) == s.total_steps
    assert s.phases[0].start_step == 0 and s.phases[-1].end_step == s.total_steps
    for phase in s.phases:
        assert math.isclose(sum(sh.weight for sh in phase.shares), 1.0, rel_tol=1e-12)
        assert sum(sh.sequences for sh in phase.shares) == phase.steps * s.batch
    for lang in s.languages:
        # compiled tokens match the (fitted) budget within one step's worth
        assert abs(lang.compiled_tokens - lang.target_tokens) <= tps
        # and nothing outside its window
        entry = round_half_up(lang.enter_percent / 100 * s.total_steps)
        exit_ = round_half_up(lang.exit_percent / 100 * s.total_steps)
        for phase in s.phases:
            if phase.end_step <= entry or phase.start_step >= exit_:
                assert phase.share(lang.code).sequences == 0, (lang.code, phase.index)
        assert plan.spec.language(lang.code).tokens == lang.written_tokens
