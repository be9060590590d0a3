"""Faithfulness: do the maps point at what the model uses? (METHODS.md, "Faithfulness"; issue
26.) Scores that perturb the image in a map's order or at random and watch the model:
deletion and insertion (RISE), ROAD (MoRF and LeRF, noisy linear imputation), average drop
and increase in confidence (Grad-CAM++), infidelity and max-sensitivity (Yeh et al. 2019),
with a bootstrap interval over images.

The compute core is in place (`metrics`, `robustness`, `substrates`); the view records, the
command, results, figures and demo step are not declared yet, so this family has no views.
"""
from ...views import register

#: no views yet: the records come with the result type and the command (issue 26, part two)
VIEWS = register()
