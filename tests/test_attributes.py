"""§8: accuracy as a function of image attributes (Russakovsky et al. 2015, §6.3).

- Planted dependence: correctness drawn with a known probability per bin; the estimates recover
  it and the 95 % bootstrap intervals cover the truth 90-99 % of the time over repeated draws.
- The logistic regression against a slow literal reference (the log-likelihood written out and
  maximised by scipy, the Fisher information by finite differences) and against scikit-learn.
- Computed attributes on tiny hand-made images with known answers.
- Bad input: a one-line error or a visible note, never a crash.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import optimize, special

from convlens import ConvlensError, RunSettings
from convlens.techniques.attributes.attributes import attribute_performance
from convlens.techniques.attributes.image_stats import (
    ImageStats,
    image_attributes,
    image_stats,
    object_area,
)
from convlens.techniques.attributes.results import AttributeResult
from convlens.techniques.attributes.stats import (
    accuracy_interval,
    independent_columns,
    logistic_regression,
    make_bins,
    wilson,
)

QUIET = RunSettings(progress=False)


EDGES = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
TRUE_P = np.array([0.55, 0.65, 0.75, 0.85, 0.92])


def planted(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """x uniform on [0, 1); an item is right with probability TRUE_P[bin of x]."""
    x = rng.random(n)
    p = TRUE_P[np.minimum((x / 0.2).astype(int), 4)]
    correct = rng.random(n) < p
    return pd.DataFrame({"index": np.arange(n), "label": np.zeros(n, int), "correct": correct,
                         "x": x})


# ------------------------------------------------------------------------------------------
# acceptance 1: planted dependence, estimates and coverage
# ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_planted_dependence_is_recovered_and_intervals_cover():
    # 120 draws of 1,000 items (about 200 per bin): 600 intervals. 300 bootstrap resamples
    # per interval keep it fast; the percentile interval's ends then move by about 0.005
    # between seeds, small beside the interval's width (about 0.1).
    rng = np.random.default_rng(0)
    draws, covered, estimates = 120, [], []
    for d in range(draws):
        res = attribute_performance(planted(1000, rng), "x", bins=EDGES, n_resamples=300,
                                    regression=False, seed=d, run=QUIET)
        t = res.table("x")
        assert list(t.bin) == [0, 1, 2, 3, 4] and (t.interval == "bootstrap").all()
        covered.append((t.top1_lo <= TRUE_P) & (TRUE_P <= t.top1_hi))
        estimates.append(t.top1.to_numpy())
    coverage = float(np.mean(covered))
    assert 0.90 <= coverage <= 0.99, coverage
    np.testing.assert_allclose(np.mean(estimates, 0), TRUE_P, atol=0.01)
    # one big draw: every bin's estimate is close and inside its interval
    t = attribute_performance(planted(50_000, rng), "x", bins=EDGES, n_resamples=300,
                              regression=False, run=QUIET).table("x")
    se = np.sqrt(TRUE_P * (1 - TRUE_P) / t.n.to_numpy())      # about 0.004
    assert np.all(np.abs(t.top1 - TRUE_P) < 4 * se)
    assert ((t.top1_lo < TRUE_P) & (TRUE_P < t.top1_hi)).sum() >= 4


def test_quantile_bins_and_the_paper_trend_with_two_models():
    rng = np.random.default_rng(1)
    n = 4000
    scale = np.exp(rng.uniform(np.log(0.02), np.log(0.6), n))
    p_good = special.expit(3 + 1.0 * np.log(scale / 0.1))     # accuracy rises with scale
    p_weak = special.expit(0.5 + 1.0 * np.log(scale / 0.1))
    base = {"index": np.arange(n), "label": np.zeros(n, int), "scale": scale}
    good = pd.DataFrame({**base, "correct": rng.random(n) < p_good})
    weak = pd.DataFrame({**base, "correct": rng.random(n) < p_weak})
    res = attribute_performance({"good": good, "weak": weak}, "scale", bins=4, n_resamples=300,
                                run=QUIET)
    t = res.table("scale")
    assert list(dict.fromkeys(t.model)) == ["good", "weak"]
    assert (t.groupby("model").n.apply(list).map(lambda v: v == [1000] * 4)).all()
    for m in ("good", "weak"):
        acc = t[t.model == m].top1.to_numpy()
        assert np.all(np.diff(acc) > 0), acc
    assert (t[t.model == "good"].top1.to_numpy() > t[t.model == "weak"].top1.to_numpy()).all()
    reg = res.regression.set_index(["model", "term"])
    assert reg.loc[("good", "scale"), "lo"] > 0 and reg.loc[("weak", "scale"), "lo"] > 0


# ------------------------------------------------------------------------------------------
# bins and intervals
# ------------------------------------------------------------------------------------------
def test_make_bins_kinds():
    bins, codes, kind = make_bins(np.array([3, 1, 2, 1, 3, 3]), 5)
    assert kind == "discrete" and [b.label for b in bins] == ["1", "2", "3"]
    assert codes.tolist() == [2, 0, 1, 0, 2, 2]
    # 75 % zeros: zero gets a bin of its own, the rest by quantiles
    x = np.r_[np.zeros(750), np.linspace(0.1, 0.4, 250)]
    bins, codes, kind = make_bins(x, 5)
    assert kind == "quantile" and bins[0].label == "= 0" and (codes[:750] == 0).all()
    assert len(bins) == 5 and np.bincount(codes)[1:].sum() == 250
    assert np.bincount(codes)[1:].min() >= 60
    bins, codes, kind = make_bins(np.array(["b", "a", None, "b"], dtype=object), 5)
    assert kind == "categorical" and [b.label for b in bins] == ["a", "b"]
    assert codes.tolist() == [1, 0, -1, 1]
    bins, codes, kind = make_bins(np.array([0.0, 0.5, 1.0, 1.5, np.nan]), [0, 1, 2])
    assert kind == "edges" and codes.tolist() == [0, 0, 1, 1, -1]
    bins, codes, _ = make_bins(np.array([-1.0, 0.5, 3.0]), [0, 1, 2])
    assert codes.tolist() == [-1, 0, -1]                    # outside the given edges
    with pytest.raises(ConvlensError, match="increasing"):
        make_bins(np.arange(5.0), [0, 2, 1])
    with pytest.raises(ConvlensError, match="distinct values"):
        make_bins(np.array([f"id{i}" for i in range(50)], dtype=object), 5)


def test_wilson_and_degenerate_bins():
    lo, hi = wilson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.7225, abs=1e-4)   # textbook value
    m, lo, hi, how = accuracy_interval(np.ones(40))
    assert (m, hi, how) == (1.0, 1.0, "wilson") and lo < 0.95
    m, lo, hi, how = accuracy_interval(np.array([1.0]))
    assert how == "wilson" and m == 1.0                           # one item: still honest
    m, lo, hi, how = accuracy_interval(np.array([0.2, 0.4, 0.6]), n_resamples=200,
                                       rng=np.random.default_rng(0))
    assert how == "bootstrap" and lo < m < hi


# ------------------------------------------------------------------------------------------
# the regression
# ------------------------------------------------------------------------------------------
def _literal_fit(X, y):
    """Slow reference: the log-likelihood term by term, maximised by BFGS; the observed
    information by central finite differences of its gradient."""
    def nll(b):
        total = 0.0
        for xi, yi in zip(X, y):
            eta = float(xi @ b)
            total -= yi * eta - np.log1p(np.exp(eta))
        return total

    def grad(b):
        mu = 1 / (1 + np.exp(-(X @ b)))
        return -(X.T @ (y - mu))

    b = optimize.minimize(nll, np.zeros(X.shape[1]), jac=grad, method="BFGS",
                          options={"gtol": 1e-10}).x
    h = 1e-5
    H = np.array([(grad(b + h * e) - grad(b - h * e)) / (2 * h) for e in np.eye(len(b))])
    return b, np.sqrt(np.diag(np.linalg.inv((H + H.T) / 2)))


def test_logistic_regression_matches_the_literal_reference():
    rng = np.random.default_rng(2)
    n = 300
    X = np.c_[np.ones(n), rng.normal(size=(n, 3))]
    beta = np.array([0.5, 1.0, -0.7, 0.0])
    y = (rng.random(n) < special.expit(X @ beta)).astype(float)
    fit = logistic_regression(X, y)
    ref_b, ref_se = _literal_fit(X, y)
    assert fit.converged
    np.testing.assert_allclose(fit.coef, ref_b, atol=1e-5)
    np.testing.assert_allclose(fit.se, ref_se, rtol=1e-4)
    lo, hi = fit.intervals(0.95)
    np.testing.assert_allclose(hi - fit.coef, 1.959964 * fit.se, rtol=1e-6)


@pytest.mark.peer
def test_logistic_regression_agrees_with_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    n = 2000
    Z = rng.normal(size=(n, 2))
    y = (rng.random(n) < special.expit(0.3 + Z @ [0.8, -0.4])).astype(int)
    fit = logistic_regression(np.c_[np.ones(n), Z], y)
    sk = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(Z, y)   # no penalty
    np.testing.assert_allclose(fit.coef, np.r_[sk.intercept_, sk.coef_[0]], atol=1e-4)


def test_wald_intervals_cover_the_planted_coefficients():
    rng = np.random.default_rng(4)
    beta = np.array([1.0, 0.8, -0.5])
    hits = []
    for _ in range(300):
        X = np.c_[np.ones(400), rng.normal(size=(400, 2))]
        y = (rng.random(400) < special.expit(X @ beta)).astype(float)
        lo, hi = logistic_regression(X, y).intervals(0.95)
        hits.append((lo <= beta) & (beta <= hi))
    assert 0.90 <= np.mean(hits) <= 0.99


def test_regression_through_the_api_standardises_and_drops_collinear_terms():
    rng = np.random.default_rng(5)
    n = 1500
    a = rng.normal(5, 2, n)
    kind = rng.choice(["p", "q", "r"], n, p=[0.5, 0.3, 0.2])
    y = rng.random(n) < special.expit(1 + 0.5 * (a - 5) / 2 + (kind == "q") * -1.0)
    t = pd.DataFrame({"index": range(n), "label": 0, "correct": y, "a": a, "twice_a": 2 * a,
                      "kind": kind})
    res = attribute_performance(t, n_resamples=100, run=QUIET)
    reg = res.regression.set_index("term")
    assert set(reg.index) == {"intercept", "a", "kind=q", "kind=r"}
    assert reg.loc["kind=q", "reference"] == "p"
    assert any("twice_a left out" in n for n in res.notes)
    # the same fit by hand on standardised columns
    z = (a - a.mean()) / a.std()
    X = np.c_[np.ones(n), z, kind == "q", kind == "r"].astype(float)
    np.testing.assert_allclose(reg.loc[["intercept", "a", "kind=q", "kind=r"], "coef"],
                               logistic_regression(X, y.astype(float)).coef, rtol=1e-8)
    assert reg.loc["a", "lo"] > 0 and reg.loc["kind=q", "hi"] < 0


def test_control_class_removes_an_attribute_that_only_tells_classes_apart():
    # class 1 is harder and its images are brighter; within a class brightness does nothing
    rng = np.random.default_rng(6)
    n = 4000
    label = (rng.random(n) < 0.4).astype(int)          # class 0 the more frequent
    bright = rng.normal(0.3 + 0.3 * label, 0.1)
    correct = rng.random(n) < np.where(label == 1, 0.6, 0.9)
    t = pd.DataFrame({"index": range(n), "label": label, "correct": correct, "bright": bright})
    plain = attribute_performance(t, "bright", n_resamples=100, run=QUIET)
    within = attribute_performance(t, "bright", n_resamples=100, control_class=True,
                                   run=QUIET)
    assert plain.regression.set_index("term").loc["bright", "hi"] < 0      # confounded
    w = within.regression.set_index("term")
    assert w.loc["bright", "lo"] < 0 < w.loc["bright", "hi"]              # not within class
    assert w.loc["class=1", "reference"] == "0" and w.loc["class=1", "hi"] < 0


def test_separation_is_a_note_not_a_crash():
    x = np.r_[np.zeros(50), np.ones(50)]
    t = pd.DataFrame({"index": range(100), "label": 0, "correct": x > 0.5, "x": x,
                      "noise": np.random.default_rng(0).normal(size=100)})
    res = attribute_performance(t, n_resamples=100, run=QUIET)
    assert any("does not converge" in n for n in res.notes)
    assert (res.table("x").interval == "wilson").all()     # all right / all wrong per bin


def test_independent_columns_prefers_earlier_columns():
    X = np.c_[np.ones(5), np.arange(5.0), 2 * np.arange(5.0), np.arange(5.0) ** 2]
    assert independent_columns(X).tolist() == [0, 1, 3]


# ------------------------------------------------------------------------------------------
# computed attributes
# ------------------------------------------------------------------------------------------
def test_image_stats_known_answers():
    x = torch.zeros(6, 3, 8, 8)
    x[0] = 0.5                                   # flat grey
    x[1, :, :, 4:] = 1.0                         # left black, right white
    x[2, 0] = 1.0                                # pure red
    x[3] = torch.linspace(0, 0.35, 8)            # a gentle ramp (0.05 per pixel)
    x[4] = torch.linspace(0, 1.4, 8).clamp(max=1)  # a steep ramp (0.2 per pixel) ...
    x[5, :, :4, :4] = 1 / 3                      # four grey levels, a quarter each
    x[5, :, :4, 4:] = 2 / 3
    x[5, :, 4:, :4] = 1.0
    s = image_stats(x)
    assert s["colourfulness"][0] == 0 and s["entropy"][0] == 0 and s["edge_density"][0] == 0
    assert s["brightness"][0] == pytest.approx(0.5) and s["rms_contrast"][0] == 0
    assert s["brightness"][1] == pytest.approx(0.5) and s["rms_contrast"][1] == pytest.approx(0.5)
    assert s["entropy"][1] == pytest.approx(1.0)
    assert s["edge_density"][1] == pytest.approx(2 / 6)   # the two columns beside the step
    assert s["colourfulness"][2] == pytest.approx(0.3 * np.hypot(255, 127.5))
    assert s["brightness"][2] == pytest.approx(0.299)
    assert s["edge_density"][3] == 0
    assert s["edge_density"][4] > 0.5
    assert s["entropy"][5] == pytest.approx(2.0)
    grey = image_stats(torch.rand(2, 1, 5, 5))
    assert (grey["colourfulness"] == 0).all()
    tiny = image_stats(torch.rand(1, 3, 2, 2))
    assert np.isnan(tiny["edge_density"][0])      # no interior pixel for a 3x3 kernel


def test_object_area_from_mask_and_box(tmp_path):
    mask = np.zeros((10, 10), bool)
    mask[:5, :4] = True
    assert object_area({"mask": mask}) == pytest.approx(0.2)
    assert object_area({"box": (0, 0, 5, 5)}, size=(10, 10)) == pytest.approx(0.25)
    assert object_area({"box": (-5, 0, 5, 20)}, size=(10, 10)) == pytest.approx(0.5)  # clipped
    Image.new("RGB", (40, 20)).save(tmp_path / "a.png")
    assert object_area({"box": (0, 0, 10, 10), "path": str(tmp_path / "a.png")},
                       size=(5, 5)) == pytest.approx(100 / 800)   # the file's own size wins
    assert np.isnan(object_area({}))


class _Batch:
    def __init__(self, images, indices, meta=None):
        self.images, self.indices = images, torch.as_tensor(indices)
        self.labels = torch.zeros(len(indices), dtype=torch.long)
        self.meta = meta or [{} for _ in indices]

    def __len__(self):
        return len(self.indices)


def test_image_stats_reducer_order_merge_state_and_normalisation():
    g = torch.Generator().manual_seed(0)
    raw = torch.rand(10, 3, 6, 6, generator=g)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    norm = (raw - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    whole = ImageStats(mean, std)
    whole.update(_Batch(norm, range(10)))
    a, b = ImageStats(mean, std), ImageStats(mean, std).spawn()
    b.update(_Batch(norm[7:], [7, 8, 9]))
    a.update(_Batch(norm[:3], [0, 1, 2]))
    b.update(_Batch(norm[3:7], [3, 4, 5, 6]))
    c = ImageStats(mean, std)
    c.load_state_dict(a.merge(b).state_dict())
    t1, t2 = whole.finalize(), c.finalize()
    # Per-image statistics of batches of other sizes: the luma (an einsum) and the means are
    # float64 kernels whose summation can depend on the batch's shape, so they agree to 1e-12,
    # not bit for bit. Edge density and entropy count pixels past a threshold or round luma to
    # 8 bits; an ulp could flip only a pixel within 1e-15 of one, which random pixels do not have.
    pd.testing.assert_frame_equal(t1, t2, check_exact=False, rtol=1e-12, atol=1e-12)
    pd.testing.assert_frame_equal(t1[["index", "label"]], t2[["index", "label"]])
    direct = image_stats(raw)
    np.testing.assert_allclose(t1.brightness, direct["brightness"], atol=1e-6)
    np.testing.assert_allclose(t1.colourfulness, direct["colourfulness"], atol=1e-3)


def test_image_attributes_on_a_folder_of_mixed_images(tmp_path):
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.new("L", (12, 9), 128).save(root / "a" / "grey.png")
    Image.new("RGB", (7, 7), (255, 0, 0)).save(root / "b" / "red.png")
    (root / "b" / "broken.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="skipped"):
        t = image_attributes(str(root), progress=False)
    assert len(t) == 2
    grey, red = t.iloc[0], t.iloc[1]
    assert grey.brightness == pytest.approx(128 / 255) and grey.colourfulness == 0
    assert red.colourfulness == pytest.approx(0.3 * np.hypot(255, 127.5))


# ------------------------------------------------------------------------------------------
# per-class attributes
# ------------------------------------------------------------------------------------------
def test_class_attributes_are_scored_per_class():
    # 4 classes: accuracies 1.0, 0.8 (rigid), 0.6, 0.2 (deformable); class 0 has 10x the items
    counts, right = [500, 50, 50, 50], [500, 40, 30, 10]
    rows = [(c, i < k) for c, (n, k) in enumerate(zip(counts, right)) for i in range(n)]
    t = pd.DataFrame(rows, columns=["label", "correct"])
    classes = pd.DataFrame({"label": [0, 1, 2, 3], "deformable": ["no", "no", "yes", "yes"]})
    res = attribute_performance(t, class_attributes=classes, min_classes=2, n_resamples=200,
                                run=QUIET)
    d = res.table("deformable").set_index("label")
    assert d.loc["no", "top1"] == pytest.approx((1.0 + 0.8) / 2)   # the mean of class scores,
    assert d.loc["yes", "top1"] == pytest.approx((0.6 + 0.2) / 2)  # not of items (0.98)
    assert d.loc["no", "n"] == 2 and d.loc["no", "items"] == 550
    assert (d.level == "class").all() and not d.few.any()
    assert any("no item attribute" in n for n in res.notes)         # nothing to regress on
    named = classes.assign(label=["w", "x", "y", "z"])               # names need class names
    with pytest.raises(ConvlensError, match="no class names known"):
        attribute_performance(t, class_attributes=named, run=QUIET)


def test_class_attributes_by_name_from_a_scan_like_source(tmp_path):
    counts = [500, 50, 50, 50]
    right = [500, 40, 30, 10]
    rows = []
    for c, (n, k) in enumerate(zip(counts, right)):
        rows += [(c, i < k) for i in range(n)]
    t = pd.DataFrame(rows, columns=["label", "correct"])
    t.insert(0, "index", range(len(t)))
    scan = _fake_scan(tmp_path / "scan", t, labels=["w", "x", "y", "z"])
    classes = tmp_path / "classes.csv"
    pd.DataFrame({"label": ["w", "x", "y", "z"], "deformable": ["no", "no", "yes", "yes"],
                  "size": [1, 2, 3, 4]}).to_csv(classes, index=False)
    res = attribute_performance(scan, class_attributes=classes, min_classes=2, n_resamples=200,
                                run=QUIET)
    d = res.table("deformable").set_index("label")
    assert d.loc["no", "top1"] == pytest.approx(0.9) and d.loc["yes", "top1"] == pytest.approx(0.4)
    s = res.table("size")
    assert s.n.tolist() == [1, 1, 1, 1] and s.few.all()           # one class per value
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"label": ["cat", "dog"], "size": [1, 2]}).to_csv(bad, index=False)
    with pytest.raises(ConvlensError, match="no class of the table"):
        attribute_performance(scan, class_attributes=bad, run=QUIET)


def _fake_scan(folder, table, labels=None, data=None):
    """A folder like convlens scan's: manifest.json (kind scan) and predictions.parquet."""
    folder.mkdir(parents=True)
    table.to_parquet(folder / "predictions.parquet", index=False)
    manifest = {"kind": "scan", "model": {"name": "fake", "labels": labels},
                "info": {"labels": labels, "data": data}, "arrays": {}, "tables": {},
                "pictures": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


# ------------------------------------------------------------------------------------------
# acceptance 3: bad input
# ------------------------------------------------------------------------------------------
def _table(n=200, seed=0, **cols):
    rng = np.random.default_rng(seed)
    t = pd.DataFrame({"index": range(n), "label": rng.integers(0, 3, n),
                      "pred": rng.integers(0, 3, n), "x": rng.random(n)})
    for k, v in cols.items():
        t[k] = v
    return t


def test_unknown_attribute_is_one_line_with_close_matches():
    with pytest.raises(ConvlensError, match=r"unknown attribute 'scle'.*'scale'") as e:
        attribute_performance(_table(scale=np.ones(200)), "scle", run=QUIET)
    assert "\n" not in str(e.value)


def test_constant_attribute_and_identifier_columns_are_notes(tmp_path):
    t = _table(split_name="test", ident=[f"f{i}.png" for i in range(200)])
    res = attribute_performance(t, n_resamples=100, run=QUIET)
    assert res.attributes == ["x"]
    assert any("split_name: constant" in n for n in res.notes)
    assert any(n.startswith("ident:") and "distinct values" in n for n in res.notes)
    res.save(tmp_path / "out")                                    # and it saves
    only = attribute_performance(t, "split_name", n_resamples=100, run=QUIET)
    assert only.attributes == [] and any("constant" in n for n in only.notes)
    only.save(tmp_path / "only")


def test_small_bins_are_flagged_grey_and_drawn(tmp_path):
    rng = np.random.default_rng(0)
    kind = np.r_[["common"] * 300, ["rare"] * 7]
    t = pd.DataFrame({"index": range(307), "label": 0, "correct": rng.random(307) < 0.8,
                      "kind": kind})
    res = attribute_performance(t, "kind", n_resamples=100, run=QUIET)
    k = res.table("kind").set_index("label")
    assert k.loc["rare", "few"] and not k.loc["common", "few"] and k.loc["rare", "n"] == 7
    res.save(tmp_path / "out")
    assert (tmp_path / "out" / "kind.png").is_file()
    back = AttributeResult.load(tmp_path / "out")
    pd.testing.assert_frame_equal(back.table("kind"), res.table("kind"), check_dtype=False)


def test_attribute_result_loads_back(tmp_path):
    """Save, load_result, save again: the same manifest entries, tables and params."""
    from convlens.results import SavedResult, load_result

    rng = np.random.default_rng(0)
    t = _table(300, kind=rng.choice(["a", "b"], 300), summary=rng.random(300))
    res = attribute_performance(t, ["x", "kind", "summary"], n_resamples=50, run=QUIET)
    assert "attr_summary" in res.tables() and len(res.regression)
    first = res.save(tmp_path / "a", pictures=False)
    back = load_result(first)
    assert isinstance(back, AttributeResult) and back.params == res.params
    assert back.attributes == res.attributes and back.model == res.model
    pd.testing.assert_frame_equal(back.bins, res.bins, check_dtype=False)
    second = back.save(tmp_path / "b", pictures=False)
    a, b = SavedResult(first), SavedResult(second)
    for key in ("arrays", "tables", "info", "fields", "kind", "result"):
        assert a.manifest[key] == b.manifest[key], key
    for name in a.manifest["tables"]:
        pd.testing.assert_frame_equal(a.table(name), b.table(name))


def test_predictions_and_data_that_do_not_match():
    data = "builtin:shapes:test:50"
    t = _table(100)                                      # indexes items 0..99 of 50
    with pytest.raises(ConvlensError, match="do not match the data"):
        attribute_performance(t, "brightness", data=data, run=QUIET)
    t = _table(50)                                       # random labels: not shapes' i % 8
    with pytest.raises(ConvlensError, match="another label"):
        attribute_performance(t, "brightness", data=data, run=QUIET)
    with pytest.raises(ConvlensError, match="no data to compute"):
        attribute_performance(t, "brightness", run=QUIET)
    other = _table(50, seed=1)
    with pytest.raises(ConvlensError, match="disagree on the label"):
        attribute_performance([t, other], "x", run=QUIET)
    fewer = t.iloc[:30]
    res = attribute_performance([t, fewer], "x", n_resamples=100, run=QUIET)
    assert any("30 in common" in n for n in res.notes)


def test_computed_attributes_beside_an_item_column_of_the_same_name():
    n = 40
    t = pd.DataFrame({"index": range(n), "label": np.arange(n) % 8, "pred": np.arange(n) % 8,
                      "brightness": np.linspace(0.5, 1.5, n)})      # a jitter factor, say
    t.loc[::3, "pred"] = 0
    res = attribute_performance(t, ["brightness", "brightness_px", "entropy"], bins=2,
                                data="builtin:shapes:test:40", n_resamples=100, run=QUIET)
    s = res.summary.set_index("attribute")
    assert s.loc["brightness", "source"] == "item column" and s.loc["brightness", "units"] == ""
    assert s.loc["brightness_px", "source"] == "computed"
    assert s.loc["brightness_px", "units"] == "mean luma, 0-1"
    assert s.loc["entropy", "source"] == "computed"


def test_missing_sources_and_bad_tables(tmp_path):
    with pytest.raises(ConvlensError, match="no predictions at"):
        attribute_performance(tmp_path / "nowhere", run=QUIET)
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "manifest.json").write_text(json.dumps({"kind": "filters"}))
    with pytest.raises(ConvlensError, match="without predictions.parquet"):
        attribute_performance(tmp_path / "res", run=QUIET)
    with pytest.raises(ConvlensError, match="'correct' column"):
        attribute_performance(pd.DataFrame({"x": [1, 2]}), run=QUIET)
    with pytest.raises(ConvlensError, match="'label'"):
        attribute_performance(_table(), class_attributes=pd.DataFrame({"k": [1]}), run=QUIET)
    with pytest.raises(ConvlensError, match="increasing"):
        attribute_performance(_table(), "x", bins=[1, 0], run=QUIET)


