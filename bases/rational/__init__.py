"""The group rational basis of KAT and its starting coefficients.

- :mod:`~bases.rational.basis`: the ``Rational`` basis (evaluated through ``bases.kernels``);
- :mod:`~bases.rational.init_table`: fitted coefficients per activation and form (``rational_init``);
- :mod:`~bases.rational.fit_init`: refits that table (``python -m bases.rational.fit_init [--write]``).
"""

from .basis import Rational
from .init_table import rational_init

__all__ = ["Rational", "rational_init"]
