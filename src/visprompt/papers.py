"""The three papers this project replicates and the backbone family each adapts.

A leaf module (no imports) so that the command line, the params schema, the launcher and the
runner share one list without the light modules importing torch through the runner.
"""

PAPERS = {"vpt": "vit", "vp": "clip", "rpo": "clip"}  # paper -> backbone family
