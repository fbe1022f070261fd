"""Operations that edit a model and return a new one: pruning (:mod:`.prune`), grids and refinement
(:mod:`.grid`), low-level surgery (:mod:`.surgery`) and variance calibration (:mod:`.calibrate`). Import
the public names from :mod:`kan`."""
