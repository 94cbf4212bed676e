"""The machine a benchmark ran on: CPU, cores, memory, GPU and library versions, read without importing TF."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from export.manifest import library_versions, utc_now

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "fp16")


def _cpuinfo() -> tuple[str, list[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.lower().startswith(("model name", "hardware", "cpu model"))), platform.machine())
    flags_line = next((line.split(":", 1)[1] for line in text.splitlines() if line.startswith(("flags", "Features"))), "")
    flags = set(flags_line.split())
    return model, [flag for flag in CPU_FLAGS if flag in flags]


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    return None


def _gpus() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        output = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in output.splitlines() if line.strip()]


def describe() -> dict:
    """What a reader needs to compare these numbers with their own."""
    import onnxruntime

    model, flags = _cpuinfo()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"date": utc_now(), "cpu": model, "cpu_flags": flags, "logical_cores": os.cpu_count(),
            "usable_cores": usable, "memory_gib": _memory_gib(), "gpus": _gpus(),
            "onnxruntime_providers": onnxruntime.get_available_providers(),
            "platform": platform.platform(), "versions": library_versions()}


def one_line(environment: dict) -> str:
    """``2-core AMD EPYC ... (avx2, avx512_vnni), 23 GiB, no GPU``."""
    gpus = ", ".join(environment["gpus"]) or "no GPU"
    flags = f" ({', '.join(environment['cpu_flags'])})" if environment["cpu_flags"] else ""
    return (f"{environment['usable_cores']}-core {environment['cpu']}{flags}, {environment['memory_gib']} GiB, {gpus}; "
            f"Python {environment['versions']['python']}")
