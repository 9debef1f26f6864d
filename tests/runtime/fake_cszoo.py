"""A STAND-IN for Cerebras Model Zoo's `cszoo` command, for testing genbac's orchestration only.

Model Zoo is not on PyPI and cannot be installed in CI, so the cszoo backend's tests put this script
on the command line (GENBAC_CSZOO) to check what genbac does around the real tool: the commands and
their argument order, resume from checkpoints, the mapping of failures to messages. It trains
nothing. What it prints are real Model Zoo 2.10 log lines in the formats quoted in
shared/reference/modelzoo-2.10.md §6.5 (with made-up numbers); it writes a real TensorBoard event
file (the tensorboard package's writer, Model Zoo's tag names, §6.3) and checkpoint files whose
"content" is the global step. The real check is by hand against a real Model Zoo (README).

Where the real one refuses input, so does this, with its messages (seen running Model Zoo 2.10 by
hand, transformers 4.57.1, on its CPU backend):
- preprocessing loads the tokenizer as transformers 4.57.1 does its tokenizer_config.json: a class
  4.57 does not have ("TokenizersBackend", written by transformers 5) or a list of
  "extra_special_tokens" fails;
- the converter writes the keys of the Hugging Face checkpoint it was given, renamed, and nothing
  else (a tied checkpoint without lm_head.weight gets no head), and refuses a single-file
  checkpoint;
- the fit loads a converted checkpoint strictly: the Llama model always has lm_head.weight;
- a failing fit prints `Processed 0 training sample(s)` before its traceback, as the real one does
  (progress.py logs the end of the fit on an exception too).

Controls (environment): FAKE_CSZOO_CALLS, a file each call's argv is appended to as JSON;
FAKE_CSZOO_DIE_AT, a global step after which the fit crashes; FAKE_CSZOO_FAIL, an error text to
print (after a traceback header) before exiting 1; FAKE_CSZOO_VAL_LOADERS, how many of its
dataloaders validate_all evaluates (fewer: output short of some languages' losses).
"""

import json
import os
import re
import sys
import time
from pathlib import Path

import yaml


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S") + ",000"
    print(f"{stamp} INFO:   {message}", flush=True)


def fail_if_asked() -> None:
    text = os.environ.get("FAKE_CSZOO_FAIL")
    if text:
        fail(text)


def fail(text: str, *, fitting: bool = True) -> None:
    if fitting:  # the real fit logs its end also when it fails
        log("Processed 0 training sample(s) in 5.803240924 seconds.")
    print("Traceback (most recent call last):", flush=True)
    print('  File "cerebras/modelzoo/trainer/trainer.py", line 1, in fit', flush=True)
    print(text, flush=True)
    sys.exit(1)


# tokenizer classes of transformers 4.57.1 that a tokenizer directory may name (a sample: the
# fast classes genbac's tokenizers and Llama-family checkpoints use)
TOKENIZER_CLASSES_4_57 = {"PreTrainedTokenizerFast", "LlamaTokenizerFast", "LlamaTokenizer",
                          "GPT2TokenizerFast", "GPT2Tokenizer"}


def load_tokenizer_as_4_57(directory: str) -> None:
    config_path = Path(directory) / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    name = config.get("tokenizer_class")
    if name is not None and name not in TOKENIZER_CLASSES_4_57:
        fail(f"ValueError: Tokenizer class {name} does not exist or is not currently imported.",
             fitting=False)
    if isinstance(config.get("extra_special_tokens"), list):
        fail("AttributeError: 'list' object has no attribute 'keys'", fitting=False)
    if not (Path(directory) / "tokenizer.json").exists():
        fail(f"OSError: Can't load tokenizer for '{directory}'. If you were trying to load it "
             "from 'https://huggingface.co/models', make sure you don't have a local directory "
             "with the same name.", fitting=False)


def preprocess(config_path: str) -> None:
    config = yaml.safe_load(Path(config_path).read_text())
    source = Path(config["setup"]["data"]["source"])
    out = Path(config["setup"]["output_dir"])
    print(f"Writing data to {out}.", flush=True)
    tokenizer = config["processing"]["huggingface_tokenizer"]
    if Path(tokenizer).is_dir() or tokenizer.startswith("work/"):  # else a hub id: not fetched
        load_tokenizer_as_4_57(tokenizer)
    files = sorted(source.iterdir())
    assert files, f"nothing staged in {source}"
    out.mkdir(parents=True)
    (out / "data_params.json").write_text(json.dumps(
        {"post-process": {"n_examples": 3 * len(files), "num_tokens": 3 * 128 * len(files)}}))
    print(f"Finished writing data to {out}. Args & outputs can be found at "
          f"{out}/data_params.json.", flush=True)


