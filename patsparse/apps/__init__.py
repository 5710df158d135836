"""The papers' real-time applications: super resolution, colorization, style transfer.

Each is an :class:`~patsparse.apps.base.App` trained on real photos
(:mod:`patsparse.apps.photos`), pruned, compiled and run by the shared machinery.
"""

from patsparse.apps.base import App, AppTrainConfig, Metric
from patsparse.apps.registry import APP_NAMES, APPS, get_app

__all__ = ["APPS", "APP_NAMES", "App", "AppTrainConfig", "Metric", "get_app"]
