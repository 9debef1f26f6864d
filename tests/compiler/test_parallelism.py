"""The parallelism planner (compiler/parallelism.py): which of DDP, HSDP and FSDP the GPUs use,
chosen by per-GPU memory, and the errors when nothing fits or a batch does not split."""

from __future__ import annotations

from pathlib import Path

import pytest

from genbac.compiler.compile import plan_spec
from genbac.compiler.explain import explain
from genbac.compiler.parallelism import GIB, memory
from genbac.spec.diagnostics import SpecError

ROOT = Path(__file__).resolve().parents[2]
GENBA = (ROOT / "examples" / "llama-genba-10b.genba").read_text()
# the example's micro_batch (20) is its CS-2's; on GPUs the planner chooses one
GPU_GENBA = GENBA.replace("    micro_batch      = 20\n", "")


def on(hardware: str, text: str = GPU_GENBA) -> str:
    assert "hardware = cs-2 x 1" in text
    return text.replace("hardware = cs-2 x 1", f"hardware = {hardware}")


def errors(text: str) -> list:
    with pytest.raises(SpecError) as info:
        plan_spec(text, "exp.genba")
    return [d for d in info.value.diagnostics if d.is_error]


def test_genba_on_four_nodes_of_eight_h100_is_hsdp_under_80_gb():
    plan, _ = plan_spec(on("h100 x 8 x 4"), "exp.genba")
    p = plan.parallelism
    assert (p.strategy, p.shard, p.replicas, p.devices) == ("hsdp", 8, 4, 32)
    assert p.per_device_batch == 15 and p.micro_batch * p.accumulation == 15
    assert p.memory.total <= p.usable_bytes < 80e9
    assert p.memory.state == -(-plan.growth.state_bytes // 8)
    assert plan.spec.hardware.describe() == "h100 x 8 x 4"
    assert plan.estimate.count == 32  # the estimate counts every GPU
    text = explain(plan)
    assert "HSDP: sharded over each node's 8 GPUs, replicated across 4 nodes" in text
    assert "does not fit" in text  # DDP's row: 156 GB of state per GPU


def test_genba_on_one_h100_says_what_it_needs_and_what_would_fit():
    (d,) = errors(on("h100 x 1"))
    assert d.code == "GB171" and "do not fit on h100 x 1" in d.message
    assert "training state 156 GB" in d.message and "72 GB" in d.message
    assert any("FSDP over 3 or more h100 GPUs would fit" in h for h in d.help)
    plan, _ = plan_spec(on("h100 x 3"), "exp.genba")  # and it does
    assert plan.parallelism.strategy == "fsdp"


def test_a_batch_that_does_not_split_over_64_gpus_says_which_would():
    (d,) = errors(on("h100 x 64"))
    assert d.code == "GB172" and d.message == "batch 480 does not split over 64 devices"
    assert d.help == ("a batch that 64 devices share equally: 448 or 512; or 60 devices",)
    (d,) = errors(on("h100 x 8 x 8"))
    assert d.code == "GB172" and "64 devices" in d.message


def test_the_cs2_micro_batch_on_gpus_is_an_error_that_lists_the_divisors():
    (d,) = errors(on("h100 x 8 x 4", GENBA))
    assert d.code == "GB172" and "per-device batch 15 is not a multiple of micro_batch 20" in (
        d.message)
    assert "one of 1, 3, 5, 15" in d.help[0]


def test_a_forced_parallelism_is_kept_or_refused():
    forced = on("h100 x 8 x 4").replace("    precision = bf16\n",
                                         "    precision = bf16\n    parallelism = fsdp\n")
    plan, _ = plan_spec(forced, "exp.genba")
    assert (plan.parallelism.strategy, plan.parallelism.chosen_by) == ("fsdp", "spec")
    (d,) = errors(forced.replace("parallelism = fsdp", "parallelism = ddp"))
    assert d.code == "GB171" and "a whole copy per GPU (DDP)" in d.message
    assert [label for _, label in d.secondary][-1] == "forced here"
    (d,) = errors(on("h100 x 8").replace("    precision = bf16\n",
                                         "    precision = bf16\n    parallelism = hsdp\n"))
    assert d.code == "GB173" and "one node" in d.message
    (d,) = errors(GENBA.replace("    precision = bf16\n",
                                "    precision = bf16\n    parallelism = fsdp\n"))
    assert d.code == "GB173" and "cs-2 x 1 streams its weights" in d.message


def test_a_micro_batch_too_large_is_said_as_such_not_as_too_few_gpus():
    text = on("h100 x 8 x 4").replace("    precision = bf16\n",
                                       "    precision = bf16\n    micro_batch = 15\n")
    (d,) = errors(text)
    assert d.code == "GB171" and d.message.startswith("training 9.78B parameters at this "
                                                      "micro-batch does not fit")
    assert d.help[0].startswith("a smaller `micro_batch` (1 needs")
    assert not any("FSDP over" in h for h in d.help)


def test_fp32_activations_cost_twice_as_much():
    plan, _ = plan_spec(on("h100 x 8 x 4"), "exp.genba")
    fp32 = plan.spec.model_copy(update={"train": plan.spec.train.model_copy(
        update={"precision": "fp32"})})
    assert memory(fp32, plan.growth, 8, 1, False).activations == 2 * memory(
        plan.spec, plan.growth, 8, 1, False).activations


def test_fsdp_forced_on_one_gpu_is_the_chosen_row():
    text = on("h100 x 1").replace("llama3.1-8b from", "llama3.2-1b from").replace(
        "Llama-3.1-8B", "Llama-3.2-1B").replace("    precision = bf16\n",
                                                "    precision = bf16\n    parallelism = fsdp\n")
    plan, _ = plan_spec(text, "exp.genba")
    assert (plan.parallelism.strategy, plan.parallelism.shard) == ("fsdp", 1)
    rows = [line for line in explain(plan).splitlines() if line.strip().startswith("fsdp")]
    assert len(rows) == 1 and rows[0].rstrip().endswith("chosen")


def test_a_model_that_fits_one_gpu_stays_ddp():
    text = on("h100 x 2").replace("llama3.1-8b from", "llama3.2-1b from").replace(
        "Llama-3.1-8B", "Llama-3.2-1B")
    plan, _ = plan_spec(text, "exp.genba")
    assert plan.parallelism.strategy == "ddp" and plan.parallelism.shard == 1


def test_nodes_only_for_gpus_and_cpu_processes():
    (d,) = errors(GENBA.replace("hardware = cs-2 x 1", "hardware = cs-2 x 2 x 2"))
    assert d.code == "GB122" and d.help == ("write `cs-2 x 4`",)
    plan, _ = plan_spec(GENBA.replace("hardware = cs-2 x 1", "hardware = cpu x 2 x 2"),
                        "exp.genba")
    assert (plan.spec.hardware.devices, plan.spec.hardware.describe()) == (4, "cpu x 2 x 2")


def test_cpu_processes_take_the_spec_s_parallelism_unplanned():
    """`cpu x N` rehearses the GPU path on gloo: the spec's strategy as is, no memory plan."""
    for parallelism in ("ddp", "fsdp"):
        plan, _ = plan_spec(GENBA.replace("hardware = cs-2 x 1", "hardware = cpu x 2").replace(
            "    precision = bf16\n", f"    precision = bf16\n    parallelism = {parallelism}\n"),
            "exp.genba")
        assert plan.parallelism is None and plan.spec.train.parallelism == parallelism
    one_node = GENBA.replace("hardware = cs-2 x 1", "hardware = cpu x 2").replace(
        "    precision = bf16\n", "    precision = bf16\n    parallelism = hsdp\n")
    (d,) = errors(one_node)
    assert d.code == "GB173" and "cpu x 2 is one node" in d.message and d.help == ("use `fsdp`",)
    plan, _ = plan_spec(one_node.replace("cpu x 2", "cpu x 1 x 2"), "exp.genba")
    assert plan.spec.train.parallelism == "hsdp"


def test_cerebras_and_cpu_plans_have_no_parallelism_and_keep_their_hash():
    plan, _ = plan_spec(GENBA, "exp.genba")
    assert plan.parallelism is None
    assert "parallelism" not in plan.to_json() and "nodes" not in plan.spec.hardware.to_json()
    assert "parallelism" not in plan.spec.train.to_json()


def test_activation_memory_follows_the_formula():
    plan, _ = plan_spec(on("h100 x 8 x 4"), "exp.genba")
    g, spec = plan.growth, plan.spec
    s, h = spec.train.sequence, spec.base.architecture.hidden
    full = memory(spec, g, 8, 2, False)
    saved = memory(spec, g, 8, 2, True)
    assert full.activations == 34 * s * 2 * h * g.layers
    assert saved.activations == 2 * s * 2 * h * g.layers + 34 * s * 2 * h
    assert full.logits == 6 * s * 2 * g.vocab and full.gathered == 4 * g.layer_parameters
    assert memory(spec, g, 1, 1, False).gathered == 0
    assert full.total / GIB > saved.total / GIB
