"""The compiler builds IR and Plan models with `make` (no pydantic validation, for start-up speed).

These tests hold it to what validation would have given: every plan that `make` builds validates,
and the validated copy has the same values of the same Python types and serialises to the same
bytes, so plan.json and the spec hash cannot depend on which way a model was built.
"""

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings

from genbac.compiler.compile import plan_json, plan_spec
from genbac.compiler.plan import Plan
from genbac.compiler.spec_hash import spec_hash
from genbac.spec.diagnostics import SpecError
from genbac.spec.ir import Hardware, Model

from test_schedule import specs


def assert_same_types(made, validated, path="plan"):
    """Field by field: equal values of the same Python type (tuple is not list, 0 is not 0.0)."""
    assert type(made) is type(validated), path
    if isinstance(made, Model):
        for name, field in type(made).__pydantic_fields__.items():
            if not field.exclude:
                assert_same_types(getattr(made, name), getattr(validated, name), f"{path}.{name}")
    elif isinstance(made, (tuple, list)):
        assert len(made) == len(validated), path
        for i, (a, b) in enumerate(zip(made, validated)):
            assert_same_types(a, b, f"{path}[{i}]")
    elif isinstance(made, dict):
        assert list(made) == list(validated), path
        for key in made:
            assert_same_types(made[key], validated[key], f"{path}[{key!r}]")
    else:
        assert made == validated, path


def check_plan(plan: Plan) -> None:
    validated = Plan.model_validate_json(plan_json(plan))
    assert_same_types(plan, validated)
    assert plan_json(validated) == plan_json(plan)
    pydantic_dump = json.dumps(validated.model_dump(mode="json"), indent=2, ensure_ascii=False)
    assert plan_json(plan).decode("utf-8") == pydantic_dump + "\n"
    assert spec_hash(validated.spec) == plan.spec_hash


@pytest.mark.parametrize("name", ["llama-genba-10b", "llama-pro-3b", "solar-depth-upscaling",
                                  "tiny-rehearsal", "smollm2-genba-rehearsal"])
def test_made_plans_validate_to_the_same_values(examples, name):
    plan, _ = plan_spec(examples[name].read_text(), f"{name}.genba")
    check_plan(plan)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_made_plans_validate_to_the_same_values_on_generated_specs(case):
    text, _, _ = case
    try:
        plan, _ = plan_spec(text, "prop.genba")
    except SpecError:
        assume(False)
    check_plan(plan)


def test_make_refuses_unknown_fields():
    with pytest.raises(TypeError, match="Hardware has no field counts"):
        Hardware.make(kind="cpu", counts=2)


def test_made_models_stay_frozen():
    hardware = Hardware.make(kind="cpu", count=1)
    with pytest.raises(ValueError):
        hardware.count = 2
