"""Receptive field of every named layer.

`structural`: the conv/pool arithmetic of one dry run (size, stride, centre per axis).
`gradient`: the support of input gradients on a surrogate network (`surrogate`, `attention`,
`marks`), exact on any graph, for the layers the arithmetic has no answer for (tokens, permutes,
upsampling, ...).
`field`: the `Field` itself, and its arithmetic through windows and where paths meet.
"""
from __future__ import annotations

from .field import IDENTITY, Field, field_at, through_window, union
from .gradient import gradient_fields
from .structural import dry_run

__all__ = ["IDENTITY", "Field", "dry_run", "field_at", "gradient_fields", "through_window", "union"]