def test_labels_mapped_to_the_models_classes_and_unknown_answers():
    # the data's class k is the model's class 2 - k (the same names in another order)
    t = pd.DataFrame({"index": range(6), "label": [0, 1, 2, 0, 1, 2],
                      "pred": [2, 1, 0, 2, 0, 0], "x": [1, 2, 3, 4, 5, 6],
                      "top5": [[2, 0], [1, 0], [0, 1], [1, 2], [0, 2], [0, 2]]})
    t["correct"] = [True, True, True, True, False, False]
    t.attrs["to_model"] = [2, 1, 0]
    res = attribute_performance(t, "x", bins=[0, 3.5, 7], min_count=1, n_resamples=50,
                                regression=False, run=QUIET)
    x = res.table("x")
    assert x.top1.tolist() == [1.0, pytest.approx(1 / 3)]
    assert x.top5.tolist() == [1.0, pytest.approx(2 / 3)]      # item 5 (model class 0) is in it
    t2 = t.copy()
    t2["correct"] = pd.array([True, None, True, None, False, False], dtype="boolean")
    res = attribute_performance(t2, "x", min_count=1, n_resamples=50, run=QUIET)
    assert res.table("x").n.sum() == 4 and any("known right answer" in n for n in res.notes)
    t2["correct"] = pd.array([None] * 6, dtype="boolean")
    with pytest.raises(ConvlensError, match="no item has a known right answer"):
        attribute_performance(t2, "x", run=QUIET)


