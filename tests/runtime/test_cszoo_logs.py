"""The Model Zoo -> MLflow bridge (runtime/cszoo_logs.py): parsing the real console lines quoted in
shared/reference/modelzoo-2.10.md, mapping them to metrics, diagnosing real error texts, and
reading TensorBoard event files written by the `tensorboard` package into a real MLflow store."""

import math
from pathlib import Path

import numpy as np
import pytest

from genbac.runtime import cszoo_logs as logs
from genbac.runtime.cszoo_logs import (CheckpointSaved, EvalAverage, EvalBatch, EvalMetric,
                                       EvalStart, Layout, PhaseDone, PhaseSpan, Point, Train,
                                       TrainStart, parse_line)

# Real lines of a Model Zoo 2.10 CPU run, as quoted in the reference (§6.5, §4.3).
REFERENCE_RUN = """\
2026-11-26 14:37:40,699 INFO:   Trainer Fit Summary
2026-11-26 14:37:40,700 INFO:   Starting train loop 1 of 2, from global step 1 to 3 (3 steps)
2026-11-26 14:37:41,864 INFO:   | Train Device=cpu, Step=1, Loss=4.86871, Rate=1487.73 samples/sec, GlobalRate=1479.44 samples/sec, LoopTimeRemaining=0:00:00, TimeRemaining>0:00:01
2026-11-26 14:37:43,826 INFO:   Saving checkpoint at step 3
2026-11-26 14:37:44,244 INFO:   Saved checkpoint model_dir_tiny/checkpoint_3.mdl
2026-11-26 14:37:44,247 INFO:   Training completed successfully!
2026-11-26 14:37:44,304 INFO:   Starting val_dataloader_2 loop 1 of 2, with 2 steps
2026-11-26 14:37:44,847 INFO:   | Eval Device=cpu, GlobalStep=3, Batch=1, Loss=4.82706, Rate=6617.06 samples/sec, GlobalRate=6479.92 samples/sec, LoopTimeRemaining=0:00:00, TimeRemaining>0:00:05
2026-11-26 14:37:45,408 INFO:   Avg Eval Loss: 4.830592632293701
2026-11-26 14:37:45,408 INFO:     - eval/lm_perplexity = 125.28518676757812
2026-11-26 14:37:45,409 INFO:   Evaluation completed successfully!
2026-11-26 14:37:51,104 INFO:   Processed 24 training sample(s) in 10.40658154 seconds.
""".splitlines(keepends=True)

LAYOUT = Layout(phases=(PhaseSpan(1, 0, 4), PhaseSpan(2, 4, 6)), eval_languages=("en", "de"),
                batch=8, sequence=128)


def test_parse_reference_lines():
    records = [parse_line(line) for line in REFERENCE_RUN]
    assert records == [
        None,
        TrainStart(1, 1, 3),
        Train(1, 4.86871, 1487.73, 1479.44),
        None,
        CheckpointSaved("model_dir_tiny/checkpoint_3.mdl", 3),
        None,
        EvalStart("val_dataloader_2"),
        EvalBatch(3, 1, 4.82706),
        EvalAverage(4.830592632293701),
        EvalMetric("lm_perplexity", 125.28518676757812),
        None,
        PhaseDone(24, 10.40658154),
    ]


def test_parse_optional_fields_short_logging_and_nan():
    # every field after Step is optional; USE_SHORT_INFO_LOGGING drops the time/level prefix
    assert parse_line("| Train Device=CSX, Step=500") == Train(500, None, None, None)
    nan = parse_line("| Train Device=cpu, Step=7, Loss=nan, Rate=0.512 samples/sec")
    assert (nan.step, nan.rate, math.isnan(nan.loss)) == (7, 0.512, True)
    assert parse_line("Avg Eval Loss: 4.5") == EvalAverage(4.5)
    assert parse_line("Saved checkpoint md/checkpoint_20_20261126_155546.mdl") == \
        CheckpointSaved("md/checkpoint_20_20261126_155546.mdl", 20)
    assert parse_line("Processing: 100%|██████████| 1/1") is None


