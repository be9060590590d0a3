"""`tsne_grid` end to end (PCA to 50, openTSNE FFT, kNN accuracies, trustworthiness, the grid)
against raw openTSNE with its defaults and scikit-learn's Barnes-Hut TSNE, on fashion-net's
codes (BENCHMARKS.md, "t-SNE"; goals: at most 1.2x raw openTSNE's time, i.e. a ratio of at
least 0.83, and at least 2x scikit-learn). t-SNE runs on the CPU whatever the device."""
from __future__ import annotations

import numpy as np

from .base import Context, Row, Skipped, peer


def knn_accuracy(embedding: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Share of points whose k nearest neighbours in the 2-D map vote their own class (brute
    force): the property any good t-SNE of these codes keeps."""
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=k + 1).fit(embedding, labels)
    idx = clf.kneighbors(embedding, return_distance=False)[:, 1:]  # without the point itself
    votes = labels[idx]
    pred = np.array([np.bincount(v).argmax() for v in votes])
    return float((pred == labels).mean())


def rows(ctx: Context) -> list:
    import convlens
    from convlens.engine.settings import RunSettings
    from convlens.techniques.tsne.tsne import tsne_grid
    from convlens.techniques.units.codes import cnn_codes

    openTSNE = peer("openTSNE", "tsne", "tsne_grid vs openTSNE")
    sklearn = peer("sklearn", "tsne", "tsne_grid vs scikit-learn")
    n = ctx.pick(300, 10000)
    lens = convlens.load_model("builtin:fashion-net")
    data = convlens.load_data("builtin:fashion-mnist:test", lens=lens)
    codes = cnn_codes(lens, data, n=n, run=RunSettings(batch_size=500, progress=False))
    c, y = codes.codes, np.asarray(codes.label)
    what = f"fashion-net codes {c.shape[1]}-d, {n} points, perplexity 30, one thread"
    # the smoke run: a short optimisation (openTSNE's cost is per iteration, whatever n)
    short = {"early_exaggeration_iter": 50, "n_iter": 100} if ctx.mode == "smoke" else {}
    if short:
        what += ", 150 iterations"

    from threadpoolctl import threadpool_limits

    def one_thread(fn):  # BLAS and OpenMP too, as tsne_grid(n_jobs=1) limits itself
        def run():
            with threadpool_limits(1):
                return fn()
        return run

    @one_thread
    def ours():
        res = tsne_grid(c, seed=0, n_jobs=1, tsne_options=short or None)
        return knn_accuracy(np.asarray(res.embedding), y)

    def diff(a, b):
        return abs(a - b)

    out = []
    rounds = 1 if ctx.mode != "smoke" else None
    if isinstance(openTSNE, Skipped):
        out.append(openTSNE)
    else:
        @one_thread
        def raw():
            emb = openTSNE.TSNE(perplexity=30, negative_gradient_method="fft", n_jobs=1,
                                random_state=0, **short).fit(c)
            return knn_accuracy(np.asarray(emb), y)
        out.append(Row("tsne", "tsne_grid vs raw openTSNE", what, n, "points", ours, raw,
                       f"openTSNE {openTSNE.__version__} (defaults, FFT)", diff, 0.05,
                       "10-NN accuracy in the map, absolute", goal=1 / 1.2, rounds=rounds,
                       note="tsne_grid also computes the quality measures and the grid; "
                       "its openTSNE runs with ints_in_interval=2"))
    if isinstance(sklearn, Skipped):
        out.append(sklearn)
    else:
        from sklearn.manifold import TSNE

        @one_thread
        def sk():
            emb = TSNE(perplexity=min(30, (n - 1) / 3), init="pca", random_state=0,
                       max_iter=500 if short else 1000).fit_transform(c)
            return knn_accuracy(emb, y)
        out.append(Row("tsne", "tsne_grid vs scikit-learn", what, n, "points", ours, sk,
                       f"scikit-learn {sklearn.__version__} TSNE (Barnes-Hut)", diff, 0.05,
                       "10-NN accuracy in the map, absolute", goal=2.0, rounds=rounds))
    return out
