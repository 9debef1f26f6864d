"""Checkpoint growth end to end on tiny random Llamas: real transformers models, real safetensors.

Every case compiles a real spec with genbac, grows a real checkpoint and (where it matters) loads the
result in transformers and compares logits with the base.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from genbac.compiler.compile import plan_spec  # noqa: E402
from genbac.runtime import safetensors_stream  # noqa: E402
from genbac.runtime.grow import (  # noqa: E402
    GrowError,
    grow_checkpoint,
    plan_output_tensors,
    run_grow,
    verify_function_preservation,
)

SPEC = """
experiment "t" {{
  architecture tiny {{ hidden = 64  layers = 4  heads = 4  kv_heads = 2  ffn = 128  vocab = 256  context = 256 {arch} }}
  base = tiny from "{weights}"
  {growth}
  {vocab}
  tokenizer = "tok"
  language en {{ data = "d" tokens = 10K }}
  train {{ sequence = 64 batch = 4 optimizer = adamw(lr = 1e-3) checkpoint every 10 steps }}
  hardware = cpu
}}
"""
LAYER_SUFFIXES = (
    "input_layernorm.weight", "post_attention_layernorm.weight",
    "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
    "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
    "mlp.down_proj.weight",
)


def make_plan(growth="grow blocks { add = 2 }", vocab="", arch="", weights="base") -> dict:
    plan, _ = plan_spec(SPEC.format(growth=growth, vocab=vocab, arch=arch, weights=weights),
                        "t.genba")
    return json.loads(plan.model_dump_json())


def save_tiny_llama(directory: Path, *, max_shard_size=None, tied=False, dtype=torch.float32,
                    seed=0) -> Path:
    """A random 4-layer Llama whose config matches the spec's `tiny` (rope 500000, eps 1e-5)."""
    config = transformers.LlamaConfig(
        hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=256, max_position_embeddings=256,
        rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=tied)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).to(dtype)
    # random init leaves norms at 1: perturb them so a wrong copy would show
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.rand_like(p) * 0.5)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(directory, **kwargs)
    return directory


@pytest.fixture(scope="session")
def grow_sharded_base(tmp_path_factory) -> Path:
    path = save_tiny_llama(tmp_path_factory.mktemp("sharded") / "base", max_shard_size="100KB")
    assert (path / "model.safetensors.index.json").is_file()
    return path


@pytest.fixture(scope="session")
def grow_single_base(tmp_path_factory) -> Path:
    path = save_tiny_llama(tmp_path_factory.mktemp("single") / "base")
    assert (path / "model.safetensors").is_file()
    return path


@pytest.fixture
def grow_base_copy(grow_single_base, tmp_path) -> Path:
    """A private copy of the single-file base, for tests that damage it."""
    return Path(shutil.copytree(grow_single_base, tmp_path / "base"))


def base_tensors(base: Path) -> dict:
    if (base / "model.safetensors").is_file():
        return load_file(base / "model.safetensors")
    tensors = {}
    for shard in sorted(base.glob("model-*.safetensors")):
        tensors |= load_file(shard)
    return tensors


def grown_tensors(out: Path) -> dict:
    index = json.loads((out / "model.safetensors.index.json").read_text())
    tensors = {}
    for shard in sorted(set(index["weight_map"].values())):
        tensors |= load_file(out / shard)
    return tensors


