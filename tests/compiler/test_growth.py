"""Growth layouts and exact parameter counts (reference/genba.md §2–3)."""

import pytest

from genbac.spec.architectures import BUILTIN, parameter_count

from genbac.compiler.compile import plan_spec

BASE = """
experiment "g" {{
  base = {base}
  {growth}
  {vocab}
  tokenizer = "tok"
  language en {{ data = "d" tokens = 1B }}
  train {{ sequence = 2048 batch = 8 optimizer = adamw(lr = 1e-4) checkpoint every 100 steps }}
  hardware = cs-2 x 1
}}
"""


def grown(growth="", base="llama3.1-8b", vocab=""):
    return plan_spec(BASE.format(growth=growth, base=base, vocab=vocab), "g.genba")[0].growth


@pytest.mark.parametrize("name, params", [
    ("llama3.1-8b", 8_030_261_248),       # HF's "8.03B"
    ("smollm2-135m", 134_515_008),        # 134.5M, tied embeddings
    ("llama3.2-1b", 1_235_814_400),       # HF's "1.24B", tied
    ("llama3.2-3b", 3_212_749_824),       # HF's "3.21B", tied
    ("llama3.1-70b", 70_553_706_496),     # HF's "70.6B"
])
def test_builtin_parameter_counts(name, params):
    assert parameter_count(BUILTIN[name]) == params


def test_llama_pro_32_to_40_matches_the_reference_layout():
    g = grown("grow blocks { add = 8 }")
    assert g.layers == 40
    assert g.parameters == 9_775_157_248
    assert g.new_indices == (4, 9, 14, 19, 24, 29, 34, 39)
    new = [e for e in g.layer_map if e.new]
    assert [e.source for e in new] == [3, 7, 11, 15, 19, 23, 27, 31]
    assert all(e.init == "identity" for e in new)
    # base layers keep their order
    assert [e.source for e in g.layer_map if not e.new] == list(range(32))
    assert g.function_preserving


def test_train_new_freezes_the_base_blocks():
    g = grown("grow blocks { add = 8  train = new }")
    assert g.trainable_parameters == 8 * 218_112_000  # 1.745B, 17.9% of 9.775B
    assert all(e.trainable == e.new for e in g.layer_map)


def test_nine_blocks_do_not_split_32_layers_but_explicit_positions_do():
    from genbac.spec.diagnostics import SpecError

    with pytest.raises(SpecError) as exc:
        grown("grow blocks { add = 9 }")
    assert exc.value.diagnostics[0].code == "GB162"
    g = grown("grow blocks { after = [3, 7, 11, 15, 19, 23, 27, 30, 31] }")
    assert g.layers == 41 and g.parameters == 9_993_269_248


def test_top_and_bottom_placement():
    top = grown("grow blocks { add = 2  place = top }")
    assert top.new_indices == (32, 33)
    assert [e.source for e in top.layer_map[-2:]] == [31, 31]
    bottom = grown("grow blocks { add = 2  place = bottom }")
    assert bottom.new_indices == (0, 1)
    assert [e.source for e in bottom.layer_map[:3]] == [0, 0, 0]


def test_depth_upscaling_solar():
    g = grown("grow depth { drop = 8 }")
    assert g.layers == 48
    assert [e.source for e in g.layer_map] == list(range(0, 24)) + list(range(8, 32))
    assert not g.function_preserving
    assert g.trainable_parameters == g.parameters


def test_vocabulary_extension_cost():
    g = grown("grow blocks { add = 8 }", vocab="vocab { add = 27447 }")
    assert g.vocab == 128_256 + 27_447
    assert g.vocab_parameters == 27_447 * 2 * 4096  # embedding and untied head
    assert g.parameters == 9_775_157_248 + 27_447 * 8192
    tied = grown(base="llama3.2-1b", vocab="vocab { add = 1000 }")
    assert tied.vocab_parameters == 1000 * 2048
