"""The gradient family (the seed's §5, "The data gradient and friends"): one backward pass from
a target (a class score or a unit) to the pixels, with a rule at each ReLU (saliency,
DeconvNet, guided backprop), at a conv layer (Grad-CAM), averaged over noise (SmoothGrad) or
along a path (integrated gradients); and the sanity check of them all (cascading
randomisation)."""
from ...views import Option, View, register

_MAPS = "techniques.gradients.results:GradientMaps"
#: the options of every method, also used by the hand-written commands (commands/gradients.py)
TARGET = Option("--target", type="target", default="auto",
                 metavar="CLASS|auto|LAYER:CHANNEL[:Y:X]",
                 help="what to explain: auto (the predicted class, default), a class index or "
                      "name (score before softmax), or one unit of a layer, e.g. "
                      "features.11:5 (at its strongest position) or features.11:5:3:4")
LAYER = Option("--layer", metavar="NAME",
                help="conv layer for Grad-CAM (default: the last conv block's output)")

VIEWS = register(
    View(name="saliency", section=5, title="saliency",
         line="the gradient of the class score with respect to the pixels",
         function="techniques.gradients.gradients:saliency", result=_MAPS,
         options=(TARGET,), demo="techniques.gradients.demo:saliency_step",
         exports={"Unit": "techniques.gradients.targets:Unit", "GradientMaps": _MAPS,
                  "pointing_game": "techniques.gradients.localisation:pointing_game",
                  "energy_in_mask": "techniques.gradients.localisation:energy_in_mask"}),
    View(name="deconvnet", section=5, title="DeconvNet",
         line="the target projected back to the pixels, positive signal only",
         function="techniques.gradients.gradients:deconvnet", result=_MAPS,
         options=(TARGET,), demo="techniques.gradients.demo:deconvnet_step"),
    View(name="guided_backprop", section=5, title="guided backprop",
         line="the gradient through active units, positive signal only",
         function="techniques.gradients.gradients:guided_backprop", result=_MAPS,
         options=(TARGET,), demo="techniques.gradients.demo:guided_backprop_step"),
    View(name="grad_cam", section=5, title="Grad-CAM",
         line="where in the last conv layer the class evidence lies",
         function="techniques.gradients.cam:grad_cam", result=_MAPS,
         options=(TARGET, LAYER), demo="techniques.gradients.demo:grad_cam_step"),
    View(name="guided_grad_cam", section=5, title="guided Grad-CAM",
         line="guided backprop times Grad-CAM",
         function="techniques.gradients.cam:guided_grad_cam", result=_MAPS,
         options=(TARGET, LAYER), demo="techniques.gradients.demo:guided_grad_cam_step"),
    # hand-written commands (commands/gradients.py): --method's choices, --seed and a
    # --baseline that is a word or a number are more than a plain mapping of options
    View(name="smoothgrad", section=5, title="SmoothGrad",
         line="a gradient map averaged over noisy copies of the image",
         function="techniques.gradients.smoothing:smoothgrad", result=_MAPS,
         kinds=("smoothgrad*",), inputs=None, takes="images", quick={"samples": 2},
         demo="techniques.gradients.demo:smoothgrad_step"),
    View(name="integrated_gradients", section=5, title="integrated gradients",
         line="each pixel's share of the score, from a baseline",
         function="techniques.gradients.smoothing:integrated_gradients", result=_MAPS,
         inputs=None, takes="images", quick={"steps": 4},
         demo="techniques.gradients.demo:integrated_gradients_step"),
    View(name="cascading_randomization", section=5, title="sanity checks",
         line="how each map changes as the model's weights are randomised",
         function="techniques.gradients.sanity:cascading_randomization",
         result="techniques.gradients.results:SanityCheck", kinds=("sanity_check",),
         inputs=None, takes="images", quick={"methods": ("saliency",)},
         exports={"SanityCheck": "techniques.gradients.results:SanityCheck"}),
)
