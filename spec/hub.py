"""Hugging Face Hub references in a spec: `"hf:ORG/NAME"` or `"hf:ORG/NAME@REVISION"` (a branch, a
tag or a commit), for base weights and tokenizers. One parser for the language (which refuses a
malformed one with its position), the compiler's step plan and the runtime's download.

A revision pins what is downloaded; without one the download takes `main` as it is that day, and
the commit it resolved to is recorded in MLflow (runtime/hub.py).
"""

from __future__ import annotations

import re
from typing import NamedTuple

PREFIX = "hf:"
# the Hub's own rules for repository names: letters, digits, `-`, `_`, `.`; no `--` or `..`; at
# most 96 characters per part
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
REPO = re.compile(rf"{_PART}/{_PART}")
REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,254}")
COMMIT = re.compile(r"[0-9a-f]{40}")


class HubRef(NamedTuple):
    repo: str  # ORG/NAME
    revision: str | None  # None: the default branch (main)

    def __str__(self) -> str:
        return f"{PREFIX}{self.repo}" + (f"@{self.revision}" if self.revision else "")

    @property
    def pinned(self) -> bool:
        """Whether the reference names one commit (a branch or tag can move)."""
        return self.revision is not None and COMMIT.fullmatch(self.revision) is not None


def is_hub(text: str) -> bool:
    return text.startswith(PREFIX)


def parse_hub(text: str) -> HubRef:
    """`hf:ORG/NAME[@REVISION]`; ValueError saying what is wrong otherwise."""
    if not is_hub(text):
        raise ValueError(f"not a Hub reference (it must start with `{PREFIX}`)")
    body = text[len(PREFIX):]
    repo, at, revision = body.partition("@")
    if not REPO.fullmatch(repo) or "--" in repo or ".." in repo:
        raise ValueError(f"`{repo}` is not a Hub repository: it must be ORG/NAME, each of "
                         "letters, digits, `-`, `_`, `.`")
    if at and (not REVISION.fullmatch(revision) or ".." in revision):
        raise ValueError(f"`{revision}` is not a revision: a branch, a tag or a commit hash "
                         "after `@`")
    return HubRef(repo, revision or None)
