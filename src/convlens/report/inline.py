"""Small HTML snippets for notebooks: pictures embedded as data URIs, every string escaped."""
from __future__ import annotations

import base64
import html
import io

import numpy as np
from PIL import Image


def png_data_uri(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def pictures_html(pictures: dict, limit: int = 24) -> str:
    """A flex row of titled pictures (arrays only; callables are skipped)."""
    cells = []
    for name, pic in list(pictures.items())[:limit]:
        if callable(pic):
            continue
        cells.append(f'<figure style="margin:4px"><img src="{png_data_uri(pic)}" '
                     f'style="image-rendering:pixelated;max-width:320px"/>'
                     f'<figcaption style="font-size:11px">{html.escape(str(name))}</figcaption></figure>')
    return '<div style="display:flex;flex-wrap:wrap">' + "".join(cells) + "</div>"
