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
    "ConvlensError": "errors", "evaluate": "techniques.evaluate",
    # §1 activations, dead filters, filters
    "activations": "techniques.activations", "activation_stats": "techniques.activations",
    "filters": "techniques.filters", "TrainingMonitor": "techniques.monitor",
    # §2 the dataset pass: top-k images per unit, codes, predictions; receptive-field patches
    "scan": "techniques.scan", "ScanResult": "techniques.scan", "unit_patches": "techniques.units",
    # §3 t-SNE of CNN codes
    "cnn_codes": "techniques.codes", "codes_from_scan": "techniques.codes",
    "tsne_grid": "techniques.tsne",
    # §4 occlusion
    "occlusion": "techniques.occlusion", "OcclusionResult": "techniques.occlusion",
    # §5 the data gradient and friends
    "Unit": "techniques.targets", "saliency": "techniques.gradients",
    "deconvnet": "techniques.gradients", "guided_backprop": "techniques.gradients",
    "grad_cam": "techniques.cam", "guided_grad_cam": "techniques.cam",
    "smoothgrad": "techniques.smoothing", "integrated_gradients": "techniques.smoothing",
    "cascading_randomization": "techniques.sanity",
    # §6 images from codes: inversion, class models, feature visualisation
    "invert": "techniques.inversion", "InversionResult": "techniques.inversion",
    "class_model": "techniques.featvis", "ClassModelResult": "techniques.featvis",
    "feature_visualization": "techniques.featvis", "FeatureVisResult": "techniques.featvis",
    # §7 how much spatial information is preserved
    "correspondence": "techniques.correspondence",
    "CorrespondenceResult": "techniques.correspondence_result",
    # §8 performance as a function of image attributes
    "attribute_performance": "techniques.attributes", "AttributeResult": "techniques.attribute_result",
    "image_attributes": "techniques.image_stats",
    # §9 fooling ConvNets
    "fgsm": "techniques.adversarial", "pgd": "techniques.adversarial",
    "AdversarialExamples": "techniques.adversarial", "fool": "techniques.fooling",
    "robustness": "techniques.robustness", "RobustnessResult": "techniques.robustness",
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
