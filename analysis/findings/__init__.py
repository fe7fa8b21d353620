"""The findings: each claim of the student study tested on the committed `findings/<study>/`.

    python -m analysis.findings             # rewrite docs/findings.md's generated blocks
    python -m analysis.findings --check     # exit 1 when a block differs from the data
    python -m analysis.findings --pictures  # also redraw docs/findings/*.png (needs chromium)

Every number of docs/findings.md sits in a generated block, between
`<!-- findings:NAME -->` and `<!-- /findings -->`, made here from the committed parquet files;
tests/analysis/test_findings.py checks that each block equals what this package computes, so
the document cannot drift from its data. The prose around the blocks says what they mean.

The verdicts, one method for every comparison (docs/findings.md, "Statistical method"): the
difference of two groups' means, by a paired t test where the design pairs the trials (the same
seed and the same values of the settings pooled over) and Welch's t where it does not; Holm's
correction within each family of comparisons (one question of a claim) at a family-wise 0.05;
an equivalence test (TOST, the metric's margin) for "costs little", "close" and "flattens";
any "best" chosen on validation. Each line shows n, the difference, its interval and the
adjusted p-value. The document has one section per scale of the studies (document.SCALES).

`inference` (the tests) -> `statistics` (the metrics, their tables) -> `verdicts` (a
comparison, a family's lines) and `data` (a study's results, its rows) -> one module per study
(`optimizers`: claims 1 and 5, `alpha_gamma`: claim 2, `ensemble_size`: claim 3, `sharing`:
claim 4, `methods`: which way of sharing is best at a cost, learn scale only), each declaring
the document's blocks it makes -> `changes` (the verdicts that change with scale) ->
`document` (the scales and the blocks of docs/findings.md) and `pictures` (a study's report
page as a PNG) -> `__main__` (the command line).
"""
