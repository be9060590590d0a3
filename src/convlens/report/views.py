"""The views of the seed in its order, with a line each on what they show: how the index lists a
model's results. A result kind not named here is listed at the end, under "other views"."""
from __future__ import annotations

#: (section number, section title)
SECTIONS = [
    (1, "Layer activations and first-layer weights"),
    (2, "Images that maximally activate a neuron"),
    (3, "Embedding the codes with t-SNE"),
    (4, "Occluding parts of the image"),
    (5, "The data gradient and friends"),
    (6, "Reconstructing images from CNN codes"),
    (7, "How much spatial information is preserved"),
    (8, "Performance as a function of image attributes"),
    (9, "Fooling ConvNets"),
]

#: result kind -> (section, title, one line on what it shows)
VIEWS: dict[str, tuple[int, str, str]] = {
    "layers": (1, "layers", "every layer's output shape and receptive field"),
    "activations": (1, "activations", "every channel of a layer as a tile, for a few images"),
    "activation_stats": (1, "dead filters", "per channel, how often its map is all zero over a dataset"),
    "filters": (1, "filters", "the weights as pictures, with a noise verdict"),
    "training_monitor": (1, "training monitor", "dead channels, sparsity and filter noise as training goes on"),
    "scan": (2, "scan", "one pass over the data: dead channels, predictions, top images per unit"),
    "units": (2, "top images per unit", "the receptive-field patches that excite each unit most"),
    "tsne": (3, "t-SNE map", "images placed by the similarity of their codes"),
    "occlusion": (4, "occlusion", "the class probability as a grey square hides each part"),
    "saliency": (5, "saliency", "the gradient of the class score with respect to the pixels"),
    "deconvnet": (5, "DeconvNet", "the target projected back to the pixels, positive signal only"),
    "guided_backprop": (5, "guided backprop", "the gradient through active units, positive signal only"),
    "grad_cam": (5, "Grad-CAM", "where in the last conv layer the class evidence lies"),
    "guided_grad_cam": (5, "guided Grad-CAM", "guided backprop times Grad-CAM"),
    "smoothgrad": (5, "SmoothGrad", "a gradient map averaged over noisy copies of the image"),
    "integrated_gradients": (5, "integrated gradients", "each pixel's share of the score, from a baseline"),
    "sanity_check": (5, "sanity checks", "how each map changes as the model's weights are randomised"),
    "inversion": (6, "inversion", "images reconstructed from a layer's code"),
    "class_model": (6, "class models", "the image each class score likes best"),
    "featvis": (6, "feature visualisation", "images optimised to excite a unit or a channel"),
    "correspondence": (7, "correspondence", "how well features find the same point in another image"),
    "attributes": (8, "accuracy by attribute", "accuracy binned by object scale, clutter, occlusion, ..."),
    "fgsm": (9, "fast gradient sign", "one step of size ε along the sign of the loss gradient"),
    "pgd": (9, "iterative attack (PGD)", "many small gradient-sign steps inside the ε-ball"),
    "fool": (9, "fooling", "the smallest change that makes the model predict a chosen class"),
    "robustness": (9, "robustness", "accuracy and confidence against the size ε of an attack"),
}


def view_of(kind: str) -> tuple[int, str, str]:
    """Section, title and line of a result kind (smoothgrad_* runs are SmoothGrad)."""
    if kind.startswith("smoothgrad"):
        return VIEWS["smoothgrad"]
    return VIEWS.get(kind, (99, kind.replace("_", " "), ""))


def order(kind: str) -> tuple[int, int]:
    """Sort key: the seed's order of sections, then the order of VIEWS."""
    sec = view_of(kind)[0]
    names = list(VIEWS)
    key = "smoothgrad" if kind.startswith("smoothgrad") else kind
    return sec, names.index(key) if key in names else len(names)
