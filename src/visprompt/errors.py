"""One exception type for bad input, so the CLI and notebooks can print a clean message.

Every check that can fail before long work starts raises :class:`ConfigError` with a message that
names the offending key or file *and* the fix.
"""


class ConfigError(ValueError):
    """Bad parameters, names or files, detected before any expensive work."""


def unknown_name(kind: str, name: str, known) -> ConfigError:
    """Error for an unknown registry name that lists the valid choices."""
    known = sorted(known)
    return ConfigError(f"unknown {kind} {name!r}; choose one of: {', '.join(known)}")
