"""Performance as a function of image attributes (the seed's §8): accuracy per bin of each
attribute of the items (object scale, clutter, occlusion, ...; computed from the pixels where
the data has none; or per class), models side by side, with bootstrap intervals and a logistic
regression on all attributes at once (`attribute_performance`)."""
from __future__ import annotations

from ...views import View, register

VIEWS = register(
    View(name="attribute_performance", section=8, title="accuracy by attribute",
         line="accuracy binned by object scale, clutter, occlusion, ...",
         function="techniques.attributes.attributes:attribute_performance",
         result="techniques.attributes.results:AttributeResult", kinds=("attributes",),
         inputs=None, takes="scan", quick={"n_resamples": 50},
         demo="techniques.attributes.demo:step_attribute_performance",
         exports={"AttributeResult": "techniques.attributes.results:AttributeResult",
                  "image_attributes": "techniques.attributes.image_stats:image_attributes"}),
)
