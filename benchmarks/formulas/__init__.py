"""Benchmarks of formulas from data: fitting every edge to the symbolic library (:mod:`.edge_fit`), the
Feynman equations with hand-chosen shapes (:mod:`.feynman`) or from (x, y) alone (:mod:`.feynman_auto`),
and made-up laws (:mod:`.laws`)."""
