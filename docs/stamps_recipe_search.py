"""Recipe search for builtin:stamps-net: render once with many processes, train a grid.

    python docs/stamps_recipe_search.py [TAG ...]          # on a CUDA machine (DEV=cpu: slow)

Written for a lent GPU (bf16 autocast, 16 render processes); the notes in docs/models.md
quote its results of 2026-11-30 on one H200. Two data variants: ``A`` is the first
augmentation (no aspect stretch, no grey, no hue shift, rotation +-20 degrees), ``B`` the
shipped one (convlens.data.stamps defaults). Both use the 7-class split that fruit and
vegetables had before they were merged (``SEVEN`` below); ``merge=True`` maps vegetable onto
fruit at training time, as the shipped 6-class ``fruit-veg`` does. The training loop follows
convlens.models.train.fit (AdamW, one-cycle, shift + flip augmentation, label smoothing).
Prints one JSON line per run and appends it to $OUT/results.jsonl.
"""
import json
import math
import os
import sys
import time
from multiprocessing import Pool

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
OUT = os.environ.get("OUT", "/tmp")
SEVEN = {"bird": ("animals/birds",), "coin": ("symbols/money",), "flower": ("plants/flowers",),
         "fruit": ("food/fruit",), "mammal": ("animals/mammals", "animals/marsupials"),
         "vegetable": ("food/vegetables", "food/spices", "plants/mushrooms"),
         "vehicle": ("vehicles", "military/vehicles")}


VARIANTS = {"A": dict(ASPECT=(1.0, 1.0), P_GRAY=0.0, HUE=0.0, MAX_ROTATION=20.0),
            "B": dict(ASPECT=(0.75, 1.33), P_GRAY=0.15, HUE=0.05, MAX_ROTATION=30.0)}


def job(args):
    from convlens.data import stamps as S
    from convlens.data.stamps import compose, photos
    split, a, b, var = args
    # each setting is read in the module that uses it (and shown on the package)
    for k, v in dict(CLASS_FOLDERS=SEVEN, CLASSES=tuple(SEVEN), **VARIANTS[var]).items():
        for module in (S, photos, compose):
            if hasattr(module, k):
                setattr(module, k, v)
    return S.render_batch(split, range(a, b))


def render(split, n, var="A", chunk=2500):
    jobs = [(split, a, min(a + chunk, n), var) for a in range(0, n, chunk)]
    with Pool(16) as p:
        res = p.map(job, jobs)
    return np.concatenate([r[0] for r in res]), np.concatenate([r[1] for r in res])


