"""Benchmarks of whole processes: the import stages a fresh Python pays (:mod:`.startup`) and the
demo's cold and warm wall time (:mod:`.demo`), each run as its own subprocess."""
