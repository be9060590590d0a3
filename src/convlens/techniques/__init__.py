"""The views, one family per folder in the seed's order (docs/architecture.md).

Each family's ``__init__`` declares its views once (`convlens.views.View`, registered with
`convlens.views.register`) and imports neither torch nor its compute modules, so listing the
views is cheap. `all_views()` finds every family.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..views import REGISTRY, View

#: the families in the seed's order; within a section, a family before those that compose it
#: (gradients, then the CAM family, then faithfulness, which scores both)
ORDER = ("activity", "units", "tsne", "occlusion", "gradients", "cams", "faithfulness",
         "synthesis", "correspondence", "attributes", "adversarial")


def families() -> list[str]:
    """The family folders under ``techniques/``, in `ORDER` (any other after them, by name)."""
    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)
    return [f for f in ORDER if f in found] + [f for f in found if f not in ORDER]


def all_views() -> list[View]:
    """Every view of every family, in the seed's order: section, then family (`ORDER`), then
    the order the family declares them. Stable whatever this process imported first."""
    rank = {}
    for i, fam in enumerate(families()):
        module = importlib.import_module(f"{__name__}.{fam}")
        for j, v in enumerate(getattr(module, "VIEWS", ())):
            rank[v.name] = (i, j)
    return sorted(REGISTRY, key=lambda v: (v.section, *rank.get(v.name, (len(rank), 0))))
