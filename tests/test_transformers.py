"""Vision transformers: token-shaped layers on the image grid (grids.py), Grad-CAM's default
layer on them, and agreement with pytorch-grad-cam and its documented reshape transforms
(peer, issue 24 acceptance 3)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import convlens
from convlens.grids import grid_layout, to_grid
from convlens.hooks import capture
from convlens.techniques.gradients.cam import default_cam_layer


# -- the layouts, by shape ------------------------------------------------------------------
@pytest.mark.parametrize("shape, image, want", [
    ((64, 56, 56), (224, 224), ("map", 0, (56, 56))),          # a conv's (C, h, w)
    ((56, 56, 96), (224, 224), ("channels_last", 0, (56, 56))),  # Swin's (h, w, C)
    ((197, 768), (224, 224), ("tokens", 1, (14, 14))),          # ViT-B/16: class token first
    ((198, 384), (224, 224), ("tokens", 2, (14, 14))),          # DeiT: class and distillation
    ((200, 64), (320, 160), ("tokens", 0, (20, 10))),           # a non-square image
    ((7, 7, 7), (224, 224), ("map", 0, (7, 7))),                # ambiguous: a map
    ((147, 147, 64), (299, 299), ("map", 0, (147, 64))),        # odd sizes stay maps
])
def test_grid_layout_reads_the_shape(shape, image, want):
    assert grid_layout(shape, image) == want


@pytest.mark.parametrize("shape", [(64, 49, 512), (49, 64, 96), (1000,), (12, 5)])
def test_window_partitions_and_vectors_are_no_grid(shape):
    # MaxViT's (windows, tokens per window, C) tables: no map of the image
    layout = grid_layout(shape, (224, 224))
    assert layout is None or layout[0] == "map"


def test_to_grid_is_the_hand_written_reshape():
    t = torch.randn(2, 197, 8)
    got = to_grid(t, grid_layout(t.shape[1:], (224, 224)))
    want = t[:, 1:].reshape(2, 14, 14, 8).permute(0, 3, 1, 2)
    assert torch.equal(got, want)
    c = torch.randn(2, 7, 7, 8)
    assert torch.equal(to_grid(c, grid_layout(c.shape[1:], (224, 224))), c.permute(0, 3, 1, 2))


class TinyViT(torch.nn.Module):
    """Patch embedding, a class token, one attention block and a head on the class token."""

    def __init__(self, dim=8, classes=3):
        super().__init__()
        self.embed = torch.nn.Conv2d(3, dim, 4, stride=4)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, dim))
        self.norm1 = torch.nn.LayerNorm(dim)
        self.attn = torch.nn.MultiheadAttention(dim, 2, batch_first=True)
        self.norm2 = torch.nn.LayerNorm(dim)
        self.head = torch.nn.Linear(dim, classes)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], dim=1)
        h = self.norm1(t)
        t = t + self.attn(h, h, h, need_weights=False)[0]
        return self.head(self.norm2(t)[:, 0])


def test_capture_gives_tokens_as_maps_and_their_gradients():
    torch.manual_seed(0)
    lens = convlens.Lens(TinyViT(), mean=(0,) * 3, std=(1,) * 3, input_size=(3, 16, 16))
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    with capture(lens, ["norm1", "embed"], grads=True) as cap:
        lens(x)[:, 0].sum().backward()
    assert cap["norm1"].shape == (2, 8, 4, 4) and cap.grad("norm1").shape == (2, 8, 4, 4)
    assert cap["embed"].shape == (2, 8, 4, 4)
    info = {i.name: i for i in lens.layers()}
    assert info["norm1"].shape == (17, 8) and info["norm1"].grid == (8, 4, 4)
    assert info["norm1"].row()["shape"] == "17x8 -> 8x4x4"
    # the last grid layer whose cells reach the class token's score: the norm before attention
    assert default_cam_layer(lens) == "norm1"
    res = convlens.grad_cam(lens, x.detach(), target=1)
    assert res.cam.shape == (2, 4, 4) and float(res.cam.abs().sum()) > 0


# -- pytorch-grad-cam with its documented reshape transforms (peer) -------------------------
def _peer_cam(model, layer, x, target, reshape):
    """pytorch-grad-cam's Grad-CAM before its upsampling and min-max scaling."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = GradCAM(model=model, target_layers=[layer], reshape_transform=reshape)
    try:
        targets = [ClassifierOutputTarget(target)] * len(x)
        out = cam.activations_and_grads(x)
        model.zero_grad()
        sum(t(o) for t, o in zip(targets, out)).backward()
        acts = cam.activations_and_grads.activations[0].cpu().numpy()
        grads = cam.activations_and_grads.gradients[0].cpu().numpy()
        raw = cam.get_cam_image(x, layer, targets, acts, grads)
        return np.maximum(raw, 0)
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)


def _vit_reshape(tensor, height=14, width=14):  # pytorch-grad-cam's vit_example.py
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def _swin_reshape(tensor):  # torchvision's Swin keeps (N, h, w, C): the transposes only
    return tensor.transpose(2, 3).transpose(1, 2)


@pytest.mark.peer
@pytest.mark.slow
@pytest.mark.parametrize("arch, layer, reshape", [
    ("vit_b_16", "encoder.layers.encoder_layer_11.ln_1", _vit_reshape),
    ("swin_t", "features.7.1.norm2", _swin_reshape),
    ("swin_t", "norm", _swin_reshape),
])
def test_grad_cam_equals_pytorch_grad_cam_on_transformers(arch, layer, reshape):
    pytest.importorskip("pytorch_grad_cam")
    lens = convlens.load_model(f"torchvision:{arch}")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    ours = convlens.grad_cam(lens, x, target=7, layer=layer)
    peer = _peer_cam(lens.model, lens.layer(layer), x.clone(), 7, reshape)
    got = ours.cam.numpy()
    assert got.shape == peer.shape == (2, 14, 14) if arch == "vit_b_16" else got.shape == peer.shape
    assert got.max() > 0
    np.testing.assert_allclose(got, peer, rtol=1e-5, atol=1e-5 * float(np.abs(peer).max()))


@pytest.mark.slow
@pytest.mark.parametrize("arch, want", [("vit_b_16", "encoder.layers.encoder_layer_11.ln_1"),
                                        ("swin_t", "norm"), ("convnext_tiny", "features.7"),
                                        ("resnet18", "layer4.1.relu")])
def test_default_cam_layer_on_transformers(arch, want):
    lens = convlens.load_model(f"torchvision:{arch}", input_size=(3, 224, 224))
    assert default_cam_layer(lens) == want
