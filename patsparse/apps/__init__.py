"""The papers' real-time applications: super resolution, colorization, style transfer.

Each is an :class:`~patsparse.apps.base.App` trained on real photos
(:mod:`patsparse.apps.photos`), pruned, compiled and run by the shared machinery.
"""

from patsparse.apps.base import App, AppTrainConfig, Metric

__all__ = ["App", "AppTrainConfig", "Metric"]
