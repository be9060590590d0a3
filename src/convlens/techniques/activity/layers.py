"""`layers`: every layer of a model with its output shape and receptive field, as a result."""
from __future__ import annotations

from typing import Sequence

from ...lens import LayersResult, as_lens


def layers(lens, names: str | Sequence[str] | None = None) -> LayersResult:
    """The layer table of `lens` (one dry run at its input size): every named module, or only
    `names`, with its type, output shape and receptive field (`Lens.layers`).

    Example::

        res = layers(lens)
        res.layers            # name, type, shape, rf_size, rf_stride, rf_center
    """
    lens = as_lens(lens, None)
    if names is None:
        infos = lens.layers()
    else:
        names = [names] if isinstance(names, str) else list(names)
        for name in names:
            lens.layer(name)  # an unknown name: error naming the close matches
        infos = [i for i in lens.layers(fields=names) if i.name in names]
    return LayersResult(infos)
