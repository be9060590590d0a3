"""Placeholder: the faithfulness family has no demo yet (issue 26, part two; see
`metrics` and `robustness` for the compute core)."""
