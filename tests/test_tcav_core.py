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


def _folder(root, name, n, seed):
    from PIL import Image

    d = root / name
    d.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        px = (torch.rand(8, 8, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(px).save(d / f"{i}.png")


def test_concept_folders_that_say_nothing_are_skipped(tmp_path):
    """A concept folder with fewer than 2 images is skipped with a warning (it gave a raw
    torch.cat error before); no concept left, or too few random images, is refused."""
    from convlens import RunSettings
    from convlens.techniques.concepts.testing import tcav

    cons, data = tmp_path / "concepts", tmp_path / "data"
    _folder(cons, "stripes", 6, 0)
    (cons / "empty").mkdir()
    _folder(cons, "random", 12, 1)
    _folder(data, "a", 4, 2)
    _folder(data, "b", 4, 3)
    quiet = RunSettings(progress=False)
    with pytest.warns(UserWarning, match=r"fewer than 2 images skipped: empty \(0\)"):
        res = tcav(tiny_lens(), data, cons, layers=["act2"], runs=3, n_random=5, run=quiet)
    assert set(res.table.concept) == {"stripes"}
    assert len(res.table) == 2 and res.table.random_score.notna().all()  # classes a and b
    for d, keep in (("stripes", {"0.png"}), ("random", {"0.png", "1.png"})):
        for f in (cons / d).iterdir():
            if f.name not in keep:
                f.unlink()
    with pytest.warns(UserWarning, match="skipped"), \
            pytest.raises(ConvlensError, match="no concept has 2 images"):
        tcav(tiny_lens(), data, cons, layers=["act2"], run=quiet)
    _folder(cons, "stripes2", 3, 4)
    with pytest.warns(UserWarning, match="skipped"), \
            pytest.raises(ConvlensError, match="2 images to draw the random counterparts"):
        tcav(tiny_lens(), data, cons, layers=["act2"], run=quiet)


def test_random_sets_come_in_disjoint_pairs_drawn_afresh_each_run():
    """Each run's two random sets share no item (Kim et al.'s distinct random sets), and the
    runs do not repeat one split (a chain of sets each drawn from the rest of a pool of twice
    their size alternated between two sets: every random-vs-random CAV was +-v)."""
    import numpy as np

    from convlens.techniques.concepts.testing import random_pairs

    pool = np.arange(100, 200)
    pairs = random_pairs(pool, 50, 6, np.random.default_rng(0))
    assert len(pairs) == 6
    for a, b in pairs:
        assert len(a) == len(b) == 50 and not set(a.tolist()) & set(b.tolist())
        assert set(a.tolist()) | set(b.tolist()) <= set(pool.tolist())
    assert len({tuple(a.tolist()) for a, _ in pairs}) == 6
    with pytest.raises(ConvlensError, match="need 102 items"):
        random_pairs(pool, 51, 2, np.random.default_rng(0))


def test_concept_sets_of_small_data_keep_four_random_items():
    """On data whose every item is some concept's example (24 shapes, 8 backgrounds), the
    largest concepts give items back until the random class has the 4 that two disjoint
    random sets need; every concept kept has 4 examples or more; no item is in two sets."""
    from collections import Counter

    from convlens import load_data
    from convlens.techniques.concepts.testing import concept_sets

    sets = concept_sets(load_data("builtin:shapes:test:24"))
    labels = [sets.load(i)[1] for i in range(len(sets))]
    count = Counter(labels)
    random = sets.classes.index("random")
    assert count[random] == 4
    assert all(n >= 4 for k, n in count.items() if k != random)
    sources = [sets.source(i) for i in range(len(sets))]
    assert len(set(sources)) == len(sources)
