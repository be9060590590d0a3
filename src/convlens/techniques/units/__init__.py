"""The units family (the seed's §2): one pass over a dataset for the top images of every unit
(and of random directions), codes and predictions (`scan`), and the receptive-field patches of
a scanned layer's units (`unit_patches`). Also the codes the t-SNE family embeds and the
model's accuracy (`evaluate`: a command, no view)."""
from ...views import View, register

VIEWS = register(
    View(name="scan", section=2, title="scan",
         line="one pass over the data: dead channels, predictions, top images per unit",
         function="techniques.units.scan:scan", result="techniques.units.results:ScanResult",
         inputs=None, takes="data", quick={"n": 8, "topk": 2}, page="scan",
         demo="techniques.units.demo:scan",
         exports={"ScanResult": "techniques.units.results:ScanResult",
                  "cnn_codes": "techniques.units.codes:cnn_codes",
                  "codes_from_scan": "techniques.units.codes:codes_from_scan",
                  "Codes": "techniques.units.codes:Codes",
                  "evaluate": "techniques.units.evaluate:evaluate",
                  "Evaluation": "techniques.units.evaluate:Evaluation"}),
    View(name="unit_patches", section=2, title="top images per unit",
         line="the receptive-field patches that excite each unit most",
         function="techniques.units.patches:unit_patches",
         result="techniques.units.results:UnitsResult", kinds=("units",),
         inputs=None, takes="scan", page="units", demo="techniques.units.demo:unit_patches",
         exports={"UnitsResult": "techniques.units.results:UnitsResult"}),
)
