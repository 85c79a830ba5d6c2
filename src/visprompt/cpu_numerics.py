"""The same floating-point bits on every x86 machine: pin the CPU code paths before torch loads.

torch picks its vectorised kernels (ATen), its matrix products (MKL) and its convolutions (oneDNN)
by the instructions the CPU offers, so an AVX-512 machine and an AVX2 machine round differently;
in the mini run a last-bit difference in the pretrained backbones moved grid choices and numbers
by several points. Capping all three at AVX2 (``ATEN_CPU_CAPABILITY``, MKL's conditional numerical
reproducibility ``MKL_CBWR``, ``ONEDNN_MAX_CPU_ISA``), with a fixed thread count (``threads`` in
params.yaml), makes every AVX2-or-better x86 machine take the same paths. Variables a user has set
are kept; ``VISPROMPT_NATIVE_CPU=1`` keeps torch's own choice (faster on AVX-512, other bits).
Nothing is set on other CPUs (no AVX2: capping would ask for instructions they lack).
"""

from __future__ import annotations

import os
import platform

PINS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def cpu_has_avx2() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("flags") and " avx2" in line for line in f)
    except OSError:
        return False


def pin_cpu_numerics(environ=os.environ) -> dict:
    """Set the AVX2 pins in ``environ`` where unset; return the pins in effect (empty if none)."""
    if environ.get("VISPROMPT_NATIVE_CPU") == "1" or not cpu_has_avx2():
        return {}
    for key, value in PINS.items():
        environ.setdefault(key, value)
    return {key: environ[key] for key in PINS}
