"""convlens: see what a convolutional network has learned.

The public API: load a model and data, then call one function per view.

Example::

    import convlens
    lens = convlens.load_model("builtin:fashion-net")
    for info in lens.layers():
        print(info.name, info.shape, info.field)

Names are imported on first use, so that ``convlens.report`` (which never needs torch) can be
used without importing torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Lens": "lens", "LayerInfo": "lens", "Field": "receptive", "capture": "hooks",
    "relu_rule": "hooks", "load_model": "models", "load_data": "data",
    "ConvlensError": "errors", "evaluate": "techniques.units.evaluate",
    # §1 activations, dead filters, filters
    "activations": "techniques.activity.activations", "activation_stats": "techniques.activity.activations",
    "filters": "techniques.activity.filters", "TrainingMonitor": "techniques.activity.monitor",
    # §2 the dataset pass: top-k images per unit, codes, predictions; receptive-field patches
    "scan": "techniques.units.scan", "ScanResult": "techniques.units.scan", "unit_patches": "techniques.units.patches",
    # §3 t-SNE of CNN codes
    "cnn_codes": "techniques.units.codes", "codes_from_scan": "techniques.units.codes",
    "tsne_grid": "techniques.tsne.tsne",
    # §4 occlusion
    "occlusion": "techniques.occlusion.occlusion", "OcclusionResult": "techniques.occlusion.occlusion",
    # §5 the data gradient and friends
    "Unit": "techniques.gradients.targets", "saliency": "techniques.gradients.gradients",
    "deconvnet": "techniques.gradients.gradients", "guided_backprop": "techniques.gradients.gradients",
    "grad_cam": "techniques.gradients.cam", "guided_grad_cam": "techniques.gradients.cam",
    "smoothgrad": "techniques.gradients.smoothing", "integrated_gradients": "techniques.gradients.smoothing",
    "cascading_randomization": "techniques.gradients.sanity",
    # §6 images from codes: inversion, class models, feature visualisation
    "invert": "techniques.synthesis.inversion", "InversionResult": "techniques.synthesis.inversion",
    "class_model": "techniques.synthesis.featvis", "ClassModelResult": "techniques.synthesis.featvis",
    "feature_visualization": "techniques.synthesis.featvis", "FeatureVisResult": "techniques.synthesis.featvis",
    # §7 how much spatial information is preserved
    "correspondence": "techniques.correspondence.correspondence",
    "CorrespondenceResult": "techniques.correspondence.results",
    # §8 performance as a function of image attributes
    "attribute_performance": "techniques.attributes.attributes", "AttributeResult": "techniques.attributes.results",
    "image_attributes": "techniques.attributes.image_stats",
    # §9 fooling ConvNets
    "fgsm": "techniques.adversarial.attacks", "pgd": "techniques.adversarial.attacks",
    "AdversarialExamples": "techniques.adversarial.attacks", "fool": "techniques.adversarial.fooling",
    "robustness": "techniques.adversarial.robustness", "RobustnessResult": "techniques.adversarial.robustness",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'convlens' has no attribute {name!r}")


def __dir__():
    return __all__
