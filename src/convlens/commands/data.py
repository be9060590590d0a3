"""`convlens data`: check a data spec (items, classes, sizes, modes, unreadable files)."""
from __future__ import annotations

from .common import (
    command,
    data_from,
    data_options,
    item_indices,
    lens_from,
    model_options,
    options,
)


def _data_opts(p):
    data_options(p)
    model_options(p, required=False)


@command("data", "check a data spec: items per class, image sizes and modes, unreadable files")
@options(_data_opts)
def cmd_data(args) -> int:
    """Read every item of a dataset once and summarise: items per class, image sizes and colour
    modes, and the files that cannot be used (skipped with a warning each, counted). Without
    --model the images are read as they are (any sizes); with --model they are also
    preprocessed for it, as every view would."""
    from collections import Counter

    from ..data import Item, Loader
    from ..data.images import image_facts

    lens = lens_from(args) if args.model else None
    ds = data_from(args, lens)
    idx = item_indices(args, len(ds))
    counts: Counter = Counter()
    sizes: Counter = Counter()
    modes: Counter = Counter()
    skipped = []
    if lens is not None:  # as the views see it: preprocessed and batched
        loader = Loader(ds, batch_size=args.batch_size, workers=args.workers, progress=True,
                        indices=idx)
        for batch in loader:
            counts.update(batch.labels.tolist())
            sizes["x".join(map(str, batch.images.shape[1:]))] += len(batch)
        skipped = loader.skipped
    else:  # one item at a time, as stored: sizes and modes may all differ
        from tqdm.auto import tqdm

        for i in tqdm(idx if idx is not None else range(len(ds)), desc="items", unit="img",
                      leave=False):
            it = ds.raw(i)
            if not isinstance(it, Item):
                skipped.append(it)
                continue
            counts[it.label] += 1
            size, mode = image_facts(it.image)
            sizes[size] += 1
            modes[mode] += 1
        for s in skipped:
            print(f"convlens: warning: skipped {s.source}: {s.reason}")
    good = sum(counts.values())
    total = len(idx) if idx is not None else len(ds)
    print(f"{args.data}: {total} items, {good} readable, {len(skipped)} skipped")
    print("  sizes (HxW" + (", as preprocessed for the model" if lens is not None else "") + "): "
          + _top(sizes))
    if modes:
        print("  modes: " + _top(modes))
    if counts:
        names = ds.classes
        print("  items per class:")
        for k in sorted(counts):
            name = (names[k] if names and 0 <= k < len(names)
                    else ("(no label)" if k < 0 else str(k)))
            print(f"  {k:>4}  {name:<24} {counts[k]}")
    return 0


def _top(counter, n: int = 6) -> str:
    items = counter.most_common()
    text = ", ".join(f"{k} ({v})" for k, v in items[:n])
    return text + (f", and {len(items) - n} more" if len(items) > n else "")