def main():
    import torch
    import torch.nn.functional as F

    from convlens.models.nets import SmallAlexNet

    t0 = time.time()
    NTR = int(os.environ.get("NTR", 100_000))
    NTE = int(os.environ.get("NTE", 5000))
    DATA = {}
    for var in VARIANTS:
        DATA[var] = [render("train", NTR, var), render("test", NTE, var),
                     render("seen", NTE, var)]
    print(f"rendered in {time.time() - t0:.0f} s", flush=True)
    dev = os.environ.get("DEV", "cuda")
    torch.backends.cudnn.benchmark = True
    mean = torch.tensor([0.5] * 3, device=dev).view(1, 3, 1, 1)
    std = torch.tensor([0.25] * 3, device=dev).view(1, 3, 1, 1)

    def to_t(x):
        return torch.from_numpy(x).to(dev).permute(0, 3, 1, 2).contiguous()

    MERGE = torch.tensor([0, 1, 2, 3, 4, 3, 5], device=dev)  # vegetable -> fruit (produce)
    GPU = {var: [(to_t(x), torch.from_numpy(y).to(dev)) for x, y in d] for var, d in DATA.items()}

    def norm(x):
        return ((x.float() / 255.0) - mean) / std

    def augment(x, gen, shift, flip):
        n, c, h, w = x.shape
        if shift:
            p = F.pad(x, (shift,) * 4)
            dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen, device=dev)
            dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen, device=dev)
            rows = (dy[:, None] + torch.arange(h, device=dev)[None]).view(n, 1, h, 1).expand(
                n, c, h, w + 2 * shift)
            p = torch.gather(p, 2, rows)
            cols = (dx[:, None] + torch.arange(w, device=dev)[None]).view(n, 1, 1, w).expand(
                n, c, h, w)
            x = torch.gather(p, 3, cols)
        if flip:
            m = torch.rand(n, generator=gen, device=dev) < 0.5
            x = torch.where(m.view(n, 1, 1, 1), x.flip(3), x)
        return x

    @torch.no_grad()
    def acc(model, X, Y):
        model.eval()
        ok = 0
        per = torch.zeros(7, device=dev)
        cnt = torch.zeros(7, device=dev)
        for i in range(0, len(X), 1000):
            p = model(norm(X[i:i + 1000]).contiguous(
                memory_format=torch.channels_last)).argmax(1)
            ok += (p == Y[i:i + 1000]).sum().item()
            per.index_add_(0, Y[i:i + 1000], (p == Y[i:i + 1000]).float())
            cnt.index_add_(0, Y[i:i + 1000], torch.ones_like(p, dtype=torch.float))
        model.train()
        return ok / len(X), (per / cnt).tolist()

    def run(tag, n=40000, epochs=20, lr=2e-3, wd=5e-4, ls=0.1, shift=4,
            widths=(32, 64, 96, 96, 64), k1=5, s1=2, flat=6, fc=256, drop=0.3, bs=128, var="A",
            merge=False):
        (Xtr, Ytr), (Xte, Yte), (Xse, Yse) = GPU[var]
        if merge:
            Ytr, Yte, Yse = MERGE[Ytr], MERGE[Yte], MERGE[Yse]
        ncls = 6 if merge else 7
        torch.manual_seed(0)
        gen = torch.Generator(device=dev).manual_seed(0)
        model = SmallAlexNet(3, widths, k1, s1, fc, ncls, flat, dropout=drop).to(dev).to(
            memory_format=torch.channels_last)
        nparams = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
        per_epoch = math.ceil(n / bs)
        steps = epochs * per_epoch
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                    pct_start=0.25)
        t = time.time()
        curve = []
        for ep in range(epochs):
            order = torch.randperm(n, generator=gen, device=dev)
            for i in range(0, n, bs):
                idx = order[i:i + bs]
                xb = augment(norm(Xtr[idx]), gen, shift, True).contiguous(
                    memory_format=torch.channels_last)
                with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
                    loss = F.cross_entropy(model(xb).float(), Ytr[idx], label_smoothing=ls)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            if (ep + 1) % max(1, epochs // 5) == 0 or ep + 1 == epochs:
                curve.append(round(acc(model, Xte, Yte)[0], 4))
        te, per = acc(model, Xte, Yte)
        se, _ = acc(model, Xse, Yse)
        trn, _ = acc(model, Xtr[:NTE], Ytr[:NTE])
        r = dict(tag=tag, var=var, merge=merge, n=n, epochs=epochs, lr=lr, wd=wd, ls=ls,
                 shift=shift, widths=widths, k1=k1, s1=s1, fc=fc, drop=drop, params=nparams,
                 test=round(te, 4), seen=round(se, 4), train=round(trn, 4), curve=curve,
                 per_class=[round(v, 3) for v in per], seconds=round(time.time() - t, 1))
        print(json.dumps(r), flush=True)
        with open(os.path.join(OUT, "results.jsonl"), "a") as f:
            f.write(json.dumps(r) + "\n")

    grid = [  # first round: variant A only (100,000 training items rendered); second: A and B
        ("base", {}),
        ("n100k_e8", dict(n=100_000, epochs=8)),
        ("wide_fc192", dict(widths=(48, 96, 128, 128, 96), fc=192)),
        ("s4k7", dict(k1=7, s1=4, flat=3)),
        ("ls0", dict(ls=0.0)),
        ("drop05_wd5e-3", dict(drop=0.5, wd=5e-3)),
        ("e40", dict(epochs=40)),
        ("n100k_e20", dict(n=100_000, epochs=20)),
        ("lr4e-3", dict(lr=4e-3)),
        ("shift8", dict(shift=8)),
        ("n20k", dict(n=20_000)),
        ("n100k_e8_wide", dict(n=100_000, epochs=8, widths=(48, 96, 128, 128, 96), fc=192)),
        ("B7", dict(var="B")),
        ("Amerge", dict(merge=True)),
        ("Bmerge", dict(var="B", merge=True)),
        ("B7_e12", dict(var="B", epochs=12)),
    ]
    only = sys.argv[1:]
    if os.environ.get("SMOKE"):
        grid = [("smoke", dict(n=NTR, epochs=1))]
    for tag, kw in grid:
        if only and tag not in only:
            continue
        run(tag, **kw)
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
