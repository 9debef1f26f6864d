"""The naming rule of runtime/naming.py: labels from the spec fields that differ."""

from genbac.runtime.naming import compare_labels, differing, label, run_name, spec_fields

A = {"name": "x", "train.optimizer.lr": "0.003", "languages.bar.enter.percent": "75.0",
     "train.seed": "1234"}


def test_labels_shorten_the_field_and_write_the_value_as_written():
    assert label("train.optimizer.lr", "0.0010") == "lr=0.001"
    assert label("languages.bar.enter.percent", "50.0") == "bar.enter=50%"
    assert label("train.seed", "1234") == "seed=1234"
    assert label("base.architecture.layers", "40") == "layers=40"
    assert label("hardware.kind", "h100") == "hardware.kind=h100"
    assert label("languages.bar.exit.percent", None) == "bar.exit=none"
    assert label("languages.en.sources", '["' + "a" * 80 + '"]').endswith("…")
    assert label("train.optimizer.lr", "nan") == "lr=nan"


def test_a_run_is_named_by_the_fields_that_differ_from_the_previous_one():
    b = {**A, "train.optimizer.lr": "0.001", "languages.bar.enter.percent": "50.0"}
    assert run_name("x", "h1", A, None) == "x"
    assert run_name("x", "h2", b, ("x", "h1", A)) == "lr=0.001, bar.enter=50%"
    assert run_name("x", "h1", A, ("earlier name", "h1", A)) == "earlier name"
    # the previous run's params beside its spec's do not count
    assert run_name("x", "h2", A, ("x", "h1", {**A, "estimate.seconds": "3",
                                               "baseline.val_loss/en": "6.9"})) == "x"
    many = {k: "0" for k in ("train.a", "train.b", "train.c", "train.d", "train.e")}
    assert run_name("x", "h2", many, ("x", "h1", {})) == "a=0, b=0, c=0, +2 more"
    assert run_name("x", "h2", {}, ("x", "h1", {"train.a": "1"})) == "a=none"


def test_differing_fields_keep_the_spec_order_then_the_other_run_s():
    b = {"train.seed": "1", "extra": "2", "name": "x"}
    assert differing(A, b) == ["train.optimizer.lr", "languages.bar.enter.percent", "train.seed",
                               "extra"]
    assert spec_fields({"a": "1", "estimate.x": "2", "baseline.y": "3"}) == {"a": "1"}
    assert compare_labels([A, A], []) == ["", ""]
    assert compare_labels([A, {**A, "train.seed": "7"}], ["train.seed"]) == ["seed=1234", "seed=7"]
