"""Where and with what a run ran: recorded on its MLflow parent run, so that two runs that differ
in their environment say so (`genbac compare` shows the differences).

- tags `genbac.env.<name>`: host, platform, Python, the versions of torch (with its CUDA and NCCL),
  transformers, datasets, tokenizers, mlflow and, under the cszoo backend, the Model Zoo that
  `cszoo` runs; the git state of the spec's directory (`git_dirty`, `spec_in_git`) beside MLflow's
  own `mlflow.source.git.commit`;
- the artifact `environment/requirements.txt`: every installed distribution as `name==version`,
  sorted (what `pip freeze` lists, read from the interpreter's metadata without running pip), and
  under the cszoo backend `environment/cszoo-requirements.txt`, the same of Model Zoo's
  interpreter, whose torch and transformers are the ones that train there (tags `cszoo_torch`,
  `cszoo_transformers`, `cszoo_cerebras_pytorch`).

Everything here reads; a question that cannot be answered (no git, a cszoo whose interpreter does
not say) is recorded as such, never an error.
"""

from __future__ import annotations

import functools
import json
import platform
import re
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ENV_TAG = "genbac.env."
REQUIREMENTS = "requirements.txt"
CSZOO_REQUIREMENTS = "cszoo-requirements.txt"
ARTIFACT_DIR = "environment"
PACKAGES = ("torch", "transformers", "datasets", "tokenizers", "mlflow")
NOT_INSTALLED = "not installed"
UNKNOWN = "unknown"


def env_tag(name: str) -> str:
    return f"{ENV_TAG}{name}"


def version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def environment(backend: str, spec: Path | None) -> dict[str, str]:
    """The `genbac.env.*` tags of a run of `backend` ("local" or "cszoo") of the spec at `spec`."""
    found = {"host": socket.gethostname(), "platform": platform.platform(),
             "python": platform.python_version()}
    found |= {name: version(name) for name in PACKAGES}
    if backend == "local":
        found |= _torch_libraries()
    else:
        found |= cszoo_versions()
    found |= git_state(spec)
    return {env_tag(k): v for k, v in found.items()}


def _torch_libraries() -> dict[str, str]:
    """CUDA and NCCL of the torch that trains (the local backend imports it anyway)."""
    try:
        import torch
    except ImportError:
        return {}
    out = {"cuda": torch.version.cuda or "none (a CPU build)"}
    try:
        out["nccl"] = ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() \
            else "none (no CUDA device)"
    except (AttributeError, RuntimeError):
        out["nccl"] = "none"
    return out


# what an interpreter has installed, as JSON {name: version}: run in genbac's own process and, for
# the cszoo backend, in Model Zoo's interpreter (its own virtual environment, its own torch)
_INSTALLED = ("import json, importlib.metadata as m; print(json.dumps({d.metadata['Name']: "
              "d.version for d in m.distributions() if d.metadata['Name']}))")
CSZOO_PACKAGES = {"cszoo": "cerebras-modelzoo", "cszoo_cerebras_pytorch": "cerebras-pytorch",
                  "cszoo_torch": "torch", "cszoo_transformers": "transformers"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503: cerebras_modelzoo is cerebras-modelzoo


def installed() -> dict[str, str]:
    """This interpreter's distributions: normalised name -> version."""
    return {_normal(d.metadata["Name"]): d.version for d in metadata.distributions()
            if d.metadata["Name"]}


@functools.lru_cache(maxsize=None)
def cszoo_installed() -> tuple[str, dict[str, str] | None] | None:
    """(the `cszoo` executable, what its interpreter has installed) — asked of the interpreter its
    script starts, since Model Zoo lives in a virtual environment of its own; None without cszoo,
    no packages where the interpreter does not answer."""
    from .context import RunError
    from .cszoo_backend import find_cszoo

    try:
        path = find_cszoo()
    except RunError:
        return None
    try:
        first = Path(path).read_bytes()[:512].split(b"\n", 1)[0].decode()
    except (OSError, UnicodeDecodeError):
        first = ""
    if not first.startswith("#!"):
        return path, None
    try:
        r = subprocess.run([*first[2:].split(), "-c", _INSTALLED], capture_output=True,
                           text=True, timeout=30)
        packages = json.loads(r.stdout) if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return path, None
    return path, {_normal(k): v for k, v in packages.items()} if packages else None


def cszoo_versions() -> dict[str, str]:
    """The Model Zoo release `cszoo` runs, "2.10.0 (/path/to/cszoo)", and the torch,
    transformers and cerebras-pytorch that train under it."""
    found = cszoo_installed()
    if found is None:
        return {"cszoo": NOT_INSTALLED}
    path, packages = found
    out = {tag: (packages or {}).get(name, UNKNOWN) for tag, name in CSZOO_PACKAGES.items()}
    out["cszoo"] = f"{out['cszoo']} ({path})"
    return out


def git_commit(directory: Path) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True,
                           text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def git_state(spec: Path | None) -> dict[str, str]:
    """Whether the spec's work tree has uncommitted changes, and whether the spec file is tracked
    and committed as it is."""
    if spec is None:
        return {}
    directory = spec.parent

    def git(*args: str) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None

    inside = git("rev-parse", "--is-inside-work-tree")
    if inside is None or inside.returncode != 0:
        return {"git_dirty": "not a git repository", "spec_in_git": "not a git repository"}
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = UNKNOWN if status is None or status.returncode else (
        "yes" if status.stdout.strip() else "no")
    tracked = git("ls-files", "--error-unmatch", "--", spec.name)
    if tracked is None:
        in_git = UNKNOWN
    elif tracked.returncode != 0:
        in_git = "untracked"
    else:
        changed = git("diff", "--quiet", "HEAD", "--", spec.name)
        in_git = "tracked, committed" if changed is not None and changed.returncode == 0 else \
            "tracked, with uncommitted changes"
    return {"git_dirty": dirty, "spec_in_git": in_git}


def requirements(packages: dict[str, str] | None = None, interpreter: str = sys.executable) -> str:
    """Distributions (this interpreter's unless given) as `name==version` lines, sorted by name."""
    packages = installed() if packages is None else packages
    header = f"# {interpreter}\n"
    return header + "".join(f"{name}=={v}\n" for name, v in sorted(packages.items()))


def parse_requirements(text: str) -> dict[str, str]:
    """name (lower case) -> version of a requirements.txt written by `requirements`."""
    out = {}
    for line in text.splitlines():
        name, sep, ver = line.partition("==")
        if sep and not line.startswith("#"):
            out[name.strip().lower()] = ver.strip()
    return out
