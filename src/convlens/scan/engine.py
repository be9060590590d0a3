"""Running reducers over a dataset."""
from __future__ import annotations

from typing import Sequence

import torch

from ..data import Loader
from ..hooks import capture, preserved
from .reducers import Reducer


@torch.no_grad()
def local_pass(lens, data, reducers: Sequence[Reducer], batch_size: int = 64, workers: int = 0,
               progress: bool = True, desc: str = "scan", indices=None) -> Loader:
    """Stream `data` through `lens` once (eval mode) and feed every reducer each batch.

    Returns the loader, whose ``skipped`` lists the files that could not be read.
    """
    if data.lens is None:
        data.with_lens(lens)
    layers = sorted({name for r in reducers for name in r.layers})
    loader = Loader(data, batch_size=batch_size, workers=workers, progress=progress, desc=desc,
                    indices=indices)
    with preserved(lens):
        lens.eval()
        with capture(lens, layers) as cap:
            for batch in loader:
                cap.clear()
                logits = lens(batch.images)
                acts = {name: cap[name] for name in layers}
                for r in reducers:
                    r.update(batch, acts, logits)
    return loader
