"""Faithfulness: which map can I trust? (METHODS.md, "Faithfulness"; issue 26.) Every
attribution method's maps scored over a dataset by perturbing the image in the map's order or
at random and watching the model: deletion and insertion (RISE), ROAD (MoRF and LeRF, noisy
linear imputation), average drop and increase in confidence (Grad-CAM++), infidelity and
max-sensitivity (Yeh et al. 2019), the pointing game and energy in the mask, and the
randomisation check (Adebayo et al. 2018), each with a bootstrap interval over images.

`metrics`, `robustness` and `substrates` are the compute core (tensors in, scores out);
`faithfulness` is the view: the dataset pass and its reducer.
"""
from ...views import View, register

_RESULT = "techniques.faithfulness.results:FaithfulnessResult"

VIEWS = register(
    View(name="faithfulness", section=5, title="faithfulness",
         line="which map can I trust: every method scored by deletion, insertion, ROAD, ...",
         function="techniques.faithfulness.faithfulness:faithfulness", result=_RESULT,
         inputs=None, takes="data",
         quick={"n": 2, "methods": ["saliency", "grad_cam", "random"], "steps": 2,
                "fractions": [0.5], "samples": 2, "sensitivity_samples": 1, "n_boot": 20},
         demo="techniques.faithfulness.demo:step_faithfulness",
         exports={"FaithfulnessResult": _RESULT}),
)