def test_missing_values_are_counted():
    x = np.random.default_rng(0).random(200)
    x[:20] = np.nan
    res = attribute_performance(_table(x=x), "x", n_resamples=100, run=QUIET)
    assert res.summary.set_index("attribute").loc["x", "missing"] == 20
    assert res.table("x").n.sum() == 180
    res = attribute_performance(_table(x=x), "x", bins=[0, 0.25, 0.5], n_resamples=100,
                                run=QUIET)
    assert res.table("x").n.sum() + 20 < 180 and any("outside the given edges" in n
                                                      for n in res.notes)


# ------------------------------------------------------------------------------------------
# end to end: a scan, a model run, the command line
# ------------------------------------------------------------------------------------------
def test_scan_folder_and_model_run_agree_and_model_is_left_alone(tmp_path):
    from conftest import assert_unchanged, snapshot
    from convlens import Lens
    from convlens.data.shapes import SHAPE_CLASSES
    from convlens.techniques.units.scan import scan

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 8))
    lens = Lens(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 64, 64),
                labels=list(SHAPE_CLASSES), name="tiny-shapes")
    data = "builtin:shapes:test:64"
    scan(lens, data, topk=0, codes=None, stats=False, out=tmp_path / "scan",
         run=RunSettings(progress=False))
    a = attribute_performance(tmp_path / "scan", ["scale", "clutter", "brightness"], bins=3,
                              n_resamples=100, run=QUIET)
    before = snapshot(lens)
    b = attribute_performance(lens, ["scale", "clutter", "brightness"], bins=3, data=data,
                              n_resamples=100, run=QUIET)
    assert_unchanged(lens, before)
    cols = ["attribute", "bin", "label", "n", "top1", "top1_lo", "top1_hi", "top5"]
    items = a.bins.attribute != "brightness"
    # both ways the same 64 images go through the model in one batch of 64: the same arithmetic,
    # so the same predictions, and the same counts and bootstrap intervals, bit for bit
    pd.testing.assert_frame_equal(a.bins[items][cols], b.bins[items][cols])
    # brightness: of the stored RGB image from a scan, of what the model sees (grey 28x28)
    # when the model runs; both are there
    assert (a.bins.attribute == "brightness").sum() == 3 == (b.bins.attribute == "brightness").sum()
    assert a.params["models"] == ["tiny-shapes"] == b.params["models"]


