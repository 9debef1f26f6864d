"""The compiled experiment directory as one typed artifact: its layout, its manifest and its steps.

    <out>/
      spec.genba  plan.json  steps.json  manifest.json      what was compiled, and the step plan
      run.sh  cszoo/train.yaml  cszoo/baseline.yaml  cszoo/preprocess/<job>.yaml
                                                             the target's files
      work/                                                  the runtime's (a recompile keeps it)
        state.json  stamps/  logs/  tokenizer/  raw/<job>/  data/<job>/  base/  grown/
        ckpt/model_to_cs-2.9.mdl  baseline/  model_dir/  checkpoints/  resume.yaml  mixture.png

Every path of that layout is defined here and nowhere else. The step plan (steps.json) is the one
list of what running the experiment does: each step's name, kind, inputs, outputs and command,
produced by the target from the Plan. run.sh is rendered from it, and `genbac run` executes it with
either backend (runtime/executor.py): a step whose engine is genbac runs genbac's own code
everywhere (`genbac step` from run.sh), a step whose engine is the tool runs its command under the
cszoo backend and genbac's equivalent under the local backend.

The runtime reads a compiled directory only through `Artifact.load` (and the Plan).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from genbac.errors import UserError
from genbac.spec.ir import Model

from .plan import Plan

# ------------------------------------------------------------------------------------------------
# the layout: every path, relative to the compiled directory
# ------------------------------------------------------------------------------------------------

SPEC = "spec.genba"
PLAN = "plan.json"
STEPS = "steps.json"
MANIFEST = "manifest.json"
RUN_SH = "run.sh"
SLURM_SH = "slurm.sh"  # GPU (and multi-node CPU) experiments: the SLURM batch job
# the c10d rendezvous port on a multi-node job's first node (slurm.sh; GENBAC_RDZV_PORT overrides)
RDZV_PORT = 29500
TRAIN_YAML = "cszoo/train.yaml"
BASELINE_YAML = "cszoo/baseline.yaml"  # Model Zoo's evaluation of the converted checkpoint
SWEEP_INDEX = "index.json"  # a sweep's directory: one compiled directory per variant

WORK = "work"
STATE = f"{WORK}/state.json"
STAMPS = f"{WORK}/stamps"  # run.sh's record of finished steps
LOGS = f"{WORK}/logs"
TOKENIZER = f"{WORK}/tokenizer"
HUB = f"{WORK}/hub"  # links to the snapshots a download step put in the Hugging Face cache
HUB_BASE = f"{HUB}/base"
HUB_TOKENIZER = f"{HUB}/tokenizer"
BASE = f"{WORK}/base"  # a seeded random base, when the spec's base has no weights
GROWN = f"{WORK}/grown"  # the checkpoint training starts from (Hugging Face format)
CKPT_DIR = f"{WORK}/ckpt"
CONVERTED = f"{CKPT_DIR}/model_to_cs-2.9.mdl"  # GROWN converted for Model Zoo
MODEL_DIR = f"{WORK}/model_dir"  # Model Zoo's checkpoints and event files
BASELINE_DIR = f"{WORK}/baseline"  # Model Zoo's model_dir of the baseline evaluation
CHECKPOINTS = f"{WORK}/checkpoints"  # the local backend's checkpoints
EXPORTS = f"{WORK}/export"  # the local backend's Hugging Face checkpoint of each phase's end


def export_dir(phase: int) -> str:
    return f"{EXPORTS}/phase-{phase}"


RESUME_YAML = f"{WORK}/resume.yaml"
MIXTURE_PNG = f"{WORK}/mixture.png"


def job_name(code: str, split: str) -> str:
    """One preprocessing job: a language's training or validation sources."""
    return code if split == "train" else f"{code}-{split}"


def raw_dir(job: str) -> str:
    """The job's sources, staged (linked) for preprocessing."""
    return f"{WORK}/raw/{job}"


PACKED = f"{WORK}/data"  # the local backend's packed-sequence cache (runtime/data.py names inside)


def data_dir(code: str, split: str = "train") -> str:
    """The job's preprocessed sequences (Model Zoo HDF5; the local backend's cache beside it)."""
    return f"{WORK}/data/{job_name(code, split)}"


def preprocess_config(job: str) -> str:
    return f"cszoo/preprocess/{job}.yaml"


# ------------------------------------------------------------------------------------------------
# the step plan
# ------------------------------------------------------------------------------------------------

