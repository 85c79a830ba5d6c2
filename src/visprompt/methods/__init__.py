"""Adaptation methods of the three papers and their baselines, behind one registry.

See :mod:`visprompt.methods.registry` for the protocol every method follows.
"""

from .registry import create_method, get_method_spec, list_methods, register_method

__all__ = ["create_method", "get_method_spec", "list_methods", "register_method"]
