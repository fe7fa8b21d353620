"""The findings: each claim of the student study tested on the committed `findings/<study>/`.

    python -m analysis.findings             # rewrite docs/findings.md's generated blocks
    python -m analysis.findings --check     # exit 1 when a block differs from the data
    python -m analysis.findings --pictures  # also redraw docs/findings/*.png (needs chromium)

Every number of docs/findings.md sits in a generated block, between
`<!-- findings:NAME -->` and `<!-- /findings -->`, made here from the committed parquet files;
tests/analysis/test_findings.py checks that each block equals what this package computes, so
the document cannot drift from its data. The prose around the blocks says what they mean.

The verdict rule, one for every comparison: the difference of two groups' means (over seeds,
diverged and errored trials left out) against its standard error,
se = sqrt(sd_a^2 / n_a + sd_b^2 / n_b). A difference larger than twice its standard error is
separable from seed noise, and the claim is *confirmed* or *refuted* by its sign; otherwise it
is *not separable from seed noise at this scale*.

`statistics` (the rule, the metrics, their tables) and `data` (a study's results, its rows)
-> one module per study (`optimizers`: claims 1 and 5, `alpha_gamma`: claim 2,
`ensemble_size`: claim 3, `sharing`: claim 4), each declaring the document's blocks it makes
-> `document` (the blocks of docs/findings.md) and `pictures` (a study's report page as a PNG)
-> `__main__` (the command line).
"""
