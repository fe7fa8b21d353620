"""Ensembles from a sweep's own trials: `selection` (greedy selection with replacement and the
metrics of averaged probabilities, NumPy), `trials` (the candidates: usable trials and their
predictions files), `tables` (the selection, members and comparison tables), `page` (the
report's page), `__main__` (`python -m analysis.ensemble`)."""
