"""KAN layers, models, training, pruning and grid refinement (JAX + Equinox).

Subpackages: :mod:`kan.layers` (edge-sum KAN layer, GR-KAN, AF-KAN, S-KAN, multiplication nodes),
:mod:`kan.train` (``fit``, the regulariser, data sets, the sharded train step, schedules, training
checkpoints), :mod:`kan.edit` (pruning, grids, surgery, calibration), :mod:`kan.nn` (attention,
transformer blocks, ViT/KAT, GPT). The public names below are the stable way in.
"""

from . import count, edit, layers, nn, train

from .layers.afkan_layer import AFKANLayer
from .count import count_flops, count_parameters, match_widths, xla_flops
from .cpu_heap import keep_freed_heap
from .edit.calibrate import CalibrationRecord, calibrate, layer_variances, register_layer_kind
from .train.data import create_dataset
from .train.fit import check_data, dataset_pairs, fit, mse
from .edit.grid import refine, refit_basis, update_grid, update_layer_grid
from .io import load, read_header, save
from .layers.group_layer import GroupKANLayer
from .layers.layer import KANLayer
from .layers.conv import ConvKAN2d
from .layers.selectable_conv import SelectableConvKAN2d, fit_selectable_conv
from .layers.pade import PadeLayer, PadeStack
from .layers.pade_conv import PadeConv2d
from .layers.rational_activation import RationalActivation, RationalMLP
from .model import BASIS_NAMES, KAN, MLP, basis_factory_from_name
from .edit.prune import drop_disconnected_nodes, prune, prune_edges, prune_nodes
from .plot import plot, plot_edge
from .layers.selectable_layer import (CANDIDATES, InputAffine, SelectableKANLayer, SelectedKANLayer, Selection,
                               adapt_basis, anneal_temperature, fit_selectable, nice_ranges, plot_selection,
                               set_temperature, split_rows)
from .train.regularization import attribution_scores, sparsity_regularizer

__all__ = [
    "AFKANLayer",
    "CANDIDATES",
    "InputAffine",
    "adapt_basis",
    "nice_ranges",
    "split_rows",
    "SelectableKANLayer",
    "SelectedKANLayer",
    "Selection",
    "anneal_temperature",
    "fit_selectable",
    "plot_selection",
    "set_temperature",
    "KAN",
    "GroupKANLayer",
    "KANLayer",
    "ConvKAN2d",
    "SelectableConvKAN2d",
    "fit_selectable_conv",
    "PadeConv2d",
    "PadeLayer",
    "PadeStack",
    "RationalActivation",
    "RationalMLP",
    "MLP",
    "BASIS_NAMES",
    "CalibrationRecord",
    "calibrate",
    "layer_variances",
    "register_layer_kind",
    "attribution_scores",
    "basis_factory_from_name",
    "create_dataset",
    "dataset_pairs",
    "check_data",
    "count_flops",
    "count_parameters",
    "drop_disconnected_nodes",
    "fit",
    "keep_freed_heap",
    "load",
    "match_widths",
    "mse",
    "plot",
    "plot_edge",
    "prune",
    "prune_edges",
    "prune_nodes",
    "read_header",
    "refine",
    "refit_basis",
    "save",
    "sparsity_regularizer",
    "update_grid",
    "update_layer_grid",
    "xla_flops",
]
