"""The CAM family against its peers (issue 25, acceptance 1): pytorch-grad-cam 1.5.7 and
torch-cam 0.5.0 on torchvision ResNet-18 and VGG-16 (random seeded weights, 64 px) and the
built-in nets, on the same layer and target, before the peers' upsampling and scaling, to
1e-5 relative. Where a peer's definition differs from the paper, the test says how, checks the
peer against the paper's formula with that difference, and checks convlens against the
paper's formula itself."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import convlens
from convlens.hooks import capture

pytestmark = [pytest.mark.peer, pytest.mark.usefixtures("one_thread")]
pgc = pytest.importorskip("pytorch_grad_cam")
try:
    import torchcam.methods as tcm
except ImportError:  # torch-cam 0.5.0 needs Python 3.11: its comparisons are left out
    tcm = None
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

# name -> (model spec, input size, layer, targets); the layer is each net's Grad-CAM layer
NETS = {"resnet18": ("torchvision:resnet18", 64, "layer4", [1, 7]),
        "vgg16": ("torchvision:vgg16", 64, "features.29", [1, 7]),
        "shapes-net": ("builtin:shapes-net", 64, "features.11", [1, 2]),
        "fashion-net": ("builtin:fashion-net", None, None, [1, 2]),
        "stamps-net": ("builtin:stamps-net", None, None, [1, 2])}
#: the nets of the gradient CAMs' comparisons (VGG-16 takes over a second: slow)
ALL = ["resnet18", pytest.param("vgg16", marks=pytest.mark.slow), "shapes-net", "fashion-net",
       "stamps-net"]
_LENSES: dict = {}


def net(name: str, n: int = 2):
    spec, size, layer, t = NETS[name]
    if name not in _LENSES:
        _LENSES[name] = convlens.load_model(spec, seed=0)
    lens = _LENSES[name]
    layer = layer or convlens.techniques.gradients.cam.default_cam_layer(lens)
    c, h, w = lens.input_size if size is None else (3, size, size)
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(2))
    return lens, x, layer, t[:n]


def rel(a, b) -> float:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).norm() / b.norm())


def pgc_raw(cls, model, layer_module, x, t, **attrs) -> torch.Tensor:
    """pytorch-grad-cam's map before its upsampling and min-max scaling: what its
    `get_cam_image` returns, through the ReLU its `compute_cam_per_layer` applies."""
    cam = cls(model=model, target_layers=[layer_module])
    for k, v in attrs.items():
        setattr(cam, k, v)
    got = []
    inner = cam.get_cam_image
    cam.get_cam_image = lambda *a, **k: got.append(inner(*a, **k)) or got[-1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(c) for c in t])
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
    return torch.from_numpy(np.maximum(got[0], 0))


def tc_raw(cls, model, layer, x, t, **kw) -> torch.Tensor:
    """torch-cam's map with ``normalized=False`` (after its ReLU, before its scaling)."""
    with cls(model, target_layer=layer, input_shape=tuple(x.shape[1:]), **kw) as ex:
        out = model(x.clone())
        cams = ex(class_idx=list(t), scores=out, normalized=False)
    model.zero_grad(set_to_none=True)
    return cams[0].detach()


def acts_and_grads(lens, x, layer, t):
    """``A`` and ``dS/dA`` of the layer, float64, by hand (the papers' inputs)."""
    xg = x.clone().requires_grad_(True)
    with capture(lens, layer, grads=True) as cap:
        s = lens(xg)
        torch.autograd.grad(s[torch.arange(len(t)), torch.tensor(t)].sum(), xg)
        return cap[layer].double(), cap.grad(layer).double()


def combine(w, a):
    return F.relu((w[:, :, None, None] * a).sum(1))


# -- gradient CAMs on which both peers agree with the papers --------------------------------
PEERS = {"xgrad_cam": (pgc.XGradCAM, tcm and tcm.XGradCAM), "hires_cam": (pgc.HiResCAM, None),
         "layer_cam": (pgc.LayerCAM, tcm and tcm.LayerCAM)}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("method", PEERS)
def test_gradient_cams_equal_the_peers(method, name):
    lens, x, layer, t = net(name)
    ours = getattr(convlens, method)(lens, x, target=t, layer=layer).cam
    assert ours.max() > 0
    p_cls, t_cls = PEERS[method]
    assert rel(ours, pgc_raw(p_cls, lens.model, lens.layer(layer), x, t)) < 1e-5
    if t_cls is not None:
        assert rel(ours, tc_raw(t_cls, lens.model, layer, x, t)) < 1e-5


@pytest.mark.parametrize("name", ALL)
def test_grad_cam_plus_plus_is_the_paper_and_how_the_peers_differ(name):
    """Eq. 19: ``alpha = g^2 / (2 g^2 + sum(A) g^3)``, ``w = sum alpha ReLU(g)``.
    pytorch-grad-cam adds 1e-6 to the denominator, which matters where gradients are small
    (random weights: up to 2 % of the map); torch-cam 0.5.0 divides a copy (boolean-mask
    indexing copies, so its in-place ``div_`` is lost): its weights are ``sum g^2 ReLU(g)``."""
    lens, x, layer, t = net(name)
    ours = convlens.grad_cam_plus_plus(lens, x, target=t, layer=layer).cam
    a, g = acts_and_grads(lens, x, layer, t)

    def paper(eps):
        den = 2 * g ** 2 + a.sum((2, 3), keepdim=True) * g ** 3 + eps
        alpha = torch.where(g != 0, g ** 2 / den, 0)
        return combine((alpha * F.relu(g)).sum((2, 3)), a)
    assert rel(ours, paper(0.0)) < 1e-5
    assert rel(pgc_raw(pgc.GradCAMPlusPlus, lens.model, lens.layer(layer), x, t),
               paper(1e-6)) < 1e-5
    if tcm is not None:
        assert rel(tc_raw(tcm.GradCAMpp, lens.model, layer, x, t),
                   combine((g ** 2 * F.relu(g)).sum((2, 3)), a)) < 1e-5


