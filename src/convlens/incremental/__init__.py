"""Incremental re-inference after a local change of the input, exact (torch.fx).

Krypton (Nakandala, Kumar & Papakonstantinou, "Incremental and Approximate Inference for Faster
Occlusion-based Deep CNN Explanations", SIGMOD 2019, https://arxiv.org/abs/1904.03356): the clean
image's output of every node of the model's graph is kept; for a batch of copies of the image
that differ from it in one rectangle each, only the region each copy changes is recomputed,
layer by layer, and the rest is read from the clean outputs. Occlusion
(`convlens.techniques.occlusion.occlusion`) is its user.

* `regions`: what a node's value is for the batch (clean, changed in one rectangle per copy, or
  full) and the interval arithmetic of the changed regions (which outputs of a conv or pool
  layer a changed input reaches; one rectangle size for the batch; Krypton's threshold tau);
* `ops`: the table of operations (which ops keep the region, which act on crops, which
  combine two changed tensors, and what a layer costs);
* `graph`: the traced graph and its clean pass (every node's output for the clean image);
* `engine`: the interpreter, `IncrementalEngine`, which runs a batch of changed copies node by
  node. Any operation it does not know (flatten, linear, adaptive pooling, ...) gets the full
  tensors and runs as usual from there on, so an unknown op costs speed, never correctness.
"""
from __future__ import annotations

from .engine import IncrementalEngine, channel_total

__all__ = ["IncrementalEngine", "channel_total"]
