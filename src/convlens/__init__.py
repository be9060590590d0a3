"""convlens: see what a convolutional network has learned.

The public API: load a model and data, then call one function per view.

Example::

    import convlens
    lens = convlens.load_model("builtin:tiny")
    for info in lens.layers():
        print(info.name, info.shape, info.field)
"""
from .data import load_data
from .errors import ConvlensError
from .evaluate import evaluate
from .hooks import capture
from .lens import LayerInfo, Lens
from .models import load_model
from .receptive import Field
from .techniques.activations import activation_stats, activations
from .techniques.filters import filters
from .techniques.monitor import TrainingMonitor

__version__ = "0.1.0"

__all__ = ["Lens", "LayerInfo", "Field", "capture", "load_model", "load_data", "ConvlensError",
           "evaluate", "activations", "activation_stats", "filters", "TrainingMonitor",
           "__version__"]
