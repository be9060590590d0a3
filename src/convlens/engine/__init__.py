"""The dataset pass as a map-reduce (DESIGN.md): the reducer protocol, the local engine with
checkpoints, and the Ray engine (`convlens.engine.ray`).

The engine knows reducers, never techniques: each technique owns its reducers (statistics,
top-k images, codes, predictions, robustness) and hands them to `run_local` or `run_ray`.
"""
from .checkpoint import Checkpoint, PassInfo, fingerprint_model, fingerprint_order
from .local import feed, local_pass, model_device, progress_bar, run_local
from .passes import item_order, pass_checkpoint, run_pass
from .reducer import Reducer, Slots, channel_maps, shared
from .settings import RunSettings, as_run

__all__ = ["Reducer", "Slots", "channel_maps", "shared", "Checkpoint", "PassInfo",
           "fingerprint_model", "fingerprint_order", "feed", "local_pass", "model_device",
           "progress_bar", "run_local", "RunSettings", "as_run", "item_order", "pass_checkpoint",
           "run_pass"]
