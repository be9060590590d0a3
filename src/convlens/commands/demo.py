"""`convlens demo`: every view on the built-in models and data, then the report."""
from __future__ import annotations

from ..cli import command, options


def _demo_opts(p):
    p.add_argument("--out", metavar="DIR", default="convlens-demo",
                   help="folder for the results and the site (default: convlens-demo)")
    p.add_argument("--quick", action="store_true",
                   help="fewer images (about 2 minutes on 2 cores; what the tests run)")


@command("demo", "run every view on the built-in models and data, then build the report")
@options(_demo_opts)
def cmd_demo(args) -> int:
    """Run every view on builtin:fashion-net with the real Fashion-MNIST test set and on
    builtin:shapes-net with procedural shapes (offline), save each result under OUT/<model>/,
    and build the report in OUT/site. About 10 minutes on 2 CPU cores; --quick about 2."""
    from ..demo import run_demo

    index = run_demo(args.out, quick=args.quick)
    print(f"report: {index}\nopen it in a browser (file://{index.resolve()}), or run: "
          f"convlens serve {index.parent}")
    return 0
