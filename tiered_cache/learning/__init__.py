"""Offline learning for the L1's ``learned`` policy: train from recorded history.

Pure Python, numpy and scikit-learn (imported when a function runs); no
Django, so a management command, a notebook or a batch job can call it.
"""

from .train import TrainReport, read_history, train_from_history

__all__ = ["TrainReport", "read_history", "train_from_history"]
