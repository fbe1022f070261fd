"""The figure class of :mod:`kan.plot`; imported only when drawing, so ``import kan`` does not
import matplotlib."""

from __future__ import annotations

import io

from matplotlib.figure import Figure


class KANFigure(Figure):
    """A plain matplotlib ``Figure`` (no pyplot) that also shows itself in Jupyter when no inline
    backend is active: IPython then calls :meth:`_repr_png_` (with an active inline backend, its own
    ``Figure`` formatter draws it as usual)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()
