"""The dataset pass as a map-reduce (DESIGN.md): reducers and the engines that run them.

`convlens.techniques.topk.scan` is the function users call; this package holds its parts:
reducers (`TopK`, `Directions`, `ActivationStats`, `Codes`, `Predictions`), the local engine
with checkpoints (`run_local`, `local_pass`), the Ray engine (`ray_engine.run_ray`), the
`ScanResult` folder format and the receptive-field patches (`unit_patches`).
"""
from .engine import Checkpoint, PassInfo, feed, local_pass, run_local
from .patches import UnitsResult, cut_patch, unit_patches
from .reducers import (ActivationStats, Codes, Directions, Predictions, Reducer, Slots, TopK,
                       channel_maps, direction_vectors, select_topk)
from .result import ScanResult

__all__ = ["local_pass", "run_local", "feed", "Checkpoint", "PassInfo", "Reducer",
           "ActivationStats", "TopK", "Directions", "Codes", "Predictions", "Slots",
           "channel_maps", "direction_vectors", "select_topk", "ScanResult", "UnitsResult",
           "unit_patches", "cut_patch"]


class _CallableModule(type(__import__("sys"))):
    """`convlens.scan` is both this package and the public function `scan` (DESIGN.md): once
    the package is imported, Python binds the name to it, so calling it runs the scan."""

    def __call__(self, *args, **kwargs):
        from ..techniques.topk import scan
        return scan(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
