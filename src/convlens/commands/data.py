"""`convlens data`: check a data spec (items, classes, unreadable files)."""
from __future__ import annotations

from .common import command, data_from, data_options, lens_from, model_options, options


def _data_opts(p):
    data_options(p)
    model_options(p, required=False)


@command("data", "check a data spec: count items and classes, report unreadable files")
@options(_data_opts)
def cmd_data(args) -> int:
    """Read every item of a dataset once (preprocessed for --model if given) and summarise."""
    from collections import Counter

    from ..data import Loader

    lens = lens_from(args) if args.model else None
    ds = data_from(args, lens)
    loader = Loader(ds, batch_size=args.batch_size, workers=args.workers, progress=True)
    counts: Counter = Counter()
    shape = None
    for batch in loader:
        counts.update(batch.labels.tolist())
        shape = tuple(batch.images.shape[1:])
    good = sum(counts.values())
    print(f"{args.data}: {len(ds)} items, {good} loaded, {len(loader.skipped)} skipped"
          + (f", image shape {'x'.join(map(str, shape))}" if shape else ""))
    if counts:
        names = ds.classes
        for k in sorted(counts):
            name = names[k] if names and 0 <= k < len(names) else ("(no label)" if k < 0 else str(k))
            print(f"  {k:>4}  {name:<24} {counts[k]}")
    return 0
