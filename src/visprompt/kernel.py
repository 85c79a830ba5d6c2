"""Install the ``visprompt`` Jupyter kernel that the papermill stages and JupyterLab run on.

``python -m visprompt.kernel`` (``make setup`` runs it) writes ipykernel's own kernelspec into the
virtual environment, then quiets the kernel's *own* log: ipykernel ≥ 7 warns on every start that
the local TCP transport is unencrypted, a line that would otherwise open every stage's output.
Cell output, warnings raised by the code and errors are untouched.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NAME, DISPLAY_NAME = "visprompt", "Python (visprompt)"
QUIET = "--IPKernelApp.log_level=ERROR"


def install(prefix: str = sys.prefix) -> Path:
    from ipykernel.kernelspec import install as install_kernelspec

    path = Path(install_kernelspec(kernel_name=NAME, display_name=DISPLAY_NAME, prefix=prefix))
    spec_file = path / "kernel.json"
    spec = json.loads(spec_file.read_text())
    if QUIET not in spec["argv"]:
        spec["argv"].append(QUIET)
    spec_file.write_text(json.dumps(spec, indent=1) + "\n")
    return path


if __name__ == "__main__":
    print("installed kernelspec", install())
