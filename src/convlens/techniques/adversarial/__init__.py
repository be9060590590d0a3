"""Fooling ConvNets (the seed's §9): one step along the sign of the loss gradient (`fgsm`), many
small steps inside the ε-ball (`pgd`), the smallest change that makes the model answer a chosen
class (`fool`), and accuracy against ε over a dataset (`robustness`)."""
from __future__ import annotations

from ...views import Option, View, register


def _method(value: str) -> str:
    """A map's method as the API spells it (``guided-backprop`` -> ``guided_backprop``)."""
    return value.replace("-", "_")


_RESULTS = "techniques.adversarial.results"
_EXPLAIN = Option("--explain", type=_method, choices=("saliency", "guided_backprop"),
                  help="also map x and x_adv (saliency or guided-backprop; default: none)")
_LABEL = Option("--label", metavar="CLASS", kwarg="y",
                help="the class to push each image away from, an index or a name (default: "
                     "the model's answer); with --targeted, the class to step toward")
_TARGETED = Option("--targeted", action="store_true",
                   help="step toward --label instead of away from it")

VIEWS = register(
    View(name="fgsm", section=9, title="fast gradient sign",
         line="one step of size ε along the sign of the loss gradient",
         function="techniques.adversarial.attacks:fgsm", result=f"{_RESULTS}:AdversarialExamples",
         options=(Option("--eps", type="unit_interval", default=8 / 255,
                         help="the step, pixels in [0, 1] (default 8/255)"),
                  _LABEL, _TARGETED, _EXPLAIN),
         quick={"eps": 0.03},
         exports={"AdversarialExamples": f"{_RESULTS}:AdversarialExamples"}),
    View(name="pgd", section=9, title="iterative attack (PGD)",
         line="many small gradient-sign steps inside the ε-ball",
         function="techniques.adversarial.attacks:pgd", result=f"{_RESULTS}:AdversarialExamples",
         options=(Option("--eps", type=float, default=8 / 255,
                         help="the ball's radius, pixels in [0, 1] (default 8/255)"),
                  Option("--alpha", type=float, default=None,
                         help="the step, pixels in [0, 1] (default 2.5 eps / steps)"),
                  Option("--steps", type="positive_int", default=10,
                         help="iterations (default 10)"),
                  Option("--norm", choices=("linf", "l2"), default="linf",
                         help="the ball (default linf)"),
                  Option("--no-random-start", action="store_false", kwarg="random_start",
                         help="start from the image itself (the basic iterative method); else "
                              "from a random point of the eps-ball"),
                  _LABEL, _TARGETED, _EXPLAIN),
         quick={"eps": 0.03, "steps": 2}),
    View(name="fool", section=9, title="fooling",
         line="the smallest change that makes the model predict a chosen class",
         function="techniques.adversarial.fooling:fool", result=f"{_RESULTS}:AdversarialExamples",
         inputs=None, takes="images", quick={"target": 1, "steps": 3, "search": 1},
         demo="techniques.adversarial.demo:step_fool"),
    View(name="robustness", section=9, title="robustness",
         line="accuracy and confidence against the size ε of an attack",
         function="techniques.adversarial.robustness:robustness",
         result=f"{_RESULTS}:RobustnessResult", inputs=None, takes="data",
         quick={"eps": [0, 0.05], "n": 8},
         demo="techniques.adversarial.demo:step_robustness",
         exports={"RobustnessResult": f"{_RESULTS}:RobustnessResult"}),
)
