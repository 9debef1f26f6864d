"""A Hugging Face Hub on 127.0.0.1 for the download tests: it serves model repositories (directories
of files) the way the Hub's API and file endpoints do, for the real `huggingface_hub` client
pointed at it through HF_ENDPOINT. Nothing reaches the internet.

    GET  /api/models/ORG/NAME[/revision/REV]     the revision's commit and files (model_info)
    GET  /api/models/ORG/NAME/tree/REV[/PATH]    the file list (list_repo_tree), ?recursive=...
    HEAD /ORG/NAME/resolve/REV/FILE              X-Repo-Commit, ETag, Content-Length
    GET  /ORG/NAME/resolve/REV/FILE              the file; a `Range: bytes=N-` request gets 206

Errors as the Hub sends them: 404 with `X-Error-Code: RepoNotFound`, `RevisionNotFound` or
`EntryNotFound`; a gated repository answers 401 `GatedRepo` to requests without its token.
`interrupt` makes the first GET of a file send half of it and close the connection (a dropped
download), so that the client's resume (a Range request) is exercised; every request is recorded
(method, path, Range header, whether a token came) for the tests to read.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".model")  # stored in LFS on the Hub


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit (main is added)
    token: str | None = None  # gated: only requests with this token

    @classmethod
    def from_directory(cls, directory: Path, token: str | None = None) -> "Repo":
        files = {p.relative_to(directory).as_posix(): p.read_bytes()
                 for p in sorted(directory.rglob("*")) if p.is_file()}
        commit = hashlib.sha1(b"".join(hashlib.sha1(n.encode() + b).digest()
                                       for n, b in files.items())).hexdigest()
        return cls(files, commit, {"main": commit}, token)


class FakeHub:
    def __init__(self, repos: dict[str, Repo]):
        self.repos = repos
        self.requests: list[dict] = []
        self.interrupt: set[str] = set()  # file names whose first GET is cut off halfway
        self._cut: set[str] = set()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                hub._handle(self, body=True)

            def do_HEAD(self):
                hub._handle(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- requests ----------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        url = urlparse(h.path)
        path = unquote(url.path)
        auth = h.headers.get("Authorization", "")
        self.requests.append({"method": h.command, "path": path, "range": h.headers.get("Range"),
                              "token": auth.removeprefix("Bearer ") or None})
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) == 4:  # model_info without a revision
            parts += ["revision", "main"]
        if parts[:2] == ["api", "models"] and len(parts) >= 6:
            repo_id, what, rev, rest = "/".join(parts[2:4]), parts[4], parts[5], parts[6:]
            api = True
        elif len(parts) >= 5 and parts[2] == "resolve":
            repo_id, what, rev, rest = "/".join(parts[:2]), "resolve", parts[3], parts[4:]
            api = False
        else:
            return self._error(h, 404, "RepoNotFound", "not a Hub URL", body)
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", f"Repository Not Found for url: {path}",
                               body)
        if repo.token is not None and auth != f"Bearer {repo.token}":
            return self._error(h, 401, "GatedRepo", f"Access to model {repo_id} is restricted",
                               body)
        commit = repo.branches.get(rev, rev if rev == repo.commit else None)
        if commit is None:
            return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}", body)
        if api and what == "revision":
            # with ?blobs=true (files_metadata=True) the Hub adds each file's size and blob
            blobs = "true" in parse_qs(url.query).get("blobs", [])
            return self._json(h, {"id": repo_id, "modelId": repo_id, "sha": commit,
                                  "private": False, "gated": repo.token is not None,
                                  "siblings": [self._sibling(n, b, blobs)
                                               for n, b in repo.files.items()]}, body)
        if api and what == "tree":
            prefix = "/".join(rest)
            entries = [self._entry(n, b) for n, b in repo.files.items()
                       if not prefix or n.startswith(prefix + "/")]
            return self._json(h, entries, body)
        if not api and what == "resolve":
            return self._file(h, repo, commit, "/".join(rest), body)
        return self._error(h, 404, "EntryNotFound", "unknown endpoint", body)

    @classmethod
    def _sibling(cls, name: str, data: bytes, blobs: bool) -> dict:
        if not blobs:
            return {"rfilename": name}
        entry = cls._entry(name, data)
        sibling = {"rfilename": name, "size": len(data), "blobId": entry["oid"]}
        if "lfs" in entry:
            sibling["lfs"] = {"sha256": entry["lfs"]["oid"], "size": len(data),
                              "pointerSize": entry["lfs"]["pointerSize"]}
        return sibling

    @staticmethod
    def _entry(name: str, data: bytes) -> dict:
        entry = {"type": "file", "path": name, "size": len(data),
                 "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
        if name.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                            "pointerSize": 134}
        return entry

    def _file(self, h, repo: Repo, commit: str, name: str, body: bool) -> None:
        data = repo.files.get(name)
        if data is None:
            return self._error(h, 404, "EntryNotFound", f"{name} does not exist", body)
        entry = self._entry(name, data)
        etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
        start = 0
        ranged = h.headers.get("Range")
        if ranged and ranged.startswith("bytes="):
            start = int(ranged[len("bytes="):].split("-")[0] or 0)
        h.send_response(206 if start else 200)
        h.send_header("X-Repo-Commit", commit)
        h.send_header("ETag", f'"{etag}"')
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(data) - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if not body:
            return
        if name in self.interrupt and name not in self._cut:
            self._cut.add(name)  # half of it, then the connection drops
            h.wfile.write(data[start:start + (len(data) - start) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)
            return
        h.wfile.write(data[start:])

    @staticmethod
    def _json(h, value, body: bool) -> None:
        data = json.dumps(value).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)

    @staticmethod
    def _error(h, status: int, code: str, message: str, body: bool) -> None:
        data = json.dumps({"error": message}).encode()
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", message)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)
