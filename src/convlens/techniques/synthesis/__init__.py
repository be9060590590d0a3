"""Synthesis (the seed's §6, "Reconstructing images from CNN codes"): images optimised through
the network (`convlens.optimize`): reconstructions from a layer's code (`invert`), the image
each class score likes best (`class_model`) and images that excite a unit or a channel
(`feature_visualization`)."""
from __future__ import annotations

from ...views import View, register

VIEWS = register(
    View(name="invert", section=6, title="inversion",
         line="images reconstructed from a layer's code",
         function="techniques.synthesis.inversion:invert",
         result="techniques.synthesis.results:InversionResult", kinds=("inversion",),
         inputs=None, takes="images", quick={"layers": ["1"], "steps": 2, "progress": False},
         demo="techniques.synthesis.demo:step_invert",
         exports={"InversionResult": "techniques.synthesis.results:InversionResult"}),
    View(name="class_model", section=6, title="class models",
         line="the image each class score likes best",
         function="techniques.synthesis.featvis:class_model",
         result="techniques.synthesis.results:ClassModelResult",
         inputs=None, takes="model", quick={"targets": [0, 1], "steps": 2, "progress": False},
         demo="techniques.synthesis.demo:step_class_model",
         exports={"ClassModelResult": "techniques.synthesis.results:ClassModelResult"}),
    View(name="feature_visualization", section=6, title="feature visualisation",
         line="images optimised to excite a unit or a channel",
         function="techniques.synthesis.featvis:feature_visualization",
         result="techniques.synthesis.results:FeatureVisResult", kinds=("featvis",),
         inputs=None, takes="model",
         quick={"objective": "1", "channels": [0, 1], "steps": 2, "progress": False},
         demo="techniques.synthesis.demo:step_feature_visualization",
         exports={"FeatureVisResult": "techniques.synthesis.results:FeatureVisResult"}),
)
