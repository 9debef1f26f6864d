"""Specs read from a git revision, `REV:PATH` (`genbac diff main:examples/exp.genba exp.genba`).

PATH is from the repository root, as `git show REV:PATH` reads it; `REV:./PATH` and `REV:../PATH`
are from the current directory, as in git. A spec's imports are read from the same revision, with
the repository as the root they may not leave: the old side of a diff is the old spec with the old
versions of the files it imports.
"""

from __future__ import annotations

import posixpath
import subprocess

from genbac.errors import UserError


class RevisionError(UserError):
    """A revision, path or repository that git cannot read: a usage error."""


def _git(*args: str) -> bytes:
    try:
        r = subprocess.run(["git", *args], capture_output=True)
    except OSError:
        raise RevisionError("git is not installed") from None
    if r.returncode:
        lines = r.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RevisionError(lines[-1].removeprefix("fatal: ") if lines else
                            f"git exited with {r.returncode}")
    return r.stdout


def _blob(rev: str, path: str) -> str:
    """The text of PATH (from the repository root) at REV, read with the limits of a file on
    disk (spec.limits): its size asked first, so that a huge blob is never read."""
    from genbac.spec.limits import MAX_FILE_BYTES, SourceProblem, bad_path_char, decode_source

    if bad_path_char(rev + path) is not None:
        raise RevisionError(f"{rev}:{path} holds a control character")
    try:
        size = int(_git("cat-file", "-s", f"{rev}:{path}"))
        if size > MAX_FILE_BYTES:
            raise RevisionError(f"{rev}:{path} is larger than {MAX_FILE_BYTES // 1024} KiB, the "
                                "limit for one spec file")
        data = _git("cat-file", "blob", f"{rev}:{path}")
    except RevisionError as exc:
        if str(exc).endswith("bad file"):  # git's words for a directory
            raise RevisionError(f"{path} is not a file in {rev}") from None
        raise
    try:
        return decode_source(data)
    except SourceProblem as exc:
        raise RevisionError(f"{rev}:{path}: {exc}") from None


def read_revision(arg: str):
    """(text, name shown, import reader) of the spec `REV:PATH`; raises RevisionError."""
    rev, _, path = arg.partition(":")
    if not rev or not path:
        raise RevisionError(f"{arg}: expected a file or REV:PATH (e.g. main:examples/exp.genba)")
    if path in (".", "..") or path.startswith(("./", "../")):
        prefix = _git("rev-parse", "--show-prefix").decode("utf-8").strip()
        path = posixpath.normpath(posixpath.join(prefix, path))
        if path == ".." or path.startswith("../"):
            raise RevisionError(f"{arg} is outside the repository")
    try:
        text = _blob(rev, path)
    except RevisionError as exc:
        raise RevisionError(f"cannot read {arg} from git: {exc}") from None
    return text, f"{rev}:{path}", RevisionFiles(rev).read


class RevisionFiles:
    """Reads a spec's imports from one revision (see spec.compose.Files for files on disk)."""

    def __init__(self, rev: str):
        self.rev = rev

    def read(self, importer: str, target: str) -> tuple[str, str]:
        from genbac.spec.compose import ImportProblem

        importer_path = importer.partition(":")[2]  # importers are shown as REV:PATH
        if posixpath.isabs(target):
            raise ImportProblem("GB107", f"import {target!r} is an absolute path",
                                "imports are relative to this file",
                                "write the path relative to the importing file")
        path = posixpath.normpath(posixpath.join(posixpath.dirname(importer_path), target))
        if path == ".." or path.startswith("../"):
            raise ImportProblem("GB107", f"import {target!r} leaves the repository",
                                "outside the project",
                                "a spec may only import files inside its project")
        try:
            return f"{self.rev}:{path}", _blob(self.rev, path)
        except RevisionError as exc:
            raise ImportProblem("GB105", f"import {target!r} cannot be read at {self.rev}: {exc}",
                                "not found") from None
