"""The class-activation-map family after Grad-CAM (METHODS.md, "Beyond the seed"): the maps
of a conv layer weighted towards a target, by gradients (Grad-CAM++, XGrad-CAM, HiResCAM,
Layer-CAM), by the scores of perturbed inputs (Score-CAM, Ablation-CAM) or by the layer's
principal direction (Eigen-CAM). Same targets, layer rule, result type and command as
Grad-CAM (the gradient family's `grad_cam`), which this family composes."""
from ...views import Option, View, register
from .. import gradients as _gradients  # noqa: F401  (declared first: the CAMs follow Grad-CAM)

_MAPS = "techniques.cams.results:CamMaps"
#: the options of every CAM (as Grad-CAM's: techniques/gradients/__init__.py)
TARGET = Option("--target", type="target", default="auto",
                metavar="CLASS|auto|LAYER:CHANNEL[:Y:X]",
                help="what to explain: auto (the predicted class, default), a class index or "
                     "name (score before softmax), or one unit of a layer, e.g. features.11:5")
LAYER = Option("--layer", metavar="NAME",
               help="conv layer (default: the last conv block's output, as Grad-CAM)")
BATCH = Option("--batch-size", type="positive_int", default=32, metavar="B",
               help="masked or ablated copies per forward pass (default 32)")
MAX_CHANNELS = Option("--max-channels", type="positive_int", metavar="N",
                      help="Faster-Score-CAM: mask with only each image's N most varying "
                           "channels (default: all of them, the paper's Score-CAM)")


def _cam(name: str, title: str, line: str, module: str, options=(TARGET, LAYER), **kw) -> View:
    return View(name=name, section=5, title=title, line=line,
                function=f"techniques.cams.{module}:{name}", result=_MAPS, options=options,
                demo=f"techniques.cams.demo:{name}_step", **kw)


VIEWS = register(
    _cam("grad_cam_plus_plus", "Grad-CAM++",
         "Grad-CAM with higher-order weights, for several instances of a class", "gradcams",
         exports={"CamMaps": _MAPS}),
    _cam("xgrad_cam", "XGrad-CAM", "Grad-CAM with activation-weighted gradients", "gradcams"),
    _cam("hires_cam", "HiResCAM", "gradient times activation at each position, not averaged",
         "gradcams"),
    _cam("layer_cam", "Layer-CAM", "each position weighted by its own positive gradient",
         "gradcams"),
    _cam("score_cam", "Score-CAM", "channels weighted by the score of the image they mask",
         "perturb", options=(TARGET, LAYER, BATCH, MAX_CHANNELS),
         quick={"batch_size": 64}),
    _cam("ablation_cam", "Ablation-CAM", "channels weighted by the score drop when removed",
         "perturb", options=(TARGET, LAYER, BATCH), quick={"batch_size": 64}),
    _cam("eigen_cam", "Eigen-CAM", "the layer's first principal direction, no gradient, no class",
         "perturb"),
)