def load_grown(out: Path):
    model, info = transformers.LlamaForCausalLM.from_pretrained(
        out, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return model


def check_layers_follow_map(base: dict, grown: dict, plan: dict) -> None:
    for entry in plan["growth"]["layer_map"]:
        for suffix in LAYER_SUFFIXES:
            got = grown[f"model.layers.{entry['index']}.{suffix}"]
            source = base[f"model.layers.{entry['source']}.{suffix}"]
            zeroed = entry["init"] == "identity" and suffix.startswith(("self_attn.o_proj",
                                                                       "mlp.down_proj"))
            expected = torch.zeros_like(source) if zeroed else source
            assert torch.equal(got, expected), (entry, suffix)


def marker(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "earlier-output.txt"
    path.write_text("keep me")
    return path


def assert_intact(mark: Path) -> None:
    assert mark.read_text() == "keep me"
    assert [p.name for p in mark.parent.iterdir()] == [mark.name]
    leftovers = [p.name for p in mark.parent.parent.iterdir() if ".tmp-" in p.name
                 or ".old-" in p.name]
    assert leftovers == []


# ---------------------------------------------------------------------------------------------
# Growth methods


@pytest.mark.parametrize("base_fixture", ["grow_sharded_base", "grow_single_base"])
def test_llama_pro_growth_preserves_function(base_fixture, request, tmp_path):
    base = request.getfixturevalue(base_fixture)
    plan = make_plan()
    summary = grow_checkpoint(plan, base, tmp_path / "out")

    assert summary["layers"] == 6 and summary["new_layers"] == [2, 5]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["num_hidden_layers"] == 6 and config["vocab_size"] == 256
    assert config["rope_parameters"]["rope_theta"] == 500000.0  # the rest of config.json kept
    assert load_grown(tmp_path / "out").config.num_hidden_layers == 6
    check_layers_follow_map(base_tensors(base), grown_tensors(tmp_path / "out"), plan)

    result = verify_function_preservation(base, tmp_path / "out", plan=plan)
    assert result["function_preserving_expected"] is True
    assert result["max_abs_diff"] <= 1e-5 and result["passed"] is True
    assert result["tokens"] == 4 * 32


def test_verification_reads_expectation_from_the_grown_checkpoint(grow_single_base, tmp_path):
    grow_checkpoint(make_plan(), grow_single_base, tmp_path / "out")
    result = verify_function_preservation(grow_single_base, tmp_path / "out", samples=2,
                                          length=8, seed=3)
    assert result["function_preserving_expected"] is True and result["passed"] is True
    assert result["tokens"] == 16


@pytest.mark.parametrize("growth, sources", [
    ("grow blocks { add = 2  place = top }", [0, 1, 2, 3, 3, 3]),
    ("grow blocks { after = [0, 2] }", [0, 0, 1, 2, 2, 3]),
    ("grow blocks { add = 1  place = bottom }", [0, 0, 1, 2, 3]),
])
def test_block_placements(growth, sources, grow_sharded_base, tmp_path):
    plan = make_plan(growth)
    assert [e["source"] for e in plan["growth"]["layer_map"]] == sources
    grow_checkpoint(plan, grow_sharded_base, tmp_path / "out")
    check_layers_follow_map(base_tensors(grow_sharded_base), grown_tensors(tmp_path / "out"), plan)
    assert load_grown(tmp_path / "out").config.num_hidden_layers == len(sources)
    result = verify_function_preservation(grow_sharded_base, tmp_path / "out", plan=plan)
    assert result["passed"] is True, result


def test_depth_up_scaling_duplicates_layers_and_is_not_expected_to_preserve(grow_sharded_base,
                                                                           tmp_path):
    plan = make_plan("grow depth { drop = 1 }")
    grow_checkpoint(plan, grow_sharded_base, tmp_path / "out")
    assert [e["source"] for e in plan["growth"]["layer_map"]] == [0, 1, 2, 1, 2, 3]
    check_layers_follow_map(base_tensors(grow_sharded_base), grown_tensors(tmp_path / "out"), plan)
    assert load_grown(tmp_path / "out").config.num_hidden_layers == 6

    result = verify_function_preservation(grow_sharded_base, tmp_path / "out", plan=plan)
    assert result["function_preserving_expected"] is False
    assert result["passed"] is None
    assert result["max_abs_diff"] > 1e-3  # the seam really changes the function


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_vocabulary_extension_appends_mean_rows(dtype, tmp_path):
    base = save_tiny_llama(tmp_path / "base", max_shard_size="100KB", dtype=dtype)
    (base / "tokenizer.json").write_text("{}")  # describes the old vocabulary: must not be copied
    plan = make_plan(vocab="vocab { add = 16 }")
    summary = grow_checkpoint(plan, base, tmp_path / "out")

    old, new = base_tensors(base), grown_tensors(tmp_path / "out")
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert new[name].shape == (272, 64) and new[name].dtype == dtype
        assert torch.equal(new[name][:256], old[name])
        mean = old[name].double().mean(dim=0).to(dtype)
        assert torch.equal(new[name][256:], mean.expand(16, 64)), name
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["vocab_size"] == 272 and config["num_hidden_layers"] == 6
    assert summary["copied_files"] == ["generation_config.json"]
    assert not (tmp_path / "out" / "tokenizer.json").exists()

    assert load_grown(tmp_path / "out").config.vocab_size == 272
    result = verify_function_preservation(base, tmp_path / "out", plan=plan)
    assert result["passed"] is True, result


def test_vocabulary_extension_with_tied_embeddings(tmp_path):
    base = save_tiny_llama(tmp_path / "base", tied=True)
    plan = make_plan(vocab="vocab { add = 16 }", arch="tie_embeddings = true")
    grow_checkpoint(plan, base, tmp_path / "out")
    new = grown_tensors(tmp_path / "out")
    assert new["model.embed_tokens.weight"].shape == (272, 64)
    # the head is written too, equal to the embedding (extension rows included): Model Zoo's
    # converter and strict load need the key; transformers ties it back
    assert torch.equal(new["lm_head.weight"], new["model.embed_tokens.weight"])
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert "lm_head.weight" in index["weight_map"]
    grown = load_grown(tmp_path / "out")
    assert grown.config.tie_word_embeddings is True
    assert grown.lm_head.weight.data_ptr() == grown.model.embed_tokens.weight.data_ptr()
    assert verify_function_preservation(base, tmp_path / "out", plan=plan)["passed"] is True


def test_tokenizer_and_generation_files_are_copied(grow_base_copy, tmp_path):
    (grow_base_copy / "tokenizer.json").write_text('{"version": "1.0"}')
    (grow_base_copy / "tokenizer_config.json").write_text("{}")
    summary = grow_checkpoint(make_plan(), grow_base_copy, tmp_path / "out")
    assert set(summary["copied_files"]) == {"tokenizer.json", "tokenizer_config.json",
                                            "generation_config.json"}
    assert (tmp_path / "out" / "tokenizer.json").read_text() == '{"version": "1.0"}'


# ---------------------------------------------------------------------------------------------
# Output layout


@pytest.mark.parametrize("shard_bytes", [2 * 1024**3, 40_000, 1])
def test_index_lists_every_tensor_once_in_its_shard(shard_bytes, grow_sharded_base, tmp_path):
    summary = grow_checkpoint(make_plan(), grow_sharded_base, tmp_path / "out",
                              shard_bytes=shard_bytes)
    out = tmp_path / "out"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    weight_map = index["weight_map"]
    shard_files = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert sorted(set(weight_map.values())) == shard_files == sorted(summary["shards"])
    assert not (out / "model.safetensors").exists()

    seen: dict[str, str] = {}
    total = 0
    for shard in shard_files:
        with safe_open(out / shard, framework="pt") as f:
            assert f.metadata() == {"format": "pt"}
            for name in f.keys():
                assert name not in seen, f"{name} in {seen.get(name)} and {shard}"
                seen[name] = shard
                tensor = f.get_tensor(name)
                total += tensor.numel() * tensor.element_size()
    assert seen == weight_map
    assert len(weight_map) == summary["tensors"] == 3 + 6 * 9
    assert index["metadata"]["total_size"] == total
    if shard_bytes == 2 * 1024**3:
        assert shard_files == ["model-00001-of-00001.safetensors"]
    if shard_bytes == 1:
        assert len(shard_files) == summary["tensors"]  # one tensor per shard, none split


def write_shards_directly(plan: dict, base: Path, out: Path, *, kernel_copy: bool) -> list[str]:
    """The same shards grow_checkpoint writes, through a chosen copy path."""
    growth = plan["growth"]
    tensors = plan_output_tensors(safetensors_stream.index_checkpoint(base), growth, tied=False)
    shards = safetensors_stream.plan_shards(tensors, 2 * 1024**3)
    out.mkdir()
    with safetensors_stream.ByteStreamer(kernel_copy=kernel_copy) as streamer:
        for shard in shards:
            streamer.write_shard(shard, out / shard.filename)
    return [s.filename for s in shards]


def test_buffered_copy_writes_the_same_bytes_as_kernel_copy(grow_sharded_base, tmp_path):
    plan = make_plan(vocab="vocab { add = 16 }")
    grow_checkpoint(plan, grow_sharded_base, tmp_path / "grown")
    # a filesystem without copy_file_range: the one-buffer path must produce identical files
    names = write_shards_directly(plan, grow_sharded_base, tmp_path / "buffered",
                                  kernel_copy=False)
    assert names == ["model-00001-of-00001.safetensors"]
    assert (tmp_path / "buffered" / names[0]).read_bytes() == \
        (tmp_path / "grown" / names[0]).read_bytes()


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_streaming_never_holds_a_tensor(kernel_copy, tmp_path):
    """A 64 MiB tensor is grown with far less than 64 MiB of Python allocations."""
    import tracemalloc

    base = save_tiny_llama(tmp_path / "base")
    tensors = load_file(base / "model.safetensors")
    tensors["model.layers.3.mlp.extra.weight"] = torch.ones(16 * 1024**2)  # 64 MiB, carried
    save_file(tensors, base / "model.safetensors", metadata={"format": "pt"})
    del tensors
    tracemalloc.start()
    names = write_shards_directly(make_plan(), base, tmp_path / "out", kernel_copy=kernel_copy)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 * 1024**2, peak  # the 16 MiB buffer at most, never the 64 MiB tensor
    with safe_open(tmp_path / "out" / names[0], "pt") as f:
        for layer in (4, 5):  # layer 3 and its identity copy (the extra tensor is not zeroed)
            assert torch.equal(f.get_tensor(f"model.layers.{layer}.mlp.extra.weight"),
                               torch.ones(16 * 1024**2))


def test_run_grow_writes_a_report(grow_single_base, tmp_path):
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(make_plan()))
    lines: list[str] = []
    report = run_grow(plan_path, grow_single_base, tmp_path / "out", log=lines.append)

    assert json.loads((tmp_path / "out" / "growth_report.json").read_text()) == report
    assert report["verification"]["passed"] is True
    assert report["growth"]["layer_map"][2] == "2<-1 identity"
    assert report["growth"]["bytes_written"] == sum(
        (tmp_path / "out" / s).stat().st_size for s in report["growth"]["shards"])
    assert any("function preservation passed" in line for line in lines)
    assert len(lines) <= 5


def test_run_grow_without_verification(grow_single_base, tmp_path):
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(make_plan("grow depth { drop = 1 }")))
    report = run_grow(plan_path, grow_single_base, tmp_path / "out", verify=False,
                      log=lambda _: None)
    assert report["verification"] is None and report["growth"]["layers"] == 6