StepKind = Literal[
    "download",          # a `hf:` base or tokenizer into the Hugging Face cache -> HUB_*
    "tokenizer",         # train the spec's BPE tokenizer on the training sources -> TOKENIZER
    "import-tokenizer",  # copy a tokenizer directory to TOKENIZER, loadable by every engine
    "stage",             # link one job's source files into raw_dir(job)
    "prepare",           # tokenize and pack one job's sources -> data_dir
    "base",              # a seeded random base checkpoint -> BASE
    "grow",              # the base grown as planned (or copied, normalised) -> GROWN
    "convert",           # GROWN in the training engine's checkpoint format
    "baseline",          # validation per language of the model training starts from (step 0)
    "phase",             # train one phase
]


class Input(Model):
    """What a step reads: a path in the project (as the spec wrote it) or in the compiled
    directory (another step's output), and what it must hold, which preflight checks before the
    first step."""

    path: str
    root: Literal["project", "compiled", "hub"] = "compiled"
    holds: Literal["files", "tokenizer", "weights", "any"] = "any"


class Step(Model):
    name: str  # unique; the state file, run.sh's stamps and the MLflow child run use it
    kind: StepKind
    engine: Literal["genbac", "cszoo"]  # whose code does it under the target's own engine
    argv: tuple[str, ...]  # the command; argv[0] names the tool ("genbac" or "cszoo")
    inputs: tuple[Input, ...] = ()
    outputs: tuple[str, ...] = ()  # paths in the compiled directory
    fresh: bool = False  # its outputs are removed before it runs (an interrupted attempt's)
    process: Optional[str] = None  # steps done by one process together (the phases of one fit)
    language: Optional[str] = None  # stage, prepare
    split: Optional[Literal["train", "val"]] = None  # stage, prepare
    phase: Optional[int] = None  # phase

    @property
    def job(self) -> str:
        return job_name(self.language, self.split)


class StepPlan(Model):
    format: Literal["genbac.steps/1"] = "genbac.steps/1"
    target: str
    steps: tuple[Step, ...]

    def get(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


def steps_json(plan: StepPlan) -> bytes:
    return (json.dumps(plan.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# ------------------------------------------------------------------------------------------------
# the manifest
# ------------------------------------------------------------------------------------------------

class Manifest(Model):
    format: Literal["genbac.manifest/1"] = "genbac.manifest/1"
    genbac_version: str
    name: str
    spec: str  # the spec's file name
    spec_hash: str
    target: str
    project_dir: str  # where the spec's relative paths start, as seen from the compiled directory
    files: dict[str, str]  # every generated file -> sha256
    # imported files (as the compiling user named them) and their hashes, for provenance: their
    # content is in plan.json's resolved spec
    imports: dict[str, str] = {}

    def to_bytes(self) -> bytes:
        data = self.to_json()
        if not data["imports"]:
            del data["imports"]
        return (json.dumps(data, indent=2) + "\n").encode("utf-8")


# ------------------------------------------------------------------------------------------------
# the artifact
# ------------------------------------------------------------------------------------------------

class ArtifactError(UserError):
    """A directory that is not a (readable, consistent) compiled experiment."""


@dataclass(frozen=True)
class Artifact:
    directory: Path  # absolute
    manifest: Manifest
    plan: Plan
    steps: StepPlan

    @classmethod
    def load(cls, directory: Path) -> "Artifact":
        directory = Path(directory).resolve()
        return cls.from_files(directory, lambda rel: (directory / rel).read_bytes())

    @classmethod
    def from_files(cls, directory: Path, read) -> "Artifact":
        """From a compiled directory's files, read by `read(relative path) -> bytes` (the disk,
        or the output of a compile not written yet: `genbac run --dry-run`)."""
        parsed = []
        for name, model in ((MANIFEST, Manifest), (PLAN, Plan), (STEPS, StepPlan)):
            try:
                parsed.append(model.model_validate_json(read(name)))
            except FileNotFoundError:
                raise ArtifactError(
                    f"{directory} is not a compiled experiment (no {name}); run `genbac compile` "
                    "first, or recompile if it was compiled by an older genbac") from None
            except ValueError as exc:
                raise ArtifactError(f"{directory}/{name} cannot be read: "
                                    f"{str(exc).splitlines()[0]}; recompile") from None
        manifest, plan, steps = parsed
        if manifest.spec_hash != plan.spec_hash:
            raise ArtifactError(f"{directory}: manifest.json and plan.json disagree on the spec "
                                "hash; recompile")
        return cls(Path(directory), manifest, plan, steps)

    def path(self, relative: str) -> Path:
        return self.directory / relative

    @property
    def project(self) -> Path:
        """Where the spec's relative paths start: $GENBAC_PROJECT_DIR, else the manifest's."""
        return Path(os.environ.get("GENBAC_PROJECT_DIR") or
                    self.directory / self.manifest.project_dir).resolve()

    def project_path(self, path: str) -> Path:
        return (self.project / path).resolve()