def test_takes_a_lens_or_a_module_and_a_spec_or_a_dataset():
    from convlens import Lens, load_data

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 8))
    lens = Lens(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 64, 64))
    spec = "builtin:shapes:test:16"
    kw = dict(attributes="clutter", n_resamples=50, run=QUIET)
    a = attribute_performance(lens, data=spec, **kw)
    b = attribute_performance(net, data=spec, **kw)
    c = attribute_performance(lens, data=load_data(spec), **kw)
    cols = ["attribute", "bin", "label", "n"]          # a bare module gets other preprocessing
    pd.testing.assert_frame_equal(a.bins[cols], b.bins[cols])
    pd.testing.assert_frame_equal(a.bins, c.bins)
    with pytest.raises(ConvlensError, match="data spec"):
        attribute_performance(lens, data=42, **kw)
    with pytest.raises(ConvlensError, match="nn.Module"):
        attribute_performance("builtin:shapes-net", data=spec, **kw)
    with pytest.raises(ConvlensError, match="needs data"):
        attribute_performance(lens, **kw)


def test_cli_attribute_performance(tmp_path, capsys):
    from convlens.cli import main

    t = _table(300, kind=np.random.default_rng(0).choice(["a", "b"], 300))
    _fake_scan(tmp_path / "s1", t)
    _fake_scan(tmp_path / "s2", t.assign(pred=t.label))
    out = tmp_path / "attr"
    rc = main(["attribute-performance", "--scan", f"first={tmp_path / 's1'}",
               "--scan", str(tmp_path / "s2"), "--attributes", "x,kind", "--bins", "3",
               "--edges", "x=0,0.5,1", "--resamples", "100", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "x: top-1 accuracy" in printed and "regression" in printed
    res = AttributeResult.load(out)
    assert res.params["models"] == ["first", "fake"]
    assert list(res.table("x").label.unique()) == ["0–0.5", "0.5–1"]
    assert {"x.png", "kind.png", "regression.png"} <= {p.name for p in out.iterdir()}
    assert main(["attribute-performance", "--scan", str(tmp_path / "s1"), "--attributes", "y",
                 "--out", str(out)]) == 2
    assert "unknown attribute 'y'" in capsys.readouterr().err
    assert main(["attribute-performance", "--out", str(out)]) == 2
