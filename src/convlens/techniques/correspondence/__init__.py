"""Correspondence (the seed's §7, "How much spatial information is preserved"): keypoint
transfer by nearest neighbour in each layer's features, scored by PCK against raw pixels and
SIFT (Long, Zhang & Darrell 2014), on warped copies or intra-class pairs."""
from __future__ import annotations

from ...views import View, register

VIEWS = register(
    View(name="correspondence", section=7, title="correspondence",
         line="how well features find the same point in another image",
         function="techniques.correspondence.correspondence:correspondence",
         result="techniques.correspondence.results:CorrespondenceResult",
         inputs=None, takes="model",
         quick={"data": "builtin:shapes:test:24", "n": 2, "baselines": (), "examples": 1},
         demo="techniques.correspondence.demo:step_correspondence",
         exports={"CorrespondenceResult":
                  "techniques.correspondence.results:CorrespondenceResult"}),
)
