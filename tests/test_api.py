"""The public API is even: every function that takes data takes a dataset or a spec string, and
every function that takes a model takes a `Lens` or a bare `nn.Module`; anything else is a
one-line `ConvlensError`."""
from __future__ import annotations

import pytest
import torch

import convlens
from convlens import ConvlensError
from convlens.engine.settings import RunSettings

QUIET = RunSettings(progress=False)

SPEC = "builtin:shapes:test:24"


@pytest.fixture(scope="module")
def tiny_rgb():
    """An untrained conv net for 3x64x64 input, as a bare module and as a Lens."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(4),
        torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(24, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    lens = convlens.Lens(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 64, 64))
    return net, lens


DATA_FUNCTIONS = {
    "activation_stats": lambda m, d: convlens.activation_stats(m, d, run=QUIET),
    "scan": lambda m, d: convlens.scan(m, d, topk=2, run=QUIET),
    "cnn_codes": lambda m, d: convlens.cnn_codes(m, d, run=QUIET),
    "evaluate": lambda m, d: convlens.evaluate(m, d, run=QUIET),
    "robustness": lambda m, d: convlens.robustness(m, d, eps=[0, 0.05], progress=False),
    "attribute_performance": lambda m, d: convlens.attribute_performance(m, data=d, progress=False,
                                                                         n_resamples=50),
}

X_FUNCTIONS = {
    "activations": lambda m, x: convlens.activations(m, x),
    "saliency": lambda m, x: convlens.saliency(m, x),
    "deconvnet": lambda m, x: convlens.deconvnet(m, x),
    "guided_backprop": lambda m, x: convlens.guided_backprop(m, x),
    "grad_cam": lambda m, x: convlens.grad_cam(m, x),
    "guided_grad_cam": lambda m, x: convlens.guided_grad_cam(m, x),
    "smoothgrad": lambda m, x: convlens.smoothgrad(m, x, samples=2),
    "integrated_gradients": lambda m, x: convlens.integrated_gradients(m, x, steps=4),
    "occlusion": lambda m, x: convlens.occlusion(m, x, window=32, stride=32),
    "fgsm": lambda m, x: convlens.fgsm(m, x, eps=0.03),
    "pgd": lambda m, x: convlens.pgd(m, x, eps=0.03, steps=2),
    "fool": lambda m, x: convlens.fool(m, x, target=1, steps=3, search=1),
}


@pytest.mark.parametrize("name", sorted(DATA_FUNCTIONS))
def test_data_functions_take_a_spec_or_a_dataset_and_a_module_or_a_lens(name, tiny_rgb):
    net, lens = tiny_rgb
    fn = DATA_FUNCTIONS[name]
    fn(lens, SPEC)                                       # a Lens and a spec string
    fn(net, SPEC)                                        # a bare module
    fn(lens, convlens.load_data(SPEC))                   # a dataset
    with pytest.raises(ConvlensError, match="data spec"):
        fn(lens, 42)
    with pytest.raises(ConvlensError, match="nn.Module"):
        fn("builtin:shapes-net", SPEC)


@pytest.mark.parametrize("name", sorted(X_FUNCTIONS))
def test_image_functions_take_a_module_or_a_lens(name, tiny_rgb):
    net, lens = tiny_rgb
    x = torch.randn(2, 3, 64, 64)
    fn = X_FUNCTIONS[name]
    fn(lens, x)
    fn(net, x)
    with pytest.raises(ConvlensError, match="nn.Module"):
        fn(object(), x)


def test_filters_takes_a_module(tiny_rgb):
    net, lens = tiny_rgb
    assert convlens.filters(net).weights.shape == convlens.filters(lens).weights.shape


def test_scan_is_one_function():
    import types

    assert isinstance(convlens.scan, types.FunctionType)
    assert convlens.scan.__module__ == "convlens.techniques.units.scan"
