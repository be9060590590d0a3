"""`tcav`: how much each class's score depends on human concepts given as example images
(Kim et al. 2018; the arithmetic in `tcav`)."""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch

from ...data import Loader
from ...engine.settings import RunSettings, as_run
from ...errors import ConvlensError
from ...hooks import capture, model_of, preserved
from ...lens import lens_and_data
from .dissect import spatial_layers
from .tcav import fit_cav, layer_gradients, significance, tcav_score


def _activations(lens, data, indices, layers, batch_size) -> dict[str, torch.Tensor]:
    """``layer -> (n, D)`` float32 activations of these items, flattened, on the CPU."""
    out: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    with preserved(model_of(lens)) as model, torch.no_grad():
        model.eval()
        for b in Loader(data, batch_size=batch_size, indices=list(indices)):
            with capture(lens, layers) as cap:
                lens(b.images)
            for name in layers:
                out[name].append(cap[name].float().flatten(1).cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def _mean_or_nan(values) -> float:
    """The mean of the finite values (a CAV fitted without held-out examples has none)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def _labels(data, indices) -> np.ndarray:
    return np.asarray([int(data.load(int(i))[1]) for i in indices])


def tcav(lens, data, concepts=None, layers: Sequence[str] | None = None,
         classes: Sequence[int] | None = None, runs: int = 10, n_random: int = 50,
         n: int = 500, alpha: float = 0.05, seed: int = 0, run: RunSettings | None = None):
    """TCAV (Kim et al. 2018, https://arxiv.org/abs/1711.11279; METHODS.md, "TCAV").

    `concepts`: a folder of concept folders (each a set of example images; a folder named
    ``random...`` is the pool of random counterparts) or a dataset whose classes are the
    concepts; None: example sets of `data`'s own items by their ``background`` (`concept_sets`,
    the builtin data record it). Without a random folder the counterparts are drawn from `data`.
    For each run ``r < runs``: two disjoint random sets of `n_random` images (`random_pairs`),
    each concept's CAV against the first at every layer (`tcav.fit_cav`), and the
    random-vs-random CAV of the first against the second. The TCAV score of concept C for
    class k at layer l is the share of class-k images (of the first `n` items of `data`) whose
    class-k score grows along ``v_C`` (`tcav.tcav_score`); a concept is significant for a
    class when its scores over the runs differ from the random-vs-random scores (two-sided
    t-test, ``p < alpha / tests``, Bonferroni over every concept and layer tested for that
    class).

    Example::

        res = tcav(lens, "builtin:stamps:test", "my-concepts/", classes=[0, 3])
        res.table[res.table.significant]
    """
    import pandas as pd

    from .results import TcavResult

    run = as_run(run)
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 2:
        raise ConvlensError(f"runs must be an integer of at least 2 (the t-test), got {runs!r}")
    lens, data = lens_and_data(lens, data)
    if concepts is None:
        concepts = concept_sets(data)
    _, cons = lens_and_data(lens, concepts)
    names = list(getattr(cons, "classes", None) or [])
    if not names:
        raise ConvlensError("the concepts must be a folder of concept folders (or a dataset "
                            "with classes)")
    layers = list(layers) if layers else spatial_layers(lens)[-3:]
    c_labels = _labels(cons, range(len(cons)))
    random_ids = [j for j, nm in enumerate(names) if nm.lower().startswith("random")]
    concept_ids = [j for j in range(len(names)) if j not in random_ids]
    if not concept_ids:
        raise ConvlensError("no concept folder besides the random ones")
    held = np.bincount(c_labels[c_labels >= 0], minlength=len(names))
    few = [j for j in concept_ids if held[j] < 2]
    if few:  # a CAV needs two examples: an empty folder (or one of other files) says nothing
        warnings.warn(f"concepts with fewer than 2 images skipped: "
                      f"{', '.join(f'{names[j]} ({held[j]})' for j in few)}", stacklevel=2)
        concept_ids = [j for j in concept_ids if j not in few]
        if not concept_ids:
            raise ConvlensError("no concept has 2 images or more (a CAV needs at least 2 "
                                "examples)")
    rng = np.random.default_rng(seed)
    if random_ids:
        pool_data, pool = cons, np.flatnonzero(np.isin(c_labels, random_ids))
    else:
        pool_data, pool = data, np.arange(len(data))
    if len(pool) < 4:
        raise ConvlensError(f"{len(pool)} images to draw the random counterparts from "
                            f"({'the random folders' if random_ids else 'the data'}): at least "
                            "4 needed (two random sets of 2)")
    if len(pool) < 2 * n_random:
        n_random = max(2, len(pool) // 2)
    pairs = random_pairs(pool, n_random, runs, rng)
    bs = run.batch_size
    acts_c = {j: _activations(lens, cons, np.flatnonzero(c_labels == j), layers, bs)
              for j in concept_ids}
    drawn = np.unique(np.concatenate([np.concatenate(p) for p in pairs]))
    acts_d = _activations(lens, pool_data, drawn, layers, bs)  # each drawn image once
    acts_r = [tuple({k: v[torch.from_numpy(np.searchsorted(drawn, part))]
                     for k, v in acts_d.items()} for part in p) for p in pairs]
    order = np.arange(min(n, len(data)))
    labels = _labels(data, order)
    wanted = sorted(set(labels.tolist()) - {-1}) if classes is None else list(classes)
    class_names = list(getattr(data, "classes", None) or getattr(lens, "labels", None) or [])
    grads: dict[tuple[int, str], torch.Tensor] = {}
    for k in wanted:
        idx = order[labels == k]
        if len(idx) == 0:
            continue
        parts = {name: [] for name in layers}
        for b in Loader(data, batch_size=bs, indices=list(idx)):
            for name in layers:
                parts[name].append(layer_gradients(lens, b.images, name, int(k)))
        for name in layers:
            grads[(k, name)] = torch.cat(parts[name])
    rows = []
    tests = len(concept_ids) * len(layers)
    for k in wanted:
        for name in layers:
            g = grads.get((k, name))
            if g is None:
                continue
            base = [tcav_score(g, fit_cav(acts_r[r][0][name], acts_r[r][1][name], seed=r,
                                          test_share=0))["sign_count"] for r in range(runs)]
            for j in concept_ids:
                scores, accs = [], []
                for r in range(runs):
                    cav = fit_cav(acts_c[j][name], acts_r[r][0][name], seed=r)
                    scores.append(tcav_score(g, cav)["sign_count"])
                    accs.append(cav.accuracy)
                sig = significance(scores, base, alpha, tests)
                rows.append({"concept": names[j], "layer": name, "class": int(k),
                             "class_name": class_names[k] if k < len(class_names) else str(k),
                             "score": sig["mean"], "std": sig["std"], "p": sig["p"],
                             "significant": sig["significant"],
                             "random_score": sig["random_mean"],
                             "cav_accuracy": _mean_or_nan(accs), "images": len(g)})
    params: dict[str, Any] = {"model": getattr(lens, "name", None),
                              "data": getattr(data, "spec", None),
                              "concepts": [names[j] for j in concept_ids], "layers": layers,
                              "runs": runs, "n_random": n_random, "alpha": alpha,
                              "tests": tests, "random_from": "concepts" if random_ids
                              else "data", "seed": seed}
    cols = ["concept", "layer", "class", "class_name", "score", "std", "p", "significant",
            "random_score", "cav_accuracy", "images"]
    return TcavResult(pd.DataFrame(rows, columns=cols), params)


def random_pairs(pool, n_random: int, runs: int, rng) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per run, two disjoint random sets of `n_random` items of `pool` (a fresh split each
    run): the concepts' counterparts and, against them, the random-vs-random CAV's other side.
    Kim et al.'s random sets are distinct image sets; sets that share images label those
    images both ways (and kept the solver from converging), and a chain of sets each drawn
    from the rest of a pool of twice their size alternates between the same two sets."""
    pool = np.asarray(pool)
    if len(pool) < 2 * n_random:
        raise ConvlensError(f"two disjoint random sets of {n_random} need {2 * n_random} "
                            f"items, the pool has {len(pool)}")
    out = []
    for _ in range(runs):
        pick = rng.permutation(pool)[:2 * n_random]
        out.append((np.sort(pick[:n_random]), np.sort(pick[n_random:])))
    return out


def concept_sets(data, key: str = "background", per: int = 30, scan: int = 2000,
                 seed: int = 0, random: int = 100, values: Sequence[str] | None = None):
    """Concept example sets drawn from a dataset's own items by a metadata value (the
    builtin data record each item's ``background``): a dataset whose classes are the values
    (`per` items each, from the first `scan` items, seeded; only `values` if given) and a
    ``random`` class of `random` other items (with `values`: items whose value is none of
    them; without, at least 4 where the data has them, the largest concepts giving items
    back: two disjoint random sets need 4): what `tcav` takes as `concepts`. Does a class's
    score depend on the grass behind the object?

    Example::

        cons = concept_sets(load_data("builtin:shapes:test"), values=["stripes"], per=100)
        tcav("builtin:shapes-planted-net", "builtin:shapes-planted:test:400", cons)
    """
    from ...data.base import ImageDataset

    rng = np.random.default_rng(seed)
    total = min(scan, len(data))
    found: dict[str, list[int]] = {}
    for i in range(total):
        v = (data.load(i)[2] or {}).get(key)
        if v is not None:
            found.setdefault(str(v), []).append(i)
    if len(found) < 1:
        raise ConvlensError(f"no item of the data has a {key!r} in its metadata")
    wanted = sorted(found) if values is None else [str(v) for v in values]
    missing = [v for v in wanted if len(found.get(v, ())) < 4]
    if values is not None and missing:
        raise ConvlensError(f"fewer than 4 items with {key} = {', '.join(missing)} among the "
                            f"first {scan}; values seen: {', '.join(sorted(found))}")
    chosen = {v: sorted(rng.choice(found[v], size=min(per, len(found[v])),
                                   replace=False).tolist())
              for v in wanted if len(found.get(v, ())) >= 4}
    used = {i for ids in chosen.values() for i in ids}
    if values is not None:  # the counterparts carry none of the concepts
        used |= {i for v in wanted for i in found.get(v, ())}
    rest = [i for i in range(total) if i not in used]
    while values is None and len(rest) < min(random, 4) and chosen:
        # small data: two disjoint random sets need 4 items; the largest concept gives one
        # back (a concept left with fewer than 4 goes back whole)
        v = max(chosen, key=lambda c: len(chosen[c]))
        back = [chosen[v].pop()] if len(chosen[v]) > 4 else chosen.pop(v)
        rest = sorted(rest + back)
    rand = sorted(rng.choice(rest, size=min(random, len(rest)), replace=False).tolist())
    names = list(chosen) + ["random"]
    items = [(i, k) for k, v in enumerate(chosen) for i in chosen[v]] + \
            [(i, len(chosen)) for i in rand]

    class _Sets(ImageDataset):
        classes = names

        def __len__(self):
            return len(items)

        def source(self, index):
            return data.source(items[index][0])

        def load(self, index):
            img, _, meta = data.load(items[index][0])
            return img, items[index][1], meta

    return _Sets(getattr(data, "lens", None))
