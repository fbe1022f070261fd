"""Starting coefficients of the safe rational ``P/Q`` for common activations.

Fitted by ``python -m bases.rational.fit_init`` in the *same form that is evaluated* (least squares
then Lawson reweighting towards the minimax fit on a dense grid over ``[-3, 3]``, float64). Keys are
``(form, name, numerator_order, denominator_order)``; values ``(a_0..a_m, b_1..b_n, max_error)``
where ``max_error`` is the fit's maximum absolute error on ``[-3, 3]``. ``identity`` is exact for
every order. Forms and the rational itself: see ``bases.kernels.rational_math``.
"""

from __future__ import annotations

import numpy as np

ALIASES = {"silu": "swish", "linear": "identity", "leaky": "leaky_relu"}

# BEGIN GENERATED (python -m bases.rational.fit_init --write)
_TABLE = {
    ('A', 'identity', 5, 4): (
        (0.0, 1.0, 0.0, 0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.0),
        0.000e+00,
    ),
    ('A', 'relu', 5, 4): (
        (0.015379990388388939, 0.5369857802673986, 2.6560814580112386, 4.096744265133905, 2.2945557589854584, 0.41042637471864396),
        (-0.5737760161709337, 7.0817497406630485, 0.7092825977748776, 0.6835906016850328),
        1.545e-02,
    ),
    ('A', 'leaky_relu', 5, 4): (
        (0.01537497994362069, 0.5005689105518552, 2.3112866259297125, 3.41525906655767, 1.7719171213520322, 0.30889675507882614),
        (-1.6522861242642164e-14, 6.753692849462965, -0.0004933391702830784, 0.612480650468718),
        1.566e-02,
    ),
    ('A', 'gelu', 5, 4): (
        (-0.003729295140312215, 0.5542495153558296, 0.4630196141251468, 0.1191344624688802, 0.008376098842366727, 6.331842474675294e-06),
        (-0.2275450076095888, -0.11090825482243126, 0.021214498863611903, -7.036479923566039e-06),
        8.454e-03,
    ),
    ('A', 'swish', 5, 4): (
        (4.51503292213733e-07, 0.5000002582119016, 0.24999673318277132, 0.05324508928972877, 0.0057931845161507635, 0.00027387886590808836),
        (1.3109669965151692e-06, 0.10648904846374416, 4.026628307606185e-07, 0.0005477068372545086),
        4.583e-07,
    ),
    ('A', 'tanh', 5, 4): (
        (-1.174023679930248e-17, 1.0000110224413767, 8.758806408580215e-18, 0.10741908780350791, -1.2115996457372983e-18, 0.0008603804052003543),
        (-6.652603316395069e-05, 0.4406717176444504, 3.008212220671961e-09, 0.01448800034113685),
        1.697e-06,
    ),
    ('A', 'sigmoid', 5, 4): (
        (0.5000000000937733, 0.2499999926334518, 0.055436479961139255, 0.006884928081031894, 0.0004842745041271543, 1.5599792564318182e-05),
        (7.519936016503441e-10, 0.11087295906542056, 3.695795442514527e-10, 0.0009685489545354086),
        1.751e-09,
    ),
    ('B', 'identity', 5, 4): (
        (0.0, 1.0, 0.0, 0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.0),
        0.000e+00,
    ),
    ('B', 'relu', 5, 4): (
        (0.013292612838352896, 0.49999997549613856, 2.708695130674825, 4.29198374943759, 2.40298400365953, 0.42609051432389977),
        (-3.4052550803870597e-07, 8.583968090498562, -3.467144000685458e-07, 0.8521810917572202),
        1.329e-02,
    ),
    ('B', 'leaky_relu', 5, 4): (
        (0.013159686709990218, 0.5050000140937724, 2.6816084483187503, 4.334904056956564, 2.37895443772276, 0.4303514696289039),
        (1.9879798300436126e-07, 8.583968090486115, 2.0293154999528646e-07, 0.8521810917555218),
        1.316e-02,
    ),
    ('B', 'gelu', 5, 4): (
        (-0.0015011413203143151, 0.49996398841948064, 0.39841896661916976, 0.10551398284965091, 0.011252643945867493, 0.0006821945333131128),
        (-0.022212209753721072, 0.22894688493963528, -0.004569820405200453, 0.0017087568259348885),
        1.507e-03,
    ),
    ('B', 'swish', 5, 4): (
        (4.5543199473064086e-07, 0.5000000000011027, 0.2499965951505582, 0.05324491087630299, 0.005793112988355229, 0.0002738698643770881),
        (4.3841149377444416e-09, 0.10648981956498102, 4.2408904872765807e-10, 0.00054773969691797),
        4.569e-07,
    ),
    ('B', 'tanh', 5, 4): (
        (-1.211860512355962e-17, 0.9999924045143083, -1.0011128482714958e-14, 0.10749150104158331, -4.508747438549889e-16, 0.0008615160252480227),
        (-1.0162776556628771e-14, 0.44078998739984643, -3.583585457753872e-15, 0.014504336136917087),
        1.395e-06,
    ),
    ('B', 'sigmoid', 5, 4): (
        (0.49999999999998135, 0.24999999231219158, 0.05543650212422922, 0.0068849392062691785, 0.0004842766895809142, 1.5599961459401055e-05),
        (-5.430355914456177e-10, 0.11087300451975331, -5.2951250043968016e-11, 0.0009685533832002401),
        1.750e-09,
    ),
}
# END GENERATED


def available_inits() -> list[tuple[str, str, int, int]]:
    """All stored ``(form, name, numerator_order, denominator_order)`` keys (plus identity, any order)."""
    return sorted(_TABLE)


def rational_init(
    name: str, form: str = "A", numerator_order: int = 5, denominator_order: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients ``(a (m+1,), b (n,))`` (float64) that make ``P/Q`` approximate ``name``.

    Raises ValueError for an unknown name or a (form, orders) combination with no stored fit.
    """
    if not isinstance(name, str):
        raise TypeError(f"rational_init: name must be a string, got {type(name).__name__}")
    key_name = ALIASES.get(name.lower(), name.lower())
    m, n = int(numerator_order), int(denominator_order)
    if m < 0 or n < 1:
        raise ValueError(f"rational_init: need numerator_order >= 0 and denominator_order >= 1, got {m}/{n}")
    if key_name == "identity":
        if m < 1:
            raise ValueError("rational_init: identity needs numerator_order >= 1")
        a = np.zeros(m + 1)
        a[1] = 1.0
        return a, np.zeros(n)
    key = (form, key_name, m, n)
    if key not in _TABLE:
        names = sorted({k[1] for k in _TABLE} | set(ALIASES))
        combos = sorted({(k[0], k[2], k[3]) for k in _TABLE})
        raise ValueError(
            f"rational_init: no starting coefficients for {name!r} with form {form!r} and orders "
            f"{m}/{n}; known names {names}, (form, m, n) combinations {combos}"
        )
    a, b, _ = _TABLE[key]
    return np.asarray(a, np.float64), np.asarray(b, np.float64)
