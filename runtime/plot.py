"""The runtime's schedule plot (an MLflow artifact) is `genbac explain --plot`'s: one drawing."""

from genbac.compiler.plot import mixture_plot

__all__ = ["mixture_plot"]
