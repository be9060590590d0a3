"""convlens: see what a convolutional network has learned.

The public API: load a model and data, then call one function per view.

Example::

    import convlens
    lens = convlens.load_model("builtin:fashion-net")
    for info in lens.layers():
        print(info.name, info.shape, info.field)

Every view's function (and its family's result types) is public under the name its record
declares (`convlens.views.View`, in ``techniques/<family>/__init__.py``): nothing else lists
them. Names are imported on first use, so that ``convlens.report`` (which never needs torch) can
be used without importing torch.
"""
from __future__ import annotations

__version__ = "0.1.0"

#: the public names that are not views: the model, the data, hooks and errors
_CORE = {
    "Lens": "lens:Lens", "LayerInfo": "lens:LayerInfo", "Field": "receptive:Field",
    "capture": "hooks:capture", "relu_rule": "hooks:relu_rule", "load_model": "models:load_model",
    "load_data": "data:load_data", "ConvlensError": "errors:ConvlensError",
    "RunSettings": "engine.settings:RunSettings", "load_result": "results:load_result",
    "View": "views:View",
}


def _exports() -> dict[str, str]:
    """Public name -> ``"module:attribute"``: the core names, then each view (its function and
    the further names its family exports), read from the view records (`convlens.views`)."""
    from .techniques import all_views

    out = dict(_CORE)
    for view in all_views():
        out[view.name] = view.function
        out.update(view.exports)
    return out


def __getattr__(name: str):
    if name == "__all__":
        return sorted(_exports()) + ["__version__"]
    path = _CORE.get(name) or (_exports().get(name) if not name.startswith("__") else None)
    if path is None:
        raise AttributeError(f"module 'convlens' has no attribute {name!r}")
    from .views import resolve

    value = resolve(path)
    globals()[name] = value
    return value


def __dir__():
    return sorted(_exports()) + ["__version__"]
