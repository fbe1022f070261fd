"""Univariate basis-function families for KAN layers: features ``(..., d) -> (..., d, k)``."""

from .xla_cpu import configure_xla_cpu

configure_xla_cpu()  # before anything here compiles: see bases.xla_cpu


from .basis import Basis, check_last_dim, gaussian_expectation, merge_last_two
from .activation_pair import ACTIVATIONS, FUNCTION_TYPES, ActivationPair, get_activation, get_function_type
from .bspline import BSpline, bspline_edge_sum
from .chebyshev import Chebyshev
from .fourier import Fourier
from .rbf import GaussianRBF
from .relu_kan import ReLUKAN
from .rational import Rational, rational_init
from .buffers import buffer_field, count_parameters, host_array, trainable_filter
from .symbolic_edges import SymbolicEdges
from .symbolic_functions import SafeFunction, evaluate as evaluate_symbolic, get_jnp_function, register_jnp_function

__all__ = [
    "ACTIVATIONS",
    "ActivationPair",
    "Chebyshev",
    "FUNCTION_TYPES",
    "Fourier",
    "GaussianRBF",
    "ReLUKAN",
    "Rational",
    "rational_init",
    "get_activation",
    "get_function_type",
    "Basis",
    "BSpline",
    "bspline_edge_sum",
    "buffer_field",
    "check_last_dim",
    "merge_last_two",
    "count_parameters",
    "host_array",
    "gaussian_expectation",
    "trainable_filter",
    "SafeFunction",
    "SymbolicEdges",
    "evaluate_symbolic",
    "get_jnp_function",
    "register_jnp_function",
]
