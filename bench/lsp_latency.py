"""Benchmark: how soon `genbac lsp` publishes diagnostics after a change to the GENBA example.

A real client (tests/lsp/lsp_client.py) starts `genbac lsp --stdio`, opens
examples/llama-genba-10b.genba and sends --changes full-text changes, each a different edit a user
makes (the batch size, Bavarian's entry point, a comment: every one a new plan, alternating with
edits that make it an error). For each change the latency is the wall time from writing the
didChange message to reading the publishDiagnostics of that version: transport, pygls, parse,
lowering, planning and conversion together. Also shown: the cold start, from starting the process
to the first diagnostics of the opened file. The first --warmup changes are not counted (warm
means: the server process has run a few checks).

Floors measured in the same run:
- round trip: a hover over the file's first comment line (the document already analysed, nothing
  to say): the client, the pipes and pygls without genbac's work;
- check in process: `genbac.lsp.analysis.analyse` of the same texts, called directly (no server).

Target (issue 11): p95 <= 50 ms.
Usage: .venv/bin/python bench/lsp_latency.py [--changes 300] [--warmup 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "lsp"))

from lsp_client import Client  # noqa: E402

GENBA = ROOT / "examples" / "llama-genba-10b.genba"


def variants(text: str, n: int) -> list[str]:
    """n edited texts, each different from the one before."""
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append(text.replace("batch     = 480", f"batch     = {400 + i % 97}"))
        elif kind == 1:
            out.append(text.replace("enter  = 90%", f"enter  = {50 + i % 45}%"))
        elif kind == 2:
            out.append(text.replace("enter  = 90%", f"enter  = {50 + i % 45}"))  # an error
        else:
            out.append(text.replace("# Llama-GENBA-10B", f"# Llama-GENBA-10B ({i})"))
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    text = GENBA.read_text()
    texts = variants(text, args.changes + args.warmup)
    started = time.perf_counter()
    client = Client(cwd=ROOT)
    client.initialize(ROOT)
    uri = client.open(GENBA)
    client.diagnostics(uri, 1)
    cold = time.perf_counter() - started

    latencies, round_trips = [], []
    for version, changed in enumerate(texts, start=2):
        seen = len(client.notifications)
        sent = time.perf_counter()
        client.change(uri, changed, version)
        client.diagnostics(uri, version, after=seen)
        arrived = next(t for m, p, t in client.notifications[seen:]
                       if m == "textDocument/publishDiagnostics" and p.get("version") == version)
        start = time.perf_counter()
        client.request("textDocument/hover", client.at(uri, 0, 0))
        floor = time.perf_counter() - start
        if version - 2 >= args.warmup:
            latencies.append(arrived - sent)
            round_trips.append(floor)
    code = client.shutdown()

    from genbac.lsp.analysis import analyse, editor_reader

    read = editor_reader(str(ROOT), {})
    in_process = []
    for changed in texts[args.warmup:]:
        start = time.perf_counter()
        analyse(changed, str(GENBA), read)
        in_process.append(time.perf_counter() - start)

    def row(name, values):
        ms = [1000 * v for v in values]
        return (f"| {name} | {statistics.median(ms):.1f} | {percentile(ms, 95):.1f} | "
                f"{max(ms):.1f} |")

    print(f"genba example, {len(latencies)} changes after {args.warmup} warm-up, server exit "
          f"{code}")
    print("| | p50 ms | p95 ms | max ms |")
    print("|---|---:|---:|---:|")
    print(f"| cold: process start -> first diagnostics | {1000 * cold:.0f} | | |")
    print(row("change -> diagnostics (server)", latencies))
    print(row("floor: hover round trip (no work)", round_trips))
    print(row("floor: check in process (no server)", in_process))
    p95 = 1000 * percentile(latencies, 95)
    print(f"p95 {p95:.1f} ms against the 50 ms target: {'met' if p95 <= 50 else 'NOT met'}; "
          f"p50 {statistics.median(latencies) / statistics.median(in_process):.2f}x the check "
          f"in process")


if __name__ == "__main__":
    main()
