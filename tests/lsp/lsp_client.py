"""A small LSP client: a `genbac lsp` process, spoken to in JSON-RPC over its stdin and stdout,
the way an editor does (Content-Length framed messages, requests answered by id, notifications
such as publishDiagnostics collected as they come). Used by the tests and by bench/lsp_latency.py.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


class LspError(Exception):
    pass


class Client:
    def __init__(self, command: list[str] | None = None, cwd: str | Path | None = None,
                 env: dict | None = None):
        command = command or [sys.executable, "-m", "genbac", "lsp", "--stdio"]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=cwd,
                                     env={**os.environ, **(env or {})})
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._responses: dict[int, dict] = {}
        self.notifications: list[tuple[str, dict, float]] = []  # (method, params, arrival time)
        self.stderr = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    # -- the wire ----------------------------------------------------------------------------------

    def _send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    with self._lock:
                        self._lock.notify_all()
                    return
                line = line.strip()
                if not line:
                    break
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            message = json.loads(out.read(length))
            now = time.perf_counter()
            if "id" in message and "method" in message:  # a request from the server
                self._send({"id": message["id"], "result": None})
                continue
            with self._lock:
                if "id" in message:
                    self._responses[message["id"]] = message
                else:
                    self.notifications.append((message["method"], message.get("params"), now))
                self._lock.notify_all()

    def _drain_stderr(self) -> None:
        for chunk in iter(lambda: self.proc.stderr.read(4096), b""):
            self.stderr += chunk

    # -- requests and notifications ----------------------------------------------------------------

    def request(self, method: str, params=None, timeout: float = 30):
        rid = next(self._ids)
        self._send({"id": rid, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        with self._lock:
            while rid not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise LspError(f"no answer to {method}; server stderr:\n"
                                   f"{self.stderr.decode(errors='replace')[-3000:]}")
                self._lock.wait(left)
            message = self._responses.pop(rid)
        if "error" in message:
            raise LspError(f"{method}: {message['error']}")
        return message.get("result")

    def notify(self, method: str, params=None) -> None:
        self._send({"method": method, "params": params})

    def wait_for(self, method: str, where=lambda params: True, after: int = 0,
                 timeout: float = 30) -> dict:
        """The first notification `method` (from the `after`-th on) whose params satisfy
        `where`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for m, params, _ in self.notifications[after:]:
                    if m == method and where(params):
                        return params
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise LspError(f"no {method} notification; server stderr:\n"
                                   f"{self.stderr.decode(errors='replace')[-3000:]}")
                self._lock.wait(left)

    # -- what an editor does -----------------------------------------------------------------------

    def initialize(self, root: Path, encodings: list[str] | None = None) -> dict:
        general = {"positionEncodings": encodings} if encodings else {}
        result = self.request("initialize", {
            "processId": os.getpid(), "rootUri": root.as_uri(),
            "capabilities": {
                "general": general,
                "textDocument": {
                    "publishDiagnostics": {"relatedInformation": True},
                    "hover": {"contentFormat": ["markdown", "plaintext"]},
                    "completion": {"completionItem": {"snippetSupport": True}},
                    "codeAction": {"codeActionLiteralSupport": {
                        "codeActionKind": {"valueSet": ["quickfix"]}}},
                    "documentSymbol": {"hierarchicalDocumentSymbolSupport": True},
                }}})
        self.notify("initialized", {})
        return result

    def open(self, path: Path, text: str | None = None, version: int = 1) -> str:
        uri = path.resolve().as_uri()
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "genba", "version": version,
            "text": path.read_text(encoding="utf-8") if text is None else text}})
        return uri

    def change(self, uri: str, text: str, version: int) -> None:
        self.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                               "contentChanges": [{"text": text}]})

    def diagnostics(self, uri: str, version: int | None = None, after: int = 0) -> list[dict]:
        return self.wait_for("textDocument/publishDiagnostics",
                             lambda p: p["uri"] == uri and (version is None
                                                            or p.get("version") == version),
                             after=after)["diagnostics"]

    def at(self, uri: str, line: int, character: int) -> dict:
        return {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}

    def shutdown(self, timeout: float = 30) -> int:
        self.request("shutdown")
        self.notify("exit")
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
