"""The occlusion family (the seed's §4, "Occluding parts of the image"): p(target), the most
probable class and a feature map's activation as a square occluder slides over the image
(Zeiler & Fergus 2014), exact or with Krypton's incremental inference."""
from ...views import View, register

VIEWS = register(
    View(name="occlusion", section=4, title="occlusion",
         line="the class probability as a grey square hides each part",
         function="techniques.occlusion.occlusion:occlusion",
         result="techniques.occlusion.results:OcclusionResult",
         inputs=None,  # hand-written (commands/occlusion.py): it names each input file
         takes="images", quick={"window": 32, "stride": 32},
         demo="techniques.occlusion.demo:occlusion_step",
         exports={"OcclusionResult": "techniques.occlusion.results:OcclusionResult"}),
)
