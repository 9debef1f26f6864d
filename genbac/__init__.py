"""genbac: compile continual-pretraining experiment specs (.genba) into runnable experiments."""

__version__ = "0.1.0"