def test_lines_become_metrics_at_the_global_step():
    follower = logs.LineFollower(LAYOUT)
    points = [p for line in REFERENCE_RUN for p in follower.feed(parse_line(line))]
    assert points == [
        Point(1, {"loss": 4.86871, "samples_per_sec": 1487.73, "tokens_per_sec": 1487.73 * 128,
                  "step_time_s": 8 / 1487.73}),
        Point(3, {"val_loss/en": 4.830592632293701}),
        Point(3, {"val_perplexity/en": 125.28518676757812}),
    ]


def test_val_dataloaders_map_to_languages_per_phase():
    """Model Zoo numbers val dataloaders per process (2, 3 in phase 1; 18, 19 in phase 2: seen in a
    real run); the k-th of a phase is the k-th language with eval data."""
    follower = logs.LineFollower(LAYOUT)
    lines = ["Starting train loop 1 of 1, from global step 1 to 4 (4 steps)",
             "Starting val_dataloader_2 loop 1 of 1, with 2 steps",
             "| Eval Device=cpu, GlobalStep=4, Batch=1, Loss=5.0",
             "Avg Eval Loss: 5.0",
             "Starting val_dataloader_3 loop 1 of 1, with 2 steps",
             "| Eval Device=cpu, GlobalStep=4, Batch=1, Loss=6.0",
             "Avg Eval Loss: 6.0",
             "Starting train loop 1 of 1, from global step 5 to 6 (2 steps)",
             "Starting val_dataloader_18 loop 1 of 1, with 2 steps",
             "| Eval Device=cpu, GlobalStep=6, Batch=1, Loss=4.0",
             "Avg Eval Loss: 4.0",
             "    - eval/accuracy = 0.25",
             "Starting val_dataloader_19 loop 1 of 1, with 2 steps",
             "| Eval Device=cpu, GlobalStep=6, Batch=1, Loss=4.5",
             "Avg Eval Loss: 4.5"]
    points = [p for line in lines for p in follower.feed(parse_line(line))]
    assert points == [Point(4, {"val_loss/en": 5.0}), Point(4, {"val_loss/de": 6.0}),
                      Point(6, {"val_loss/en": 4.0}), Point(6, {"val_accuracy/en": 0.25}),
                      Point(6, {"val_loss/de": 4.5})]


@pytest.mark.parametrize("output, meaning, quoted", [
    # §7.1: pydantic's report of a key 2.10 rejects (the converter's norm_first, §5)
    ("pydantic_core._pydantic_core.ValidationError: 1 validation error for function-before"
     "[unpack_trainer(), tuple[TrainerConfig]]\n0.init.model.config.norm_first\n"
     "  Extra inputs are not permitted [type=extra_forbidden, input_value=True, input_type=bool]",
     "rejects the key 0.init.model.config.norm_first", "Extra inputs are not permitted"),
    # §4.2: a checkpoint with another mixture's dataloader state
    ("RuntimeError: state_dict is incompatible with the dataset settings ... key=mixture_params, "
     "current_value=[...], state_dict_value=[...]", "--restart", "state_dict is incompatible"),
    # §7.1: a data_dir that does not exist at validation time
    ("0.fit.train_dataloader.GptHDF5MapDataProcessor.config.data_dir.function-before"
     "[validate_path(), str]\n  Value error, Path ./work/data/en does not exist. "
     "[type=value_error, ...]", "./work/data/en is missing", "Path ./work/data/en does not exist."),
    # §5: the public converter stops at cs-2.9
    ("Cannot convert llama from hf to cs-2.10 ... Conversion failed.", "cannot write cs-2.10",
     "Cannot convert llama from hf to cs-2.10"),
    # §1.2: no device
    ("No device specified. Please specify a device using the 'device' key inside the 'init' key "
     "of the trainer params or through the cszoo CLI with the target_device flag (e.g. "
     "--target_device=CSX).", "recompile", "No device specified."),
    # §3.1: a wrong data processor name
    ("ValueError: Expected data_processor to be one of the following values:\n"
     "- DummyDataProcessor\n- ... Got: GptHDF5MapDataProcesor", "cszoo --version",
     "Expected data_processor"),
    # found running Model Zoo 2.10 by hand: a tied model's checkpoint without lm_head.weight
    ("RuntimeError: Error(s) in loading state_dict for GPT2LMHeadModel:\n"
     '\tMissing key(s) in state_dict: "lm_head.weight".\n\n'
     "RuntimeError: Encountered error when calling ModelCallback.on_load_checkpoint",
     'lacks "lm_head.weight"', 'Missing key(s) in state_dict: "lm_head.weight"'),
    # ... and a tokenizer directory written by transformers 5, read by its transformers 4.57.1
    ("ValueError: Tokenizer class TokenizersBackend does not exist or is not currently imported.",
     "cannot load the tokenizer class TokenizersBackend", "Tokenizer class TokenizersBackend"),
])
def test_known_errors_are_explained_and_quoted(output, meaning, quoted):
    lines = ["2026-11-26 14:37:40,699 INFO:   Trainer Fit Summary\n", *output.splitlines(True)]
    message = logs.diagnose(lines)
    assert meaning in message
    assert "Model Zoo said: " in message and quoted in message


