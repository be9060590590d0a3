"""How a dataset view runs: one `RunSettings` that every dataset view takes (``run=``) and the
command line builds once (`convlens.commands.common.run_from`), so that a view's signature holds
only what the view itself means.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class RunSettings:
    """How to run a pass over a dataset (not what it computes).

    Attributes:
        batch_size: images per batch. workers: data-loader processes.
        engine: ``"local"`` or ``"ray"`` (`convlens.engine.ray`).
        device: where the model runs for a Ray task (default: a GPU if the task got one);
            locally the model runs where it is (move the lens first).
        dtype: e.g. ``"bf16"``: the forward pass under autocast. channels_last: NHWC input.
        resume: continue from a checkpoint of the same run in the output folder.
        checkpoint_every: batches between checkpoints.
        shard_size, ray_address, ray_options: for the Ray engine.
        progress: show a progress bar.
    """

    batch_size: int = 64
    workers: int = 0
    engine: str = "local"
    device: Any = None
    dtype: Any = None
    channels_last: bool = False
    resume: bool = True
    checkpoint_every: int = 50
    shard_size: int | None = None
    ray_address: str | None = None
    ray_options: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    def but(self, **changes) -> RunSettings:
        """A copy with some settings changed: ``run.but(progress=False)``."""
        return replace(self, **changes)


def as_run(run: RunSettings | None = None, **overrides) -> RunSettings:
    """`run` (default settings when None), with `overrides` that are not None applied."""
    run = run if run is not None else RunSettings()
    changes = {k: v for k, v in overrides.items() if v is not None}
    return run.but(**changes) if changes else run
