"""Pages for the views that need more than the generic run page."""
from __future__ import annotations
