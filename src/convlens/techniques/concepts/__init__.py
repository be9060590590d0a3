"""Concepts: what do the units mean? (METHODS.md, "Network dissection", "TCAV"; issue 27.)

`dissection` (the streaming threshold and IoU counts), `labels` (the concepts a dataset labels
per pixel) and `tcav` (concept activation vectors) are the compute core; `dissect` is the view
(two passes on the engine).
"""
from ...views import View, register

_RESULT = "techniques.concepts.results:DissectionResult"

VIEWS = register(
    View(name="dissect", section=2, title="network dissection",
         line="which concept each unit detects: IoU of its top activations with labelled "
              "masks",
         function="techniques.concepts.dissect:dissect", result=_RESULT,
         inputs=None, takes="data", quick={"n": 8},
         demo="techniques.concepts.demo:step_dissect",
         exports={"DissectionResult": _RESULT,
                  "rotated": "techniques.concepts.dissect:rotated"}),
    View(name="tcav", section=2, title="TCAV",
         line="how much each class depends on concepts given as example images",
         function="techniques.concepts.testing:tcav",
         result="techniques.concepts.results:TcavResult", inputs=None, takes="data",
         quick={"runs": 2, "n_random": 4, "n": 16, "classes": [0]},
         demo="techniques.concepts.demo:step_tcav",
         exports={"TcavResult": "techniques.concepts.results:TcavResult",
                  "concept_sets": "techniques.concepts.testing:concept_sets"}),
)
