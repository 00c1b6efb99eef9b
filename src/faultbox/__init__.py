"""faultbox: prove that a system keeps its promises when things break.

A spec (`.star`) declares services, faults, scenarios and invariants; `faultbox test spec.star` runs
them against real processes. The Python API is small on purpose:

    from faultbox import load_spec, run_spec, RunOptions
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
