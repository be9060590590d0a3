"""`convlens report` and `convlens serve`: the static HTML site."""
from __future__ import annotations

from .common import command, on_interrupt, options, port_number


def _report_opts(p):
    p.add_argument("inputs", nargs="+", metavar="DIR",
                   help="result folders (with manifest.json) or folders holding them")
    p.add_argument("--out", metavar="SITE", default="convlens-site",
                   help="folder for the site (default: convlens-site)")
    p.add_argument("--title", default="convlens report", help="the site's title")


@command("report", "build a static HTML site (opens from disk) from saved results")
@options(_report_opts)
def cmd_report(args) -> int:
    """Build the report from saved results only (manifests, arrays, pictures): an index with the
    model's layers and what was run, and a page per result, with pages per layer, unit and image
    where the view has them. Open SITE/index.html in a browser, or `convlens serve SITE`."""
    from ..report.site import build_site

    index = build_site(args.inputs, args.out, title=args.title)
    print(f"report: {index}")
    return 0


def _serve_opts(p):
    p.add_argument("site", metavar="SITE", help="the site folder written by `convlens report`")
    p.add_argument("--port", type=port_number, default=8000,
                   help="port on localhost (default 8000)")


@command("serve", "serve a report on http://localhost:PORT (Ctrl-C stops)")
@options(_serve_opts)
def cmd_serve(args) -> int:
    """Serve SITE on localhost only; the site also opens straight from disk."""
    import functools
    import http.server
    import os

    from ..errors import ConvlensError

    if not os.path.isfile(os.path.join(args.site, "index.html")):
        raise ConvlensError(f"{args.site} has no index.html: build it with `convlens report`")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=args.site)
    try:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    except OSError as e:
        raise ConvlensError(f"cannot serve on port {args.port} ({e.strerror}): another program "
                            "uses it; give --port N") from None
    with httpd:
        print(f"serving {args.site} on http://localhost:{args.port}/ (Ctrl-C stops)")
        on_interrupt(args, "stopped serving")
        httpd.serve_forever()
    return 0