def checkpoints(model_dir: Path) -> list[tuple[int, str]]:
    index = model_dir / "checkpoints_index.yaml"
    listed = yaml.safe_load(index.read_text()) if index.exists() else []
    return sorted((int(re.search(r"checkpoint_(\d+)", p)[1]), p) for p in listed or [])


def save(model_dir: Path, step: int) -> None:
    path = model_dir / f"checkpoint_{step}.mdl"
    log(f"Saving checkpoint at step {step}")
    path.write_text(json.dumps({"global_step": step}))
    index = model_dir / "checkpoints_index.yaml"
    listed = (yaml.safe_load(index.read_text()) if index.exists() else None) or []
    index.write_text(yaml.safe_dump(listed + [str(path)]))
    log(f"Saved checkpoint {path}")


def fit(config_path: str) -> None:
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    phases = yaml.safe_load(Path(config_path).read_text())["trainer"]
    die_at = int(os.environ.get("FAKE_CSZOO_DIE_AT", "0"))
    fail_if_asked()
    loaders = 1
    for entry in phases:
        init, fit_section = entry["trainer"]["init"], entry["trainer"]["fit"]
        model_dir = Path(init["model_dir"])
        model_dir.mkdir(parents=True, exist_ok=True)
        states = next((c["LoadCheckpointStates"]["load_checkpoint_states"]
                       for c in init.get("callbacks", []) if "LoadCheckpointStates" in c), "all")
        ckpt = fit_section.get("ckpt_path")
        if ckpt is None and checkpoints(model_dir):  # autoload (§4.2)
            ckpt = checkpoints(model_dir)[-1][1]
            log(f'Found latest checkpoint at "{ckpt}".')
        step = 0
        if ckpt is not None:
            log(f"Loading weights from checkpoint {ckpt}")
            load_strictly(ckpt)
            if states == "all" or "global_step" in states:
                step = json.loads(Path(ckpt).read_text()).get("global_step", 0)
        end = init["loop"]["max_steps"]
        every = init["checkpoint"]["steps"]
        start = step
        writer = EventFileWriter(str(model_dir / "events"))
        log("Trainer Fit Summary")
        log(f"Starting train loop 1 of 1, from global step {step + 1} to {end} "
            f"({end - step} steps)")
        while step < end:
            step += 1
            loss = 7.0 - 0.01 * step
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')},000 INFO:   | Train Device=cpu, "
                  f"Step={step}, Loss={loss:.5f}, Rate={20 + step:.2f} samples/sec, "
                  f"GlobalRate=20.00 samples/sec, LoopTimeRemaining=0:00:01, "
                  f"TimeRemaining>0:00:02", flush=True)
            values = {"loss": loss, "lr/0": 1e-4 * step, "local_samples_per_sec": 20.0 + step}
            if step == end:
                for k in range(len(fit_section.get("val_dataloader", []))):
                    values[f"validate_{k}/loss"] = 6.0 + k - 0.01 * step
            writer.add_event(Event(wall_time=time.time(), step=step, summary=Summary(value=[
                Summary.Value(tag=tag, simple_value=value) for tag, value in values.items()])))
            writer.flush()
            if die_at and step == die_at:
                print("Killed", flush=True)
                os._exit(137)
            if step == end or (step - start) % every == 0:
                save(model_dir, step)
        writer.close()
        log("Training completed successfully!")
        for k, _ in enumerate(fit_section.get("val_dataloader", [])):
            log(f"Starting val_dataloader_{loaders + 1 + k} loop 1 of 1, with 2 steps")
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')},000 INFO:   | Eval Device=cpu, "
                  f"GlobalStep={step}, Batch=1, Loss={6.0 + k - 0.01 * step:.5f}, "
                  f"Rate=1000.00 samples/sec, GlobalRate=1000.00 samples/sec", flush=True)
            log(f"Avg Eval Loss: {6.0 + k - 0.01 * step}")
            log("Evaluation metrics:")
            log(f"  - eval/lm_perplexity = {400.0 - step}")
        loaders += 16
        log(f"Processed {8 * (step - start)} training sample(s) in 1.5 seconds.")


