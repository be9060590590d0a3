"""`convlens tsne-grid` (the seed's §3): t-SNE of CNN codes, as a scatter of thumbnails and a
grid."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConvlensError
from .common import (
    command,
    data_from,
    data_options,
    item_indices,
    lens_from,
    model_options,
    options,
    output_options,
    positive_float,
    positive_int,
    run_from,
    save_result,
)


def _grid(s: str):
    try:
        v = tuple(int(a) for a in s.lower().split("x")) if "x" in s.lower() else (int(s),)
    except ValueError:
        v = ()
    if len(v) not in (1, 2) or min(v) < 1:
        raise argparse.ArgumentTypeError(f"expected SIDE or ROWSxCOLS, e.g. 50 or 40x60, got {s!r}")
    return v if len(v) == 2 else v[0]


def _tsne_opts(p):
    src = p.add_argument_group("codes", "either a saved scan, or a model and data to run")
    src.add_argument("--scan", metavar="DIR",
                     help="a `convlens scan` folder: its codes.npy, code_index.npy and "
                          "predictions.parquet (thumbnails from the data spec it names)")
    src.add_argument("--code-layer", default="auto", metavar="NAME",
                     help="code layer with --model: 'auto' (default) is the input of the last "
                          "nn.Linear, e.g. fc7 after its ReLU")
    model_options(p, required=False)
    data_options(p, required=False, n_help="5000 with --data, every scanned image with --scan")
    g = p.add_argument_group("t-SNE and pictures")
    g.add_argument("--perplexity", type=positive_float, default=30.0,
                   help="t-SNE perplexity (default 30)")
    g.add_argument("--k", type=positive_int, default=10,
                   help="neighbours for the kNN accuracy and trustworthiness (default 10)")
    g.add_argument("--pca", type=positive_int, default=50, metavar="DIMS",
                   help="PCA dimensions before t-SNE (default 50)")
    g.add_argument("--grid", type=_grid, default=None, metavar="SIDE|RxC",
                   help="grid size (default 50x50, smaller for fewer than 2500 images)")
    g.add_argument("--select", choices=("nearest", "sample"), default="nearest",
                   help="with more images than cells: 'nearest' (default) lets the assignment "
                        "pick the image nearest each cell; 'sample' takes a uniform sample")
    g.add_argument("--border", choices=("class", "pred", "correct", "none"), default="class",
                   help="colour of the thumbnails' frames (default class: the true label)")
    g.add_argument("--thumb", type=positive_int, default=None, metavar="PX",
                   help="thumbnail side in pixels (default: the image size, at most 32)")
    g.add_argument("--canvas", type=positive_int, default=None, metavar="PX",
                   help="scatter canvas side in pixels (default from the number of images)")
    g.add_argument("--jobs", type=int, default=1,
                   help="threads for t-SNE and neighbour search (default 1; -1: all cores)")
    output_options(p, "tsne")


@command("tsne-grid", "t-SNE of CNN codes: scatter of thumbnails, image grid, kNN accuracy")
@options(_tsne_opts)
def cmd_tsne_grid(args) -> int:
    """Embed the CNN codes (the input of the last linear layer) of a set of images in 2-D:
    PCA to 50 dimensions, then t-SNE (openTSNE, FFT gradients). Writes the embedding
    (index, label, prediction, correctness, x, y, grid cell), a scatter of thumbnails at their
    positions (a thumbnail never covers another: the ones that would are drawn as dots) and a
    grid of images placed by a linear assignment that minimises the total squared move.
    Prints kNN label accuracy (k=10) in 2-D and in code space, and trustworthiness.
    Use `--scan DIR` for the codes of a saved scan, or `--model SPEC --data SPEC [--n 5000]`."""
    from ..techniques.tsne.tsne import tsne_grid
    from ..techniques.units.codes import codes_from_scan

    if bool(args.scan) == bool(args.model):
        raise ConvlensError("give either --scan DIR or --model SPEC --data SPEC")
    lens = None
    if args.scan:
        codes = codes_from_scan(args.scan, n=args.n, seed=args.seed, sample=args.sample,
                                data=args.data, thumb=args.thumb, max_pixels=args.max_pixels)
    else:
        if not args.data:
            raise ConvlensError("--model needs --data SPEC (the images to embed)")
        from ..techniques.units.codes import cnn_codes
        lens = lens_from(args)
        data = data_from(args, lens)
        args.n = 5000 if args.n is None else args.n
        codes = cnn_codes(lens, data, layer=args.code_layer, seed=args.seed,
                          thumb=args.thumb or 32, indices=item_indices(args, len(data)),
                          run=run_from(args))
    res = tsne_grid(codes, perplexity=args.perplexity, seed=args.seed, pca_dims=args.pca, k=args.k,
                    grid=args.grid, select=args.select, border=args.border, n_jobs=args.jobs,
                    canvas=args.canvas, thumb=args.thumb)
    if args.scan:
        res.params["scan"] = str(args.scan)
    print(res.summary())
    model = None
    if args.scan:
        from ..results import SavedResult
        model = SavedResult(args.scan).manifest.get("model")
    save_result(res, args, lens, model=model)
    out = Path(args.out)
    print("pictures: " + " ".join(str(out / f"{name}.png") for name in res.pictures()))
    return 0
