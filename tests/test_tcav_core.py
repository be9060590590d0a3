"""TCAV's core (issue 27): closed forms on a hand-weighted net, and Captum's TCAV given the same
CAV vectors gives the same scores."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from convlens import Lens
from convlens.errors import ConvlensError
from convlens.techniques.concepts.tcav import (
    fit_cav,
    layer_gradients,
    significance,
    tcav_score,
)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.act2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        x = self.act2(self.conv2(self.act(self.conv(x))))
        return self.fc(self.pool(x).flatten(1))


def tiny_lens() -> Lens:
    torch.manual_seed(0)
    return Lens(Tiny().eval(), (0.0,) * 3, (1.0,) * 3, (3, 8, 8), labels=["a", "b", "c"])


def test_cav_points_to_the_concept_and_separates_it():
    g = torch.Generator().manual_seed(0)
    direction = torch.tensor([1.0, -2.0, 0.5, 0.0])
    concept = torch.randn(40, 4, generator=g) * 0.3 + direction
    random = torch.randn(40, 4, generator=g) * 0.3
    cav = fit_cav(concept, random)
    assert cav.vector.norm().item() == pytest.approx(1.0)
    assert float(cav.vector.double() @ direction.double()) > 0.8 * direction.norm().item()
    assert cav.accuracy == 1.0
    with pytest.raises(ConvlensError, match="at least 2"):
        fit_cav(concept[:1], random)


def test_cav_of_more_features_than_examples_is_the_full_dimensional_fit():
    """fit_cav solves in the examples' span when D > n (a conv layer's maps): the same optimum
    as scikit-learn's D-dimensional solve, here against one run to a 1e-12 tolerance (the
    default-tolerance solves differ from it by ~1e-5 in 1 - cosine, either way)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(1)
    direction = torch.randn(3000, generator=g)
    concept = torch.randn(30, 3000, generator=g).relu() + 0.05 * direction
    random = torch.randn(40, 3000, generator=g).relu()
    cav = fit_cav(concept, random, test_share=0)
    x = torch.cat([concept, random]).double().numpy()
    y = np.r_[np.ones(30), np.zeros(40)]
    w = LogisticRegression(C=1.0, max_iter=20000, tol=1e-12).fit(x, y).coef_[0]
    cos = float(cav.vector.numpy() @ (w / np.linalg.norm(w)))
    assert 1 - cos < 1e-6
    # the held-out accuracy is the D-dimensional split fit's (its optimum is in the same span)
    from sklearn.model_selection import train_test_split

    xt, xv, yt, yv = train_test_split(x, y, test_size=0.33, random_state=3, stratify=y)
    full = LogisticRegression(C=1.0, max_iter=20000, tol=1e-12).fit(xt, yt).score(xv, yv)
    assert fit_cav(concept, random, seed=3).accuracy == full


def test_scores_closed_form():
    grads = torch.tensor([[1.0, 0.0], [-2.0, 0.0], [3.0, 1.0], [0.0, -1.0]])
    s = tcav_score(grads, torch.tensor([1.0, 0.0]))
    assert s["derivatives"].tolist() == [1.0, -2.0, 3.0, 0.0]
    assert s["sign_count"] == 0.5            # 0 is not positive
    assert s["magnitude"] == pytest.approx(4 / 6)


def test_layer_gradients_are_the_linear_heads_weights():
    """With the layer right before the linear head, d score_k / d features = W_k."""
    lens = tiny_lens()
    x = torch.randn(5, 3, 8, 8)
    g = layer_gradients(lens, x, "pool", [2] * 5)
    w = lens.model.fc.weight[2].detach().double()
    assert torch.allclose(g, w.expand(5, -1), atol=1e-6)


def test_significance():
    sig = significance([0.9, 0.95, 0.92, 0.88], [0.5, 0.45, 0.55, 0.52], tests=3)
    assert sig["significant"] and sig["p"] < 0.05 / 3
    same = significance([0.5, 0.52, 0.48], [0.49, 0.51, 0.5])
    assert not same["significant"]


@pytest.mark.peer
def test_equals_captum_tcav_with_the_same_cavs(tmp_path):
    captum_concept = pytest.importorskip("captum.concept")
    from captum.concept._utils.classifier import Classifier

    lens = tiny_lens()
    g = torch.Generator().manual_seed(1)
    concept_x = torch.rand(12, 3, 8, 8, generator=g) * torch.tensor([1.0, 0.2, 0.2])[:, None, None]
    random_x = torch.rand(12, 3, 8, 8, generator=g)
    inputs = torch.randn(40, 3, 8, 8, generator=g)
    layer = "act"  # the second ReLU after it: the gradient depends on the input
    with torch.no_grad():
        from convlens.hooks import capture
        with capture(lens, [layer]) as cap:
            lens(concept_x)
        ca = cap[layer].clone()
        with capture(lens, [layer]) as cap:
            lens(random_x)
        ra = cap[layer].clone()
    ours_cav = fit_cav(ca, ra, test_share=0)

    class Fixed(Classifier):
        """Captum's classifier interface returning our CAV for the concept (class 0)."""

        def __init__(self):
            pass

        def train_and_eval(self, dataloader, **kw):
            return {"accs": torch.tensor(1.0)}

        def weights(self):
            v = ours_cav.vector.float()
            return torch.stack([v, -v])

        def classes(self):
            return [0, 1]

    def batches(x):
        return torch.utils.data.DataLoader(x, batch_size=4)

    c0 = captum_concept.Concept(0, "red", batches(concept_x))
    c1 = captum_concept.Concept(1, "random", batches(random_x))
    tcav = captum_concept.TCAV(lens.model, [layer], classifier=Fixed(),
                               save_path=str(tmp_path) + "/")
    counts = []  # Captum's sign_count is a float32 mean: equal to 1e-6
    for target in range(3):
        out = tcav.interpret(inputs, experimental_sets=[[c0, c1]], target=target)
        theirs = out["0-1"][layer]
        ours = tcav_score(layer_gradients(lens, inputs, layer, target), ours_cav)
        assert float(theirs["sign_count"][0]) == pytest.approx(ours["sign_count"], abs=1e-6)
        assert float(theirs["sign_count"][1]) == pytest.approx(1 - ours["sign_count"],
                                                                abs=1e-6)
        counts.append(ours["sign_count"])
    assert any(0 < c < 1 for c in counts), counts  # not only all-or-nothing cases
