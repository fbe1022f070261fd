"""The B-spline basis of the original KAN and its evaluation paths.

- :mod:`~bases.bspline.basis`: the ``BSpline`` basis (knots, features, second moments, grid updates);
- :mod:`~bases.bspline.features`: dense features with their closed-form derivative (custom JVP);
- :mod:`~bases.bspline.local`: the ``k + 1`` non-zero local pieces of each point;
- :mod:`~bases.bspline.contract`: the edge sum from the local pieces (dense or gathered, row blocks);
- :mod:`~bases.bspline.moments`: Gaussian second moments in closed form (NumPy, no compile).
"""

from .basis import BSpline
from .contract import bspline_edge_sum

__all__ = ["BSpline", "bspline_edge_sum"]