@pytest.mark.parametrize("name", ALL)
def test_eigen_cam_is_the_paper_and_how_pytorch_grad_cam_differs(name):
    """``L = O V_1`` (Muhammad & Yeasin, eq. 3-4) with the sign that makes it sum >= 0.
    pytorch-grad-cam centres ``O`` (the channel means subtracted) before the SVD and keeps
    whichever sign numpy's SVD returns, then a ReLU."""
    lens, x, layer, t = net(name)
    ours = convlens.eigen_cam(lens, x, target=t, layer=layer).cam
    a = acts_and_grads(lens, x, layer, t)[0].numpy()
    n, c, h, w = a.shape
    paper, centred = [], []
    for o in a.reshape(n, c, h * w).transpose(0, 2, 1):
        v = np.linalg.svd(o)[2][0]
        p = o @ v
        paper.append(np.maximum(p if p.sum() >= 0 else -p, 0).reshape(h, w))
        oc = o - o.mean(0)
        centred.append((oc @ np.linalg.svd(oc)[2][0]).reshape(h, w))
    assert rel(ours, np.stack(paper)) < 1e-5
    peer = pgc_raw(pgc.EigenCAM, lens.model, lens.layer(layer), x, t)
    for i in range(n):  # either sign of the centred projection, through a ReLU
        assert min(rel(peer[i], np.maximum(s * centred[i], 0)) for s in (1, -1)
                   if np.maximum(s * centred[i], 0).any()) < 1e-5


# -- Score-CAM ----------------------------------------------------------------------------
def score_reference(lens, x, layer, t, align_corners=False, normalise_first=False):
    """Score-CAM literally, one channel at a time: ``H = s(up(A^k))`` (min-max over the
    map), ``S_k = f_c(x * H)``, ``w = softmax_k(S_k)``."""
    with torch.no_grad(), capture(lens, layer) as cap:
        lens(x)
        a = cap[layer]
    def scaled(m):  # each channel's map to [0, 1]
        lo, hi = m.amin((2, 3), keepdim=True), m.amax((2, 3), keepdim=True)
        return (m - lo) / (hi - lo + 1e-8)
    ws = []
    for i in range(len(x)):
        m = a[i][:, None]                                  # every channel of image i
        m = scaled(m) if normalise_first else m
        m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=align_corners)
        m = m if normalise_first else scaled(m)
        with torch.no_grad():
            s = lens(x[i:i + 1] * m)[:, t[i]]
        ws.append(s.double().softmax(0))
    return combine(torch.stack(ws), a.double())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "shapes-net", "stamps-net"])
def test_score_cam_is_the_paper_and_how_the_peers_differ(name):
    """Algorithm 1: upsample (bilinear), then scale to [0, 1], then mask; weights the softmax
    over channels of the masked scores (the baseline's score cancels in it).
    pytorch-grad-cam upsamples with ``align_corners=True`` (`UpsamplingBilinear2d`); torch-cam
    scales each map at the layer's resolution *before* upsampling. On ResNet-18 at 64 px the
    layer is 2 x 2, whose bilinear upsampling keeps its extremes, so there torch-cam's order
    gives the same masks and the same map."""
    lens, x, layer, t = net(name, n=1 if name == "resnet18" else 2)
    ours = convlens.score_cam(lens, x, target=t, layer=layer, batch_size=64).cam
    assert rel(ours, score_reference(lens, x, layer, t)) < 1e-5
    peer = pgc_raw(pgc.ScoreCAM, lens.model, lens.layer(layer), x, t, batch_size=64)
    assert rel(peer, score_reference(lens, x, layer, t, align_corners=True)) < 1e-5
    if tcm is None:
        return
    torchcam = tc_raw(tcm.ScoreCAM, lens.model, layer, x, t, batch_size=64)
    assert rel(torchcam, score_reference(lens, x, layer, t, normalise_first=True)) < 1e-5
    if name == "resnet18":
        assert rel(ours, torchcam) < 1e-5


# -- Ablation-CAM -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "vgg16", "shapes-net", "fashion-net",
                                  "stamps-net"])
def test_ablation_cam_equals_pytorch_grad_cam_in_float64(name):
    """Same definition (the channel set to 0 at a rectified layer, ``(y - y_k) / y``);
    torch-cam has no Ablation-CAM. The weights are relative differences of nearly equal
    scores, so in float32 both libraries are about 1e-4 (relative) from the float64 map
    (measured on VGG-16: convlens 1.0e-4, pytorch-grad-cam 8.0e-5, each other 2.7e-5;
    ResNet-18 with convlens's cut network: 5e-5 from each other): the comparison runs in
    float64, one image. pytorch-grad-cam keeps its scores as float32 (``np.float32``) even
    then, which leaves it 1.7e-5 from convlens on VGG-16 at 32 px (a map that nearly
    cancels), 5e-6 at 64 px."""
    lens, x, layer, t = net(name, n=1)
    lens64 = convlens.Lens(copy.deepcopy(lens.model).double(), (0.0,), (1.0,),
                           tuple(x.shape[1:]))
    ours = convlens.ablation_cam(lens64, x.double(), target=t, layer=layer, batch_size=128)
    assert "torch.fx cut" in ours.notes[0]
    peer = pgc_raw(pgc.AblationCAM, lens64.model, lens64.layer(layer), x.double(), t,
                   batch_size=128)
    assert ours.cam.max() > 0 and rel(ours.cam, peer) < 1e-5
