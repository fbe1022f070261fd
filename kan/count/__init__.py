"""Parameter and FLOP counts of every model kind, and widths matched to a budget.

- :func:`count_parameters`, :func:`count_flops`: of a built model (package or ``"kanbefair"`` convention);
- :func:`xla_flops`: XLA's cost analysis of the jitted forward, per sample;
- :data:`KINDS`, :func:`build`, :func:`spec_counts`: model kinds by name ("mlp", "kan", "rbf",
  "chebyshev", "fourier", "relukan", "grkan", "afkan", "skan", "spline_mlp"), counted from widths alone;
- :func:`match_widths`: hidden widths that put a kind within 5% of a parameter or FLOP budget.
"""

from .counting import (CONVENTIONS, XlaCost, count_flops, count_parameters, kanbefair_counts,
                       kanbefair_layer_counts, kanbefair_spec_counts, xla_flops)
from .kinds import ACTIVATION_FLOPS, KINDS, Kind, build, get_kind, spec_counts
from .matching import Match, match_widths
from ..layers.spline_mlp import LayerStack, SplineActivation, SplineMLP

__all__ = [
    "ACTIVATION_FLOPS",
    "CONVENTIONS",
    "KINDS",
    "Kind",
    "LayerStack",
    "Match",
    "SplineActivation",
    "SplineMLP",
    "XlaCost",
    "build",
    "count_flops",
    "count_parameters",
    "get_kind",
    "kanbefair_counts",
    "kanbefair_layer_counts",
    "kanbefair_spec_counts",
    "match_widths",
    "spec_counts",
    "xla_flops",
]
