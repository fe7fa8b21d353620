"""The study scripts (one per study) and what they share.

`options` (JobOptions, the grid helpers, the Study record; no Ray, no torch), `cli` (the
command line), `runner` (running and resuming on Ray Tune), `resources` (GPUs, storage),
`results` (the parquet tables). Run a study as `python tune_jobs/<study>.py` or
`python -m tune_jobs.<study>`.
"""