def validate_all(config_path: str) -> None:
    """Every val dataloader on each checkpoint of validate_all.ckpt_paths, as the real one does it
    (trainer/utils.py run_trainer "eval_all", Trainer.validate_all): the section and the
    checkpoints must exist, the checkpoint loads strictly, and each dataloader's losses go to
    TensorBoard as validate_<k>/loss at the checkpoint's global step (0 for a converted one)."""
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    trainer = yaml.safe_load(Path(config_path).read_text())["trainer"]
    section = trainer.get("validate_all")
    if not section:
        fail("RuntimeError: Validation requested but config is missing `validate_all` section. "
             "Please add a `validate_all` section to your trainer configuration.", fitting=False)
    for ckpt in section["ckpt_paths"]:
        if not Path(ckpt).exists():
            fail(f"FileNotFoundError: Checkpoint file(s) not found at: {ckpt}", fitting=False)
    model_dir = Path(trainer["init"]["model_dir"])
    model_dir.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(model_dir / "events"))
    # FAKE_CSZOO_VAL_LOADERS: evaluate only the first N dataloaders (an output short of some)
    loaders = section["val_dataloaders"][:int(os.environ.get("FAKE_CSZOO_VAL_LOADERS", "99"))]
    for ckpt in section["ckpt_paths"]:
        log(f"Loading weights from checkpoint {ckpt}")
        load_strictly(ckpt)
        step = json.loads(Path(ckpt).read_text()).get("global_step", 0)
        for k, _ in enumerate(loaders):
            loss = 6.5 + k
            log(f"Starting val_dataloader_{k + 1} loop 1 of 1, with 2 steps")
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')},000 INFO:   | Eval Device=cpu, "
                  f"GlobalStep={step}, Batch=1, Loss={loss:.5f}, "
                  f"Rate=1000.00 samples/sec, GlobalRate=1000.00 samples/sec", flush=True)
            log(f"Avg Eval Loss: {loss}")
            writer.add_event(Event(wall_time=time.time(), step=step, summary=Summary(value=[
                Summary.Value(tag=f"validate_{k}/loss", simple_value=loss)])))
    writer.close()


def convert(source: Path, out: Path) -> None:
    """The checkpoint's keys as the llama converter names them: only what the source has."""
    if source.name != "model.safetensors.index.json":
        fail("AssertionError: .safetensor files are only supported for sharded checkpoints",
             fitting=False)
    names = json.loads(source.read_text())["weight_map"]
    renamed = {"model.embed_tokens.weight": "embedding_layer.word_embeddings.weight",
               "model.norm.weight": "transformer_decoder.norm.weight",
               "lm_head.weight": "lm_head.weight"}
    keys = sorted(renamed.get(n, n.replace("model.layers.", "transformer_decoder.layers."))
                  for n in names)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_to_cs-2.9.mdl").write_text(json.dumps({"keys": keys}))


def load_strictly(ckpt: str) -> None:
    """Model Zoo's Llama always has lm_head.weight, tied (a shared parameter) or not."""
    keys = json.loads(Path(ckpt).read_text()).get("keys")
    if keys is not None and "lm_head.weight" not in keys:
        fail('RuntimeError: Error(s) in loading state_dict for GPT2LMHeadModel:\n'
             '\tMissing key(s) in state_dict: "lm_head.weight".\n\n'
             "RuntimeError: Encountered error when calling ModelCallback.on_load_checkpoint")


def main(argv: list[str]) -> int:
    calls = os.environ.get("FAKE_CSZOO_CALLS")
    if calls:
        with open(calls, "a") as f:
            f.write(json.dumps(argv) + "\n")
    if argv[:2] == ["data_preprocess", "run"] and argv[2] == "--config":
        preprocess(argv[3])
    elif argv[:2] == ["checkpoint", "convert"]:
        convert(Path(argv[-1]), Path(argv[argv.index("--output-dir") + 1]))
    elif argv[0] == "fit" and len(argv) == 2:
        fit(argv[1])
    elif argv[0] == "validate_all" and len(argv) == 2:
        validate_all(argv[1])
    else:
        print(f"cszoo: error: unrecognized arguments: {' '.join(argv)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
