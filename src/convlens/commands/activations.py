"""`convlens activations`, `convlens activation-stats`, `convlens filters` (the seed's §1)."""
from __future__ import annotations

from .common import (
    command,
    data_from,
    data_options,
    fraction,
    image_options,
    images_from,
    item_indices,
    layers_option,
    lens_from,
    model_options,
    options,
    output_options,
    run_from,
    save_result,
)


def _activations_opts(p):
    model_options(p)
    image_options(p)
    layers_option(p, "layers to show; default every ReLU (post-ReLU maps)")
    output_options(p, "activations")


@command("activations", "activation maps of images, one tile grid per image and layer")
@options(_activations_opts)
def cmd_activations(args) -> int:
    """Show the activation maps of a forward pass: per image and layer, every channel as a grey
    tile on one shared scale per layer (per-tile scaling would hide dead channels). The tensor
    is the output of the named module: a ReLU module gives post-ReLU maps."""
    from ..techniques.activity.activations import activations

    lens = lens_from(args)
    x, _ = images_from(args, lens)
    res = activations(lens, x, args.layers)
    save_result(res, args, lens)
    return 0


def _stats_opts(p):
    model_options(p)
    data_options(p)
    layers_option(p, "layers; default every ReLU")
    p.add_argument("--threshold", type=fraction, default=0.99,
                   help="a channel is dead when its map is all zero on at least this share of "
                        "inputs, in (0, 1] (default 0.99)")
    output_options(p, "stats")


@command("activation-stats", "dead filters and sparsity of every layer over a dataset")
@options(_stats_opts)
def cmd_activation_stats(args) -> int:
    """Stream a dataset through the model and report, per channel, the share of inputs whose map
    is all zero, sparsity (share of exact zeros), mean and max; per layer, the share of dead
    channels. Writes channels/layers tables (Parquet and CSV) and a bar plot per layer."""
    from ..techniques.activity.activations import activation_stats

    lens = lens_from(args)
    data = data_from(args, lens)
    res = activation_stats(lens, data, args.layers, threshold=args.threshold,
                           indices=item_indices(args, len(data)), run=run_from(args))
    print(res.layers.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    save_result(res, args, lens)
    return 0


def _filters_opts(p):
    model_options(p)
    layers_option(p, "conv layers, or linear layers that see the image; default the first "
                     "conv layer")
    p.add_argument("--threshold", type=fraction, default=None,
                   help="noise score above which a filter is called noisy (default 0.69)")
    output_options(p, "filters")


@command("filters", "filter weights as pictures, with a noise score and verdict per filter")
@options(_filters_opts)
def cmd_filters(args) -> int:
    """Show the weights: the first conv layer as RGB (or grey) tiles, deeper conv layers as grids
    of input-channel slices, a linear layer that sees the image reshaped to the image. Each
    filter gets a noise score (share of spectral energy above half Nyquist) and a verdict."""
    from pathlib import Path

    from ..techniques.activity.filters import NOISE_THRESHOLD, filters

    lens = lens_from(args)
    threshold = NOISE_THRESHOLD if args.threshold is None else args.threshold
    layers = args.layers or [None]
    out = args.out
    for layer in layers:
        res = filters(lens, layer, threshold=threshold)
        print(f"{res.layer}: {res.verdict} (median noise score {res.info()['median_score']:.3f}, "
              f"{res.info()['noisy_filters']}/{len(res.scores)} filters noisy, "
              f"threshold {threshold})")
        if len(layers) > 1:
            args.out = str(Path(out) / res.layer)
        save_result(res, args, lens)
    return 0
