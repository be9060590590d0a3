"""Placeholder: the faithfulness family has no results yet (issue 26, part two; see
`metrics` and `robustness` for the compute core)."""