def test_unknown_failure_quotes_the_last_exception():
    lines = ["Traceback (most recent call last):\n", '  File "x.py", line 1\n',
             "KeyError: \"Model configuration must have a 'name' key.\"\n", "\n"]
    assert logs.diagnose(lines) == \
        "Model Zoo failed with KeyError: \"Model configuration must have a 'name' key.\""
    assert logs.diagnose(["all fine\n"]) is None


# --------------------------------------------------------------------------------------------------
# TensorBoard events -> MLflow
# --------------------------------------------------------------------------------------------------

def f32(x: float) -> float:
    return float(np.float32(x))


def write_phase_events(model_dir: Path, steps, first_eval, new_style: bool) -> dict:
    """An event file as Model Zoo's TensorBoardLogger writes one per phase (Model Zoo's tag names,
    §6.3), by torch's SummaryWriter on the tensorboard package's writer. Returns what was written."""
    from torch.utils.tensorboard import SummaryWriter

    written = {}
    writer = SummaryWriter(log_dir=str(model_dir / "events"))
    for step in steps:
        values = {"loss": 7.0 - 0.1 * step, "lr/0": 1e-3 * step, "lr/1": 1e-3 * step,
                  "model_wise_grad_norm": 0.5 + step / 100, "local_samples_per_sec": 10.0 + step,
                  "time_remaining": 99.0}
        if step == first_eval or step == steps[-1]:
            values |= {"validate_0/loss": 6.0 - 0.1 * step, "validate_1/loss": 6.5 - 0.1 * step,
                       "validate_0/eval/lm_perplexity": 400.0 - step,
                       "validate_0/val_loss": 1.0}
        for tag, value in values.items():
            writer.add_scalar(tag, value, step, new_style=new_style)
        written[step] = values
    writer.close()
    return written


@pytest.fixture
def store(tmp_path):
    from genbac.compiler.artifact import Artifact
    from genbac.runtime.context import Context
    from genbac.runtime.tracking import Tracker

    state = {}
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "bridge", state)
    parent = tracker.parent(lambda previous: "bridge", {})
    runs = {1: tracker.child("phase-1"), 2: tracker.child("phase-2")}
    compiled = tmp_path / "compiled"
    ctx = Context(Artifact(compiled, None, None, None), state, tracker, lambda line: None)
    return ctx, parent, runs


