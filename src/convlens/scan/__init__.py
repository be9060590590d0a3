"""The dataset pass as a map-reduce (DESIGN.md): reducers and the engines that run them."""
from .engine import local_pass
from .reducers import ActivationStats, Reducer, channel_maps

__all__ = ["local_pass", "Reducer", "ActivationStats", "channel_maps"]
