"""Downloads from the Hugging Face Hub at run time: a spec's `hf:` base weights and tokenizer.

Through `huggingface_hub` (snapshot_download), into the user's Hugging Face cache ($HF_HOME or
$HF_HUB_CACHE, shared with transformers), so a model already there is not fetched again. Each file
is written to a temporary file and moved in when complete: a connection dropped mid-file continues
with a Range request from its last complete 10 MiB chunk (huggingface_hub's retries), and a run
killed mid-download loses only the file in progress (the next run fetches the files still missing;
huggingface_hub 2.x starts a file over in a new process). Gated and
private repositories take the token huggingface_hub finds ($HF_TOKEN, or `hf auth login`); genbac
never prints or records it. $HF_ENDPOINT points at a mirror; HF_HUB_OFFLINE=1 uses the cache only.

Only what training reads is fetched: the top-level config, safetensors weights and their index,
and the tokenizer files (never the `original/` consolidated checkpoints, .bin or .gguf copies that
model repositories often also hold). The download step's output is a link in the compiled
directory (work/hub/…) to the snapshot in the cache, and its MLflow record says the repository,
the revision asked for and the commit it resolved to.
"""

from __future__ import annotations

from pathlib import Path

from genbac.spec.hub import HubRef, parse_hub

from .context import RunError

TOKENIZER_PATTERNS = ["tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                      "special_tokens_map.json", "vocab.json", "merges.txt",
                      "added_tokens.json", "chat_template.jinja"]
WEIGHT_PATTERNS = ["config.json", "generation_config.json", "*.safetensors",
                   "model.safetensors.index.json", *TOKENIZER_PATTERNS]


def patterns(holds: str) -> list[str]:
    return TOKENIZER_PATTERNS if holds == "tokenizer" else WEIGHT_PATTERNS


def ref_of(path: str) -> HubRef:
    """The Hub reference of a step input (`ORG/NAME[@REVISION]`, as the step plan stores it)."""
    return parse_hub(f"hf:{path}")


def download(ref: HubRef, holds: str) -> tuple[Path, str]:
    """The snapshot of `ref` in the cache, with what `holds` needs; and its commit."""
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(ref.repo, revision=ref.revision,
                                      allow_patterns=patterns(holds), ignore_patterns=["*/*"]))
    except Exception as exc:  # huggingface_hub's and the network's, made one line for people
        raise RunError(f"cannot download {ref}: {problem(ref, exc)}") from None
    return path, path.name  # snapshots/<commit>


def check(ref: HubRef, holds: str) -> str | None:
    """Preflight: None if `ref` is in the cache or the Hub answers for it; else why not, in one
    line. A short request (the revision's metadata), nothing downloaded."""
    from huggingface_hub import constants

    if in_cache(ref, holds):
        return None
    if constants.HF_HUB_OFFLINE:
        return (f"{ref} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and "
                "HF_HUB_OFFLINE is set: download it where the Hub is reachable (`hf download "
                f"{ref.repo}{f' --revision {ref.revision}' if ref.revision else ''}`) into this "
                "cache, or name a local directory in the spec")
    try:
        _remote(constants.ENDPOINT, ref.repo, ref.revision)
    except Exception as exc:
        return f"{ref} cannot be downloaded: {problem(ref, exc)}"
    return None


def to_download(ref: HubRef, holds: str) -> dict[tuple[str, str], int]:
    """Preflight's disk estimate: the files `download` would still fetch for `ref`, as
    {(repository, file name): bytes}; none when the snapshot is in the cache, or when the Hub
    cannot say (`check` reports why). Files the cache already holds are not counted."""
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import filter_repo_objects

    if in_cache(ref, holds):
        return {}
    try:
        info = _remote(constants.ENDPOINT, ref.repo, ref.revision)
    except Exception:
        return {}
    # the files snapshot_download would take, chosen by its own filter
    fetched = filter_repo_objects(info.siblings or (), allow_patterns=patterns(holds),
                                  ignore_patterns=["*/*"], key=lambda f: f.rfilename)
    return {(ref.repo, f.rfilename): f.size or 0 for f in fetched
            if not isinstance(try_to_load_from_cache(ref.repo, f.rfilename, revision=info.sha),
                              str)}


def in_cache(ref: HubRef, holds: str) -> bool:
    """Whether the cache holds a complete snapshot of `ref` for `holds` (no request made)."""
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(ref.repo, revision=ref.revision, allow_patterns=patterns(holds),
                          ignore_patterns=["*/*"], local_files_only=True)
        return True
    except Exception:
        return False


_ASKED: dict[tuple, object] = {}  # (endpoint, repo, revision) -> its metadata, or the error


def _remote(endpoint: str, repo: str, revision: str | None):
    """The repository's metadata at `revision` on the Hub at `endpoint`, with each file's size:
    one short request per reference and process (check and to_download share it; an
    unreachable Hub is waited for once, its error raised again)."""
    from huggingface_hub import HfApi

    key = (endpoint, repo, revision)
    if key not in _ASKED:
        try:
            _ASKED[key] = HfApi(endpoint=endpoint).repo_info(repo, revision=revision, timeout=15,
                                                             files_metadata=True)
        except Exception as exc:  # noqa: BLE001 - kept for the next caller, raised below
            _ASKED[key] = exc
    if isinstance(_ASKED[key], Exception):
        raise _ASKED[key]
    return _ASKED[key]


def problem(ref: HubRef, exc: BaseException) -> str:
    """What went wrong reaching `ref`, for people (never the token or request headers)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    endpoint = constants.ENDPOINT
    if isinstance(exc, RevisionNotFoundError):
        return f"the repository {ref.repo} has no revision `{ref.revision}` on {endpoint}"
    if isinstance(exc, GatedRepoError):
        return (f"{ref.repo} is gated: accept its conditions on its Hub page with your account "
                "and set HF_TOKEN to a token of that account")
    if isinstance(exc, RepositoryNotFoundError):
        return (f"no repository {ref.repo} on {endpoint} (or it is private: set HF_TOKEN to a "
                "token that may read it)")
    if isinstance(exc, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set, and it is not in the cache"
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        return f"the Hub at {endpoint} answered HTTP {status}"
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (f"the Hub at {endpoint} is not reachable from here ({reason}); run where it is, set "
            "HF_ENDPOINT to a mirror, or download it elsewhere and name the directory in the spec")
