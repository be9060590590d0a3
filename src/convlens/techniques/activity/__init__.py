"""The activity family (the seed's §1): the layer table, layer activations, dead filters over a
dataset, filter weights and a training run's monitor."""
from ...views import View, register

VIEWS = register(
    View(name="layers", section=1, title="layers",
         line="every layer's output shape and receptive field",
         function="techniques.activity.layers:layers", result="lens:LayersResult",
         inputs=None, takes="model", demo="techniques.activity.demo:layers",
         exports={"LayersResult": "lens:LayersResult"}),
    View(name="activations", section=1, title="activations",
         line="every channel of a layer as a tile, for a few images",
         function="techniques.activity.activations:activations",
         result="techniques.activity.results:ActivationsResult",
         inputs=None, takes="images", demo="techniques.activity.demo:activations",
         exports={"ActivationsResult": "techniques.activity.results:ActivationsResult"}),
    View(name="activation_stats", section=1, title="dead filters",
         line="per channel, how often its map is all zero over a dataset",
         function="techniques.activity.activations:activation_stats",
         result="techniques.activity.results:StatsResult",
         inputs=None, takes="data", quick={"n": 8},
         demo="techniques.activity.demo:activation_stats",
         exports={"StatsResult": "techniques.activity.results:StatsResult"}),
    View(name="filters", section=1, title="filters",
         line="the weights as pictures, with a noise verdict",
         function="techniques.activity.filters:filters",
         result="techniques.activity.results:FiltersResult",
         inputs=None, takes="model", demo="techniques.activity.demo:filters",
         exports={"FiltersResult": "techniques.activity.results:FiltersResult"}),
    View(name="training_monitor", section=1, title="training monitor",
         line="dead channels, sparsity and filter noise as training goes on",
         function="techniques.activity.monitor:TrainingMonitor",
         result="techniques.activity.results:MonitorResult",
         inputs=None, command_line=False,  # runs inside `convlens train --monitor`
         exports={"TrainingMonitor": "techniques.activity.monitor:TrainingMonitor",
                  "MonitorResult": "techniques.activity.results:MonitorResult"}),
)