def history(ctx, run_id, key):
    return [(m.step, m.value) for m in
            sorted(ctx.tracker.client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_event_files_land_in_mlflow_per_phase_without_duplicates(store):
    import time

    from genbac.runtime.cszoo_backend import Fit, MODEL_DIR

    ctx, parent, runs = store
    model_dir = ctx.compiled / MODEL_DIR
    one = write_phase_events(model_dir, [1, 2, 3, 4], first_eval=2, new_style=True)
    time.sleep(1.1)  # Model Zoo's file names carry the creation second; the order comes from it
    two = write_phase_events(model_dir, [5, 6], first_eval=6, new_style=False)  # legacy form

    fit = Fit(LAYOUT)
    fit.ingest_events(ctx, runs)

    assert history(ctx, runs[1], "loss") == [(s, f32(7.0 - 0.1 * s)) for s in (1, 2, 3, 4)]
    assert history(ctx, runs[2], "loss") == [(s, f32(7.0 - 0.1 * s)) for s in (5, 6)]
    assert history(ctx, parent, "loss") == [(s, f32(7.0 - 0.1 * s)) for s in range(1, 7)]
    assert history(ctx, runs[1], "lr") == [(s, f32(1e-3 * s)) for s in (1, 2, 3, 4)]
    assert history(ctx, runs[1], "grad_norm")[-1] == (4, f32(0.54))
    # samples/s -> tokens/s (sequence 128) and achieved seconds per step (batch 8)
    assert history(ctx, runs[2], "tokens_per_sec") == [(5, f32(15.0) * 128), (6, f32(16.0) * 128)]
    assert history(ctx, runs[2], "step_time_s") == [(5, 8 / f32(15.0)), (6, 8 / f32(16.0))]
    # validate_<k> is the k-th language with eval data
    assert history(ctx, runs[1], "val_loss/en") == [(2, f32(5.8)), (4, f32(5.6))]
    assert history(ctx, runs[1], "val_loss/de") == [(2, f32(6.3)), (4, f32(6.1))]
    assert history(ctx, runs[2], "val_perplexity/en") == [(6, f32(394.0))]
    assert history(ctx, runs[2], "val_loss/en") == [(6, f32(5.4))]
    assert history(ctx, runs[1], "val_loss/en") and not history(ctx, runs[1], "time_remaining")
    assert one and two

    # a second ingest (a rerun, the next checkpoint) adds nothing; a fresh sink asks MLflow
    before = {key: len(history(ctx, runs[1], key)) for key in ("loss", "lr", "val_loss/en")}
    fit.ingest_events(ctx, runs)
    Fit(LAYOUT).ingest_events(ctx, runs)
    assert {key: len(history(ctx, runs[1], key)) for key in before} == before
    assert len(history(ctx, parent, "loss")) == 6


def test_resumed_phase_keeps_the_first_value_of_a_step(store, tmp_path):
    """After a crash a phase redoes the steps after its checkpoint in a new event file; the steps
    MLflow already holds stay as they are, the new ones are added."""
    import time

    from genbac.runtime.cszoo_backend import Fit, MODEL_DIR

    ctx, parent, runs = store
    model_dir = ctx.compiled / MODEL_DIR
    write_phase_events(model_dir, [1, 2, 3], first_eval=2, new_style=True)
    Fit(LAYOUT).ingest_events(ctx, runs)
    time.sleep(1.1)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(model_dir / "events"))
    for step in (3, 4):  # resumed from a checkpoint at step 2
        writer.add_scalar("loss", 100.0 + step, step)
    writer.close()
    Fit(LAYOUT).ingest_events(ctx, runs)
    assert history(ctx, runs[1], "loss") == [(1, f32(6.9)), (2, f32(6.8)), (3, f32(6.7)),
                                             (4, 104.0)]


def test_scalar_metrics_skip_non_finite_and_unknown_tags():
    scalars = [logs.Scalar("loss", 3, math.nan, 0.0), logs.Scalar("loss", 3, 2.0, 0.0),
               logs.Scalar("validate_5/loss", 3, 1.0, 0.0), logs.Scalar("mystery", 3, 1.0, 0.0)]
    assert logs.scalar_metrics(LAYOUT, scalars) == [Point(3, {"loss": 2.0})]
    assert logs.by_phase(LAYOUT, [Point(0, {"loss": 1.0}), Point(5, {"loss": 2.0})]) == \
        {2: [Point(5, {"loss": 2.0})]}
