"""Starting coefficients of the safe rational ``P/Q`` for common activations.

Fitted by ``python -m bases.fit_rational_init`` in the *same form that is evaluated* (least squares
then Lawson reweighting towards the minimax fit on a dense grid over ``[-3, 3]``, float64). Keys are
``(form, name, numerator_order, denominator_order)``; values ``(a_0..a_m, b_1..b_n, max_error)``
where ``max_error`` is the fit's maximum absolute error on ``[-3, 3]``. ``identity`` is exact for
every order. Forms and the rational itself: see ``bases.kernels.rational_math``.
"""

from __future__ import annotations

import numpy as np

ALIASES = {"silu": "swish", "linear": "identity", "leaky": "leaky_relu"}

# BEGIN GENERATED (python -m bases.fit_rational_init --write)
_TABLE = {
    ('A', 'identity', 5, 4): (
        (0.0, 1.0, 0.0, 0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.0),
        0.000e+00,
    ),
    ('A', 'relu', 5, 4): (
        (0.014719435333399415, 0.5153405273723363, 2.6636100391883644, 4.181560115348155, 2.3507938314789625, 0.419766793365405),
        (-0.3110362157284589, 7.748537759998943, 0.38698628246699146, 0.7659258728035201),
        1.472e-02,
    ),
    ('A', 'leaky_relu', 5, 4): (
        (0.014573243421897392, 0.5191448668766636, 2.6260983707214125, 4.202657630940318, 2.314847330049114, 0.42158744597718445),
        (-0.28559416875096555, 7.758338743609121, -0.3544615215930464, 0.7674869561182177),
        1.457e-02,
    ),
    ('A', 'gelu', 5, 4): (
        (-0.0014185773753846486, 0.4995542129852207, 0.4085379996434516, 0.11106411392852143, 0.011443909635180048, 0.0005018490456270728),
        (-0.005273764404856171, 0.21031840671572113, -0.0063290338879040805, -3.2870697480011672e-18),
        1.467e-03,
    ),
    ('A', 'swish', 5, 4): (
        (4.5150520435051056e-07, 0.5000002581891142, 0.24999673316420773, 0.05324508916833193, 0.005793184461581609, 0.0002738788588198562),
        (1.3108440064130437e-06, 0.10648904833272871, 4.0262118148935125e-07, 0.0005477068285449374),
        4.583e-07,
    ),
    ('A', 'tanh', 5, 4): (
        (1.5564571296465615e-17, 1.000011021012671, -3.903101397842921e-17, 0.10741913400094291, 5.712410700801969e-18, 0.0008603821962421691),
        (-6.652186916592284e-05, 0.4406717682048864, 3.0084529885509063e-09, -0.014488015695034467),
        1.697e-06,
    ),
    ('A', 'sigmoid', 5, 4): (
        (0.500000000089578, 0.24999999261937403, 0.05543645541414946, 0.006884915831779152, 0.0004842721282981879, 1.559961397001594e-05),
        (7.25772601462887e-10, 0.11087290999470677, 3.6177426832889346e-10, 0.0009685442037531223),
        1.752e-09,
    ),
    ('B', 'identity', 5, 4): (
        (0.0, 1.0, 0.0, 0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.0),
        0.000e+00,
    ),
    ('B', 'relu', 5, 4): (
        (0.013292612838361589, 0.4999999932751205, 2.708695254445132, 4.291983964905702, 2.4029841301236017, 0.42609053736862096),
        (-9.298281871537352e-08, 8.583968090493288, -9.378261995284209e-08, 0.8521810917564971),
        1.329e-02,
    ),
    ('B', 'leaky_relu', 5, 4): (
        (0.013159686709972297, 0.5049999786926552, 2.681608196444791, 4.334903627449056, 2.3789541807629733, 0.43035142376715246),
        (-2.9996639845328424e-07, 8.583968090496573, -3.059067385942757e-07, 0.8521810917569425),
        1.316e-02,
    ),
    ('B', 'gelu', 5, 4): (
        (-0.0004427578289409833, 0.5000000000226676, 0.4028440274153268, 0.07535390854520226, -0.011771584807610251, -0.0035245206874547383),
        (-2.9185992635528907e-09, 0.1507078195372497, -6.736718723677325e-10, -0.007049041314544067),
        4.432e-04,
    ),
    ('B', 'swish', 5, 4): (
        (4.5543207862110905e-07, 0.5000000000400836, 0.24999667135866518, 0.05324494889505518, 0.005793120355892369, 0.00027387041714756075),
        (1.5680117188370144e-07, 0.10648981954952245, 1.5166244899447128e-08, 0.0005477396959924539),
        4.569e-07,
    ),
    ('B', 'tanh', 5, 4): (
        (-1.409909154648472e-17, 0.9999924045118732, -1.6702079367874964e-15, 0.10749150087031949, -5.414070238073372e-17, 0.0008615160181000523),
        (-1.759677204231152e-15, 0.44078998722050067, -5.359745424792018e-16, 0.014504336077868373),
        1.395e-06,
    ),
    ('B', 'sigmoid', 5, 4): (
        (0.5000000000000177, 0.24999999272554294, 0.05543652143159152, 0.006884948770049619, 0.0004842785264559941, 1.5600096787065575e-05),
        (2.506423132569055e-10, 0.11087304273802183, 2.4337251857278742e-11, 0.0009685570510734403),
        1.752e-09,
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