def test_existing_output_is_replaced_on_success(grow_single_base, tmp_path):
    marker(tmp_path / "out")
    grow_checkpoint(make_plan(), grow_single_base, tmp_path / "out")
    assert not (tmp_path / "out" / "earlier-output.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ---------------------------------------------------------------------------------------------
# Errors: a GrowError that says what is wrong, and an earlier output left as it was


def expect_grow_error(base: Path, out: Path, *fragments: str, plan: dict | None = None) -> None:
    mark = marker(out)
    with pytest.raises(GrowError) as caught:
        grow_checkpoint(plan or make_plan(), base, out)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    assert_intact(mark)


def test_missing_base_directory(tmp_path):
    expect_grow_error(tmp_path / "nowhere", tmp_path / "out", "nowhere", "does not exist")


def test_base_without_config(grow_base_copy, tmp_path):
    (grow_base_copy / "config.json").unlink()
    expect_grow_error(grow_base_copy, tmp_path / "out", "no config.json")


def test_base_without_safetensors(grow_base_copy, tmp_path):
    (grow_base_copy / "model.safetensors").unlink()
    expect_grow_error(grow_base_copy, tmp_path / "out", "no safetensors weights",
                      "model.safetensors.index.json")


@pytest.mark.parametrize("content, fragment", [
    (b"\x01\x02\x03", "truncated"),
    (struct.pack("<Q", 10**6) + b"{}", "unreadable safetensors header"),
    (struct.pack("<Q", 8) + b"not json", "not valid JSON"),
])
def test_unreadable_header(content, fragment, grow_base_copy, tmp_path):
    (grow_base_copy / "model.safetensors").write_bytes(content)
    expect_grow_error(grow_base_copy, tmp_path / "out", "model.safetensors", fragment)


def test_truncated_tensor_data(grow_base_copy, tmp_path):
    path = grow_base_copy / "model.safetensors"
    os.truncate(path, path.stat().st_size - 100)
    expect_grow_error(grow_base_copy, tmp_path / "out", "model.safetensors is truncated",
                      "ends at byte")


def test_shard_missing_from_sharded_base(grow_sharded_base, tmp_path):
    base = Path(shutil.copytree(grow_sharded_base, tmp_path / "base"))
    (base / "model-00003-of-00008.safetensors").unlink()
    expect_grow_error(base, tmp_path / "out", "model-00003-of-00008.safetensors",
                      "does not exist")


@pytest.mark.parametrize("key, value, fragments", [
    ("num_hidden_layers", 5, ["num_hidden_layers = 5", "expects 4", "`layers`", "`tiny`"]),
    ("hidden_size", 128, ["hidden_size = 128", "expects 64"]),
    ("vocab_size", 300, ["vocab_size = 300", "expects 256"]),
])
def test_config_that_does_not_match_the_plan(key, value, fragments, grow_base_copy, tmp_path):
    config = json.loads((grow_base_copy / "config.json").read_text())
    config[key] = value
    (grow_base_copy / "config.json").write_text(json.dumps(config))
    expect_grow_error(grow_base_copy, tmp_path / "out", *fragments)


def test_missing_tensor_is_named(grow_base_copy, tmp_path):
    tensors = load_file(grow_base_copy / "model.safetensors")
    del tensors["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, grow_base_copy / "model.safetensors", metadata={"format": "pt"})
    expect_grow_error(grow_base_copy, tmp_path / "out", "model.layers.1.mlp.down_proj.weight")


def test_missing_lm_head_is_named(grow_base_copy, tmp_path):
    tensors = load_file(grow_base_copy / "model.safetensors")
    del tensors["lm_head.weight"]
    save_file(tensors, grow_base_copy / "model.safetensors", metadata={"format": "pt"})
    expect_grow_error(grow_base_copy, tmp_path / "out", "lm_head.weight")


@contextlib.contextmanager
def read_only(directory: Path):
    """Make `directory` unwritable, even for root (chattr +i), or skip the test."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(directory)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a filesystem without chattr +i")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_output_in_a_read_only_directory(grow_single_base, tmp_path):
    parent = tmp_path / "locked"
    mark = marker(parent / "out")
    with read_only(parent):
        with pytest.raises(GrowError, match="not writable"):
            grow_checkpoint(make_plan(), grow_single_base, parent / "out")
    assert mark.read_text() == "keep me"
    assert sorted(p.name for p in parent.iterdir()) == ["out"]


def test_output_under_a_file(grow_single_base, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(GrowError, match="not writable"):
        grow_checkpoint(make_plan(), grow_single_base, tmp_path / "file" / "out")


def test_output_may_not_replace_the_base(grow_base_copy):
    with pytest.raises(GrowError, match="would replace the base"):
        grow_checkpoint(make_plan(), grow_base_copy, grow_base_copy)
    with pytest.raises(GrowError, match="would replace the base"):
        grow_checkpoint(make_plan(), grow_base_copy, grow_base_copy.parent)
    assert (grow_base_copy / "model.safetensors").is_file()


GROW_IN_CHILD = """
import json, resource, sys
from genbac.runtime.grow import GrowError, grow_checkpoint
limit = int(sys.argv[4])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # the OS refuses larger files (EFBIG)
try:
    grow_checkpoint(json.loads(open(sys.argv[1]).read()), sys.argv[2], sys.argv[3])
except GrowError as e:
    print(e)
    sys.exit(3)
"""


def test_a_write_failure_midway_leaves_no_partial_output(grow_single_base, tmp_path):
    """A real write error halfway through a shard (a file-size limit): nothing is published."""
    import sys

    mark = marker(tmp_path / "out")
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(make_plan()))
    child = subprocess.run(
        [sys.executable, "-c", GROW_IN_CHILD, str(plan_path), str(grow_single_base),
         str(tmp_path / "out"), str(200_000)], capture_output=True, text=True, timeout=120)
    assert child.returncode == 3, child.stderr
    assert "writing" in child.stdout and "nothing was replaced" in child.stdout
    assert mark.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "plan.json"]


def test_hub_base_is_refused_with_advice(tmp_path):
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(make_plan(weights="hf:org/tiny")))
    with pytest.raises(GrowError) as caught:
        run_grow(plan_path, "hf:org/tiny", tmp_path / "out", log=lambda _: None)
    message = str(caught.value)
    assert "hf:org/tiny" in message and "--base" in message and "local directory" in message
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_a_plan(tmp_path, grow_single_base):
    plan_path = tmp_path / "plan.json"
    plan_path.write_text('{"hello": 1}')
    with pytest.raises(GrowError, match="not a genbac plan"):
        run_grow(plan_path, grow_single_base, tmp_path / "out", log=lambda _: None)


@pytest.mark.parametrize("check, said", [
    ({"max_abs_diff": 2e-7, "tokens": 128, "function_preserving_expected": True, "passed": True},
     "the grown model equals its function (max |logit difference| 2e-07 over 128 tokens"),
    ({"max_abs_diff": 0.5, "tokens": 128, "function_preserving_expected": True, "passed": False},
     "the grown model does NOT equal its function (max |logit difference| 0.5 over 128"),
    ({"max_abs_diff": 3.25, "tokens": 64, "function_preserving_expected": False, "passed": None},
     "this growth does not preserve the function (max |logit difference| 3.25 over 64 tokens"),
])
def test_a_baseline_of_the_grown_model_only_says_how_growth_compared(check, said):
    """Model Zoo's baseline has the grown model's losses only: the note says what the grow step
    found, and says that the base was not evaluated, rather than nothing."""
    from genbac.runtime.baseline import baseline_notes

    path = Path(__file__).resolve().parents[2] / "examples" / "tiny-rehearsal.genba"
    plan, _ = plan_spec(path.read_text(encoding="utf-8"), str(path))
    metrics = {"val_loss/en": 6.5, "val_loss/de": 7.5}
    notes = baseline_notes(plan, metrics, check)
    assert notes[0] == "baseline (step 0): validation loss en 6.5000, de 7.5000"
    assert notes[-1].startswith("baseline: the base model before growth is not evaluated here; ")
    assert said in notes[-1]
    # where the base was evaluated too (the local trainer), its losses are the comparison
    both = baseline_notes(plan, {**metrics, "base_val_loss/en": 6.5, "base_val_loss/de": 7.5},
                          check)
    assert both[-1].startswith("baseline: the grown model's validation loss equals the base")
