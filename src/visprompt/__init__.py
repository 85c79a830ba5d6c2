"""visprompt: reproducible replications of VPT, Visual Prompting and RPO.

Two profiles run the same code: ``mini`` (offline, CPU, a procedural image world with tiny
backbones pretrained by the pipeline) and ``paper`` (GPU, real datasets and checkpoints).
"""

from .cpu_numerics import pin_cpu_numerics

pin_cpu_numerics()  # before anything imports torch: see cpu_numerics.py

__version__ = "0.1.0"
