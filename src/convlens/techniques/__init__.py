"""The views, one family per folder in the seed's order (docs/architecture.md).

Each family's ``__init__`` declares its views once (`convlens.views.View`, registered with
`convlens.views.register`) and imports neither torch nor its compute modules, so listing the
views is cheap. `all_views()` finds every family.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..views import REGISTRY, View


def families() -> list[str]:
    """The family folders under ``techniques/``."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)


def all_views() -> list[View]:
    """Every view of every family, in the seed's order (section, then declaration)."""
    for fam in families():
        importlib.import_module(f"{__name__}.{fam}")
    return sorted(REGISTRY, key=lambda v: v.section)
