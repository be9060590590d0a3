"""Architecture comparison for builtin:stamps-net on the 2-core CPU: equal training, three nets.

    python docs/stamps_architecture_compare.py cache 60000  # render once (2 processes)
    python docs/stamps_architecture_compare.py train --arch alex  # the AlexNet shape shipped before
    python docs/stamps_architecture_compare.py train --arch res --w 24  # the small ResNet (shipped)
    python docs/stamps_architecture_compare.py train --arch vgg1  # plain conv-BN-ReLU, global pool

Every run trains on the first `--items` cached training items for `--epochs` epochs with the
loop of convlens.models.train.fit (AdamW weight decay `--wd`, one-cycle peak `--lr`, shift 4 +
flip, label smoothing 0.1, seed 0) and prints top-1 on the first 3,000 items of
`builtin:stamps:test` (unseen stamps) and `:seen` after every epoch. docs/models.md quotes its
results of 2026-11-30. The nets here use PyTorch's default conv initialisation; the shipped
`convlens.models.nets.SmallResNet` uses He initialisation, otherwise "res" is the same net.
"""
import argparse
import math
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
CACHE = "/tmp/stamps_compare_cache.npz"


def _chunk(args):
    from convlens.data import stamps
    split, a, b = args
    x, y = stamps.render_batch(split, range(a, b))
    return np.asarray(x), np.asarray(y)


def _build(split, n, pool, step=2000):
    parts = pool.map(_chunk, [(split, a, min(n, a + step)) for a in range(0, n, step)])
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def cache(n: int) -> None:
    t = time.time()
    with Pool(2) as pool:
        xtr, ytr = _build("train", n, pool)
        xte, yte = _build("test", 3000, pool)
        xse, yse = _build("seen", 3000, pool)
    print("render", time.time() - t, xtr.shape, flush=True)
    np.savez(CACHE, xtr=xtr, ytr=ytr, xte=xte, yte=yte, xse=xse, yse=yse)


def train(argv) -> None:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from convlens.models.nets import SmallAlexNet
    from convlens.models.train import augment, to_tensor
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="alex")
    p.add_argument("--items", type=int, default=30000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--mixup", type=float, default=0.0)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--bs", type=int, default=128)
    p.add_argument("--ls", type=float, default=0.1)
    p.add_argument("--w", type=int, default=32)
    p.add_argument("--save", default="")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    d = np.load(CACHE)
    m, s = (0.5,) * 3, (0.25,) * 3
    xtr = to_tensor(d["xtr"][:a.items], m, s)
    ytr = torch.tensor(d["ytr"][:a.items]).long()
    xte = to_tensor(d["xte"], m, s)
    yte = torch.tensor(d["yte"]).long()
    xse = to_tensor(d["xse"], m, s)
    yse = torch.tensor(d["yse"]).long()

    def cbr(i, o, k=3, st=1):
        return [nn.Conv2d(i, o, k, st, k // 2, bias=False), nn.BatchNorm2d(o),
                nn.ReLU(inplace=True)]
    def vgg(w=32, double=True):
        L = cbr(3, w, 5, 2) + [nn.MaxPool2d(2)]
        c = w
        for o in (2 * w, 4 * w):
            L += cbr(c, o) + (cbr(o, o) if double else []) + [nn.MaxPool2d(2)]
            c = o
        L += cbr(c, 8 * w)
        return nn.Sequential(*L, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3),
                             nn.Linear(8 * w, 6))
    class Res(nn.Module):
        def __init__(s, i, o, st):
            super().__init__()
            s.c1 = nn.Conv2d(i, o, 3, st, 1, bias=False)
            s.b1 = nn.BatchNorm2d(o)
            s.c2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
            s.b2 = nn.BatchNorm2d(o)
            s.sc = None if (i == o and st == 1) else nn.Sequential(
                nn.Conv2d(i, o, 1, st, bias=False), nn.BatchNorm2d(o))
        def forward(s, x):
            y = F.relu(s.b1(s.c1(x)))
            y = s.b2(s.c2(y))
            return F.relu(y + (x if s.sc is None else s.sc(x)))
    def resnet(w=32):
        return nn.Sequential(*cbr(3, w, 5, 2), nn.MaxPool2d(2), Res(w, w, 1), Res(w, 2 * w, 2),
                             Res(2 * w, 4 * w, 2), Res(4 * w, 8 * w, 2), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Dropout(0.3), nn.Linear(8 * w, 6))
    model = {"alex": lambda: SmallAlexNet(3, (32, 64, 96, 96, 64), 7, 4, 256, 6, 3),
             "alex52": lambda: SmallAlexNet(3, (32, 64, 96, 96, 64), 5, 2, 256, 6, 3),
             "vgg": lambda: vgg(a.w), "vgg1": lambda: vgg(a.w, False),
             "res": lambda: resnet(a.w)}[a.arch]()
    if a.arch == "alex52":
        model.features[2] = nn.MaxPool2d(4)
    print(a, sum(p.numel() for p in model.parameters()), flush=True)
    model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.wd)
    per = math.ceil(len(xtr) / a.bs)
    steps = per * a.epochs
    sch = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps, pct_start=0.25)
    gen = torch.Generator().manual_seed(0)
    @torch.no_grad()
    def acc(x, y, tta=False):
        model.eval()
        c = 0
        for i in range(0, len(x), 500):
            xb = x[i:i+500].contiguous(memory_format=torch.channels_last)
            o = model(xb).softmax(1)
            if tta:
                o = o + model(xb.flip(3)).softmax(1)
            c += (o.argmax(1) == y[i:i+500]).sum().item()
        model.train()
        return c / len(x)
    t0 = time.time()
    for ep in range(a.epochs):
        order = torch.randperm(len(xtr), generator=gen)
        tl = 0
        for i in range(0, len(xtr), a.bs):
            idx = order[i:i+a.bs]
            xb = augment(xtr[idx], gen, 4, True).contiguous(memory_format=torch.channels_last)
            yb = ytr[idx]
            if a.mixup > 0:
                lam = float(np.random.beta(a.mixup, a.mixup))
                perm = torch.randperm(len(idx), generator=gen)
                xb = lam * xb + (1 - lam) * xb[perm]
                out = model(xb)
                loss = (lam * F.cross_entropy(out, yb, label_smoothing=a.ls)
                        + (1 - lam) * F.cross_entropy(out, yb[perm], label_smoothing=a.ls))
            else:
                out = model(xb)
                loss = F.cross_entropy(out, yb, label_smoothing=a.ls)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sch.step()
            tl += loss.item()
        print(f"ep {ep+1} loss {tl/per:.3f} unseen {acc(xte, yte):.3f} seen {acc(xse, yse):.3f} "
              f"t {time.time()-t0:.0f}", flush=True)
    print(f"FINAL {a.arch} unseen {acc(xte, yte):.4f} seen {acc(xse, yse):.4f} "
          f"tta {acc(xte, yte, True):.4f}/{acc(xse, yse, True):.4f} t {time.time()-t0:.0f}",
          flush=True)
    if a.save:
        torch.save(model.state_dict(), a.save)


if __name__ == "__main__":
    if sys.argv[1] == "cache":
        cache(int(sys.argv[2]))
    else:
        train(sys.argv[2:])
