"""pyplot for writing image files, defined once for every stage that draws (training snapshots, reports)."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot with the non-interactive Agg backend, selected lazily (on first use, never at
    import time, so importing a stage does not import matplotlib)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
