"""The rows of `benchmarks/bench.py`: one module per family, each with ``rows(ctx)``.

Every row times convlens against its baseline or peer in the same process, on the same inputs,
and says how far their outputs are apart (`base.Row`). `bench.py` runs them and writes one
table in Markdown and JSON.
"""
FAMILIES = ("scan", "concepts", "gradients", "cams", "occlusion", "adversarial", "featvis",
            "correspondence", "faithfulness", "tsne")
