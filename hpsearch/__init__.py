"""hpsearch: hyperparameter search for neural-network training, weighted by a checklist."""

from __future__ import annotations

__version__ = "0.2.0"

__all__ = ["__version__"]
