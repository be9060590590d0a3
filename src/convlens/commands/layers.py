"""`convlens layers`: every layer of a model with its output shape and receptive field."""
from __future__ import annotations

import json
import sys

from .common import (
    command,
    format_option,
    layers_option,
    lens_from,
    model_options,
    options,
)


def _layers_opts(p):
    model_options(p)
    layers_option(p, "show only these layers; default every named module")
    format_option(p)
    p.add_argument("--out", metavar="DIR", help="also save the table as a result (for the report)")


@command("layers", "list every layer: type, output shape, receptive field size/stride/centre")
@options(_layers_opts)
def cmd_layers(args) -> int:
    """Print the layer table of a model (one dry run at the model's input size)."""
    from ..lens import format_layers

    lens = lens_from(args)
    infos = lens.layers()
    if args.layers:
        for name in args.layers:
            lens.layer(name)  # an unknown name: error naming the close matches
        infos = [i for i in infos if i.name in args.layers]
    if args.format == "table":
        print(f"# {lens.name} ({lens.weights}): input {'x'.join(map(str, lens.input_size))}, "
              f"{lens.num_classes or '?'} classes; receptive fields in input pixels")
        print(format_layers(infos))
    elif args.format == "json":
        print(json.dumps([i.row() for i in infos], indent=1))
    else:
        import csv
        rows = [i.row() for i in infos]
        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["name"])
        w.writeheader()
        w.writerows(rows)
    if args.out:
        from ..lens import LayersResult
        LayersResult(infos).save(args.out, lens=lens, command=["convlens"] + sys.argv[1:])
    return 0
