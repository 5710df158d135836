"""Saving and loading pruned models (the hand-off to the TVM side)."""

from patsparse.export.checkpoint import PrunedModel, load_pruned, save_pruned

__all__ = ["PrunedModel", "load_pruned", "save_pruned"]
