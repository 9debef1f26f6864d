"""Hardware profiles for estimates and capability checks. Every number is an assumption with a source.

Sources (shared/reference/genba.md §4): CS-2 dense FP16 ≈ 7.5 PFLOP/s (Andromeda's 120 PF / 16);
CS-3 taken as 2x CS-2 (Cerebras' own generation claim; its "125 PF" is a sparse figure); H100 SXM
989.4 TFLOP/s dense BF16, 700 W; A100 SXM 312 TFLOP/s, 400 W. The CS-2 utilisation (25%) and power
(22.24 kW) are calibrated on the Llama-GENBA-10B run: 35.23 MWh over 66 days is 22.24 kW on average,
and 25% of 7.5 PF reproduces its 66 days within 3% (see README, "Estimates"). GPU utilisation is the
common 40% MFU of well-tuned LLM training; the CPU figures are a rough laptop/server-core guess.
"""

from __future__ import annotations

from typing import NamedTuple

from genbac.spec.ir import HARDWARE_KINDS


class Profile(NamedTuple):  # a named tuple, not a dataclass: cheaper to define at start-up
    kind: str
    peak_flops: float  # per device, dense bf16/fp16
    utilisation: float  # assumed model-FLOPs utilisation
    power_kw: float  # per device, while training
    memory_gb: float | None  # per device, for weights + optimizer state; None = weight streaming
    precisions: tuple[str, ...]
    source: str


PROFILES = {
    p.kind: p
    for p in (
        Profile("cs-2", 7.5e15, 0.25, 22.24, None, ("bf16", "fp16"),
                "CS-2: 7.5 PF dense (Andromeda/16); 25% and 22.24 kW calibrated on Llama-GENBA-10B"),
        Profile("cs-3", 15e15, 0.25, 23.0, None, ("bf16", "fp16"),
                "CS-3: assumed 2x CS-2 dense; 23 kW (press figures)"),
        # fp16 on GPUs needs loss scaling, which genbac's trainer does not do (GB170 says so)
        Profile("h100", 989.4e12, 0.40, 0.70, 80.0, ("bf16", "fp32"),
                "H100 SXM: 989.4 TF dense BF16, 700 W board power, 40% MFU assumed"),
        Profile("a100", 312e12, 0.40, 0.40, 80.0, ("bf16", "fp32"),
                "A100 SXM 80GB: 312 TF dense BF16, 400 W board power, 40% MFU assumed"),
        Profile("cpu", 1e12, 0.30, 0.20, None, ("bf16", "fp32"),
                "CPU: rough 1 TF peak, 30%, 200 W; for tiny rehearsals only"),
    )
}

assert tuple(PROFILES) == HARDWARE_KINDS, "a profile for every hardware kind, in their order"
