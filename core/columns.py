"""The results contract: every metric key, column name and file name, declared once.

Data flows core.trainable (per-epoch reports) -> Ray Tune -> tune_jobs.results (the parquet
writer) -> analysis (the reader). Each group below says who writes it and who reads it;
docs/results_schema.md describes every name (tests/analysis/test_schema.py keeps the two equal).
Torch-free on purpose: the writer and the reader import this without the training stack.
"""

from __future__ import annotations

import dataclasses

from core.config import TrialConfig

# --- Files of an experiment folder ----------------------------------------------------------------
# Written by tune_jobs (results.parquet, history.parquet: tune_jobs.results; study.json,
# optuna.db, pareto_front.parquet: the study runner and the search study); read by analysis.load.
RESULTS_FILE = "results.parquet"  # one row per trial
HISTORY_FILE = "history.parquet"  # one row per trial per reported epoch
STUDY_FILE = "study.json"  # what ran: study kind, name, dataset, objectives, ...
PARETO_FILE = "pareto_front.parquet"  # results rows of the Pareto-optimal trials (search)
OPTUNA_DB = "optuna.db"  # the search's SQLite Optuna storage
# Each trial's predictions: one file in its trial folder (<experiment>/<trial folder>/), written
# by core.predictions from the trial's process and synced to storage by Ray with the study's
# other results (tune_jobs.runner sets SyncConfig(sync_artifacts=True)); read by analysis.ensemble.
PREDICTIONS_FILE = "predictions.npz"
FILES = (RESULTS_FILE, HISTORY_FILE, STUDY_FILE, PARETO_FILE, OPTUNA_DB, PREDICTIONS_FILE)
# Keys of study.json that say how trials were selected (tune_jobs.record.study_record): the
# reported metric ASHA, the searcher and the report rank by (a validation metric), and its mode.
STUDY_SELECTION_METRIC = "selection_metric"
STUDY_SELECTION_MODE = "selection_mode"
# The epochs at which every trial also measures its robustness (ASHA's rungs; [] without ASHA).
STUDY_ROBUSTNESS_EPOCHS = "robustness_epochs"

# --- The study record: keys of study.json besides what it says about the study --------------------
# Written by tune_jobs when a study starts (state running), is interrupted and ends (finished);
# `options` and `space` are what --resume compares against; analysis.load reads the state and the
# resume command to explain a folder that has no results yet.
STUDY_STATE = "state"  # one of STUDY_STATES
STATE_RUNNING, STATE_INTERRUPTED, STATE_FINISHED = "running", "interrupted", "finished"
STUDY_STATES = (STATE_RUNNING, STATE_INTERRUPTED, STATE_FINISHED)
STUDY_OPTIONS = "options"  # the options that define what is computed: flag -> value as given
STUDY_SPACE = "space"  # the parameter space handed to Ray Tune (a plain dict)
RESUME_COMMAND = "resume_command"  # the command line that continues the study
TRIALS = "trials"  # trials the study runs
TRIALS_FINISHED = "trials_finished"  # trials ended when it was interrupted
DRIVER = "driver"  # {"host": ..., "pid": ...} of the process that runs the study
EXTENSIONS = "extensions"  # each --extend of the finished study, oldest first (tune_jobs.extend)
# What produced the study (core.provenance.provenance, computed by the driver when the study
# starts): a dict with the keys below. analysis shows it in the report's overview and compares
# it across the experiments of a comparison; a study recorded before it has no such key.
PROVENANCE = "provenance"
# The provenance of the runs before the last one, oldest first: a study resumed (`--resume`) by
# other code or on another stack keeps what made its earlier trials.
PROVENANCE_EARLIER = "provenance_earlier"
PROV_COMMIT = "commit"  # git commit of the code's checkout; None outside a git checkout
PROV_DIRTY = "dirty"  # bool: the checkout had uncommitted changes; None outside git
PROV_PACKAGE_VERSION = "package_version"  # the installed ensemble-efficiency's version
PROV_VERSIONS = "versions"  # {"python": ..., "torch": ..., "ray": ..., "optuna": ..., "cuda": ...}
PROV_CPU = "cpu"  # the driver's CPU model
PROV_LIBRARIES = ("python", "torch", "ray", "optuna", "cuda")  # the keys of PROV_VERSIONS

# --- Evaluation metrics ---------------------------------------------------------------------------
# Written by core.metrics.evaluation_metrics (exactly these keys, in this order); core.train.train
# reports each of them per evaluation split as <split>_<key>. Read through EPOCH_METRICS below.
EVAL_KEYS = ("acc", "loss", "ece", "brier", "member_acc", "disagreement", "kl")

# --- Splits ---------------------------------------------------------------------------------------
# core.train.train measures loss and accuracy on the training batches as it trains, and the
# EVAL_KEYS on each evaluation split (val only when the config holds out a validation share).
TRAIN, TEST, VAL = "train", "test", "val"
SPLITS = (TRAIN, TEST, VAL)
TRAIN_KEYS = ("loss", "acc")


def split_metric(split: str, key: str) -> str:
    """The reported name of metric `key` on `split`: split_metric('test', 'acc') == 'test_acc'."""
    return f"{split}_{key}"


# --- Per-epoch report: what core.train.train reports each epoch ----------------------------------
# Written by core.train.train (one dict per epoch; under Ray Tune core.trainable.ray_trainable
# hands each to ray.tune.report); Ray Tune keeps them in each Result's metrics_dataframe; read
# by tune_jobs.results, which writes history.parquet.
EPOCH = "epoch"  # 1-based
TRAIN_METRICS = tuple(split_metric(TRAIN, k) for k in TRAIN_KEYS)  # train_loss, train_acc
TEST_METRICS = tuple(split_metric(TEST, k) for k in EVAL_KEYS)
VAL_METRICS = tuple(split_metric(VAL, k) for k in EVAL_KEYS)  # NaN without a validation split
EPOCH_METRICS = TRAIN_METRICS + TEST_METRICS + VAL_METRICS
TRAIN_LOSS, TRAIN_ACC = TRAIN_METRICS
TEST_ACC, TEST_LOSS = split_metric(TEST, "acc"), split_metric(TEST, "loss")
VAL_ACC, VAL_LOSS = split_metric(VAL, "acc"), split_metric(VAL, "loss")
PARAMS = "params"  # distinct parameter count
BATCHES_PER_S = "batches_per_s"  # training-loop throughput
IMAGES_PER_S = "images_per_s"
EPOCH_S = "epoch_s"  # wall time of the epoch (training and evaluation)
CURRENT_LR = "current_lr"  # slow-weight learning rate at the end of the epoch
DIVERGED = "diverged"  # bool: the training loss became NaN/inf in this epoch
EARLY_STOPPED = "early_stopped"  # bool: patience ran out at this epoch
# Cost per trial (core.cost): training FLOPs per image (counted once), the FLOP/s the training
# loop achieved (that times images_per_s) and the epoch's peak memory.
TRAIN_FLOPS_PER_IMAGE = "train_flops_per_image"
FLOP_PER_S = "flop_per_s"
PEAK_MEMORY_MB = "peak_memory_mb"
EPOCH_COST = (TRAIN_FLOPS_PER_IMAGE, FLOP_PER_S, PEAK_MEMORY_MB)
EPOCH_INFO = (
    PARAMS,
    BATCHES_PER_S,
    IMAGES_PER_S,
    *EPOCH_COST,
    EPOCH_S,
    CURRENT_LR,
    DIVERGED,
    EARLY_STOPPED,
)

# --- Robustness: corrupted test sets and out-of-distribution detection ----------------------------
# Written by core.train at the end of a trial (and every TrialConfig.robustness_every epochs):
# core.corruptions makes the corrupted images, core.metrics.evaluation_metrics scores them,
# core.ood scores the OOD detection. In every other epoch, with robustness off, or for a
# diverged trial the keys are reported as NaN; the OOD keys are NaN too when the OOD data is
# missing (or ood_dataset='none'), and mutual information is NaN for one member.
# The CIFAR-10-C corruptions computed (core.corruptions says which are left out and why), in
# the benchmark's order, and its five severities.
CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "zoom_blur",
    "fog",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg_compression",
)
SEVERITIES = (1, 2, 3, 4, 5)
CORRUPT_KEYS = ("acc", "loss", "ece")  # of EVAL_KEYS, measured on every corrupted set
CORRUPT = "corrupt"


def corrupt_metric(key: str, corruption: str | None = None, severity: int | None = None) -> str:
    """corrupt_metric('acc') == 'corrupt_acc' (mean over corruptions and severities);
    corrupt_metric('acc', 'contrast', 3) == 'corrupt_contrast_3_acc' (one cell)."""
    if corruption is None:
        return f"{CORRUPT}_{key}"
    return f"{CORRUPT}_{corruption}_{severity}_{key}"


CORRUPT_MEANS = tuple(corrupt_metric(k) for k in CORRUPT_KEYS)  # corrupt_acc, _loss, _ece
CORRUPT_CELLS = tuple(
    corrupt_metric(k, c, s) for c in CORRUPTIONS for s in SEVERITIES for k in CORRUPT_KEYS
)
# OOD scores (core.ood): maximum softmax probability, predictive entropy of the ensemble
# prediction, mutual information between members; each scored by AUROC and FPR at 95% TPR.
OOD_SCORES = ("msp", "entropy", "mi")
OOD_KEYS = ("auroc", "fpr95")


def ood_metric(key: str, score: str) -> str:
    """ood_metric('auroc', 'msp') == 'ood_auroc_msp'."""
    return f"ood_{key}_{score}"


OOD_METRICS = tuple(ood_metric(k, s) for s in OOD_SCORES for k in OOD_KEYS)
# Under Ray Tune the CORRUPT_CELLS travel as one text, a JSON object of them, in the reports of
# the epochs that measured them (core.report.tune_metrics packs, tune_jobs.results unpacks):
# Tune keeps statistics of every numeric key in each trial's state and writes every trial's
# state at each experiment snapshot, and the cells were 165 of a report's 211 numeric keys.
CORRUPT_CELLS_JSON = "corrupt_cells"
ROBUSTNESS_S = "robustness_s"  # wall time of the robustness evaluation (not in epoch_s)
ROBUSTNESS_METRICS = (*CORRUPT_MEANS, *CORRUPT_CELLS, *OOD_METRICS)
ROBUSTNESS_KEYS = (*ROBUSTNESS_METRICS, ROBUSTNESS_S)
# Every metric of one report (numbers and flags); core.train reports RUNTIME_KEYS (below) too.
REPORT_KEYS = (EPOCH, *EPOCH_METRICS, *EPOCH_INFO, *ROBUSTNESS_KEYS)

# --- Where a trial ran ----------------------------------------------------------------------------
# Ray Tune adds node_ip to every report by itself; core.trainable's Ray reporter adds node_id
# (several nodes can share an IP). tune_jobs.results writes node_ip as `node`.
RAY_NODE_IP = "node_ip"
NODE = "node"  # IP of the node
NODE_ID = "node_id"  # Ray node ID
# What the trial computed on (core.train reports them every epoch, core.provenance names the
# device): the device's name and what the config's device, precision, channels_last and compile
# (`auto` by default) resolved to there (core.runtime.Runtime). Text and flags, not metrics:
# tune_jobs.results keeps them in both tables like the node, and the report counts them.
DEVICE_NAME = "device_name"  # "<GPU name> x<GPUs the trial sees>", or the CPU model
RESOLVED_DEVICE = "resolved_device"  # "cpu", "cuda", "cuda:0"
RESOLVED_PRECISION = "resolved_precision"  # "fp32" or "bf16"
RESOLVED_CHANNELS_LAST = "resolved_channels_last"  # bool
RESOLVED_COMPILE = "resolved_compile"  # bool
RUNTIME_KEYS = (
    DEVICE_NAME,
    RESOLVED_DEVICE,
    RESOLVED_PRECISION,
    RESOLVED_CHANNELS_LAST,
    RESOLVED_COMPILE,
)

# --- Columns of both tables -----------------------------------------------------------------------
# Written by tune_jobs.results in every row of results.parquet and history.parquet; analysis
# joins the two on TRIAL_ID.
TRIAL_ID = "trial_id"
STUDY = "study"  # the study's name (alpha_gamma, ..., search)
KEY_COLUMNS = (TRIAL_ID, STUDY)

# --- Config columns (both tables) -----------------------------------------------------------------
# Written by tune_jobs.results: every TrialConfig field as its own column, `extra` flattened to
# extra_<key>; fields whose None means "off" (alpha, gamma) are NaN there. Read by analysis (the
# factors of each study, the varying columns, the labels).
CONFIG_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(TrialConfig) if f.name != "extra"
)
EXTRA_PREFIX = "extra_"
NAN_WHEN_NONE = ("alpha", "gamma")


def extra_column(key: str) -> str:
    """The column of tag `key` of TrialConfig.extra."""
    return f"{EXTRA_PREFIX}{key}"


# --- history.parquet: per-epoch columns -----------------------------------------------------------
# Written by tune_jobs.results, one row per trial per epoch (an epoch reported twice by a
# retried trial keeps its last report); read by analysis (learning curves). Every column of
# history.parquet besides KEY_COLUMNS and the config columns:
HISTORY_COLUMNS = (*REPORT_KEYS, NODE, NODE_ID, *RUNTIME_KEYS)

# --- results.parquet: per-trial columns -----------------------------------------------------------
# Written by tune_jobs.results from each trial's history and error; read by analysis.
STATUS = "status"
STATUS_TERMINATED = "TERMINATED"  # ran to its end: all epochs, early stop, divergence or ASHA
STATUS_ERROR = "ERROR"  # raised an exception
ERROR = "error"  # "<ExceptionType>: <message>" (at most ERROR_CHARS characters); else missing
ERROR_CHARS = 2000
EPOCHS_DONE = "epochs_done"  # last epoch reported (0: none)
ASHA_STOPPED = "asha_stopped"  # stopped by the scheduler before `epochs`, not diverged/early
OUTCOME_COLUMNS = (
    STATUS,
    ERROR,
    EPOCHS_DONE,
    DIVERGED,
    EARLY_STOPPED,
    ASHA_STOPPED,
    NODE,
    NODE_ID,
    *RUNTIME_KEYS,  # those of its last epoch
)
# Per-epoch metric m summarised per trial: final_<m> (last epoch), best_<m> (max for accuracies,
# min otherwise), avg_<m> (mean over epochs); NaN values are skipped by best and avg.
FINAL, BEST, AVG = "final", "best", "avg"
SUMMARY_PREFIXES = (FINAL, BEST, AVG)


def summary_column(prefix: str, metric: str) -> str:
    """summary_column('final', 'test_acc') == 'final_test_acc'."""
    return f"{prefix}_{metric}"


def larger_is_better(metric: str) -> bool:
    """Whether `best_<metric>` is the maximum (accuracies) rather than the minimum."""
    return metric.endswith("_acc")


SUMMARY_COLUMNS = tuple(summary_column(p, m) for m in EPOCH_METRICS for p in SUMMARY_PREFIXES)
FINAL_TEST_ACC = summary_column(FINAL, TEST_ACC)
FINAL_TEST_LOSS = summary_column(FINAL, TEST_LOSS)
TOTAL_S = "total_s"  # sum of epoch_s
# Cost of a trial: means over its epochs (params, throughput, FLOPs, FLOP/s), the peak memory's
# maximum, and total_s.
RESULT_COST_COLUMNS = (PARAMS, BATCHES_PER_S, IMAGES_PER_S, *EPOCH_COST, TOTAL_S)
# Selection: trials are ranked by a validation metric only, never a test one (ASHA, the search,
# the report). The report ranks by SELECTION_COLUMN (the validation accuracy at the trial's last
# epoch, what ASHA and Optuna saw last); the honest test figure of a trial is its test metric
# at the epoch of its best validation accuracy (first such epoch; NaN without validation).
FINAL_VAL_ACC = summary_column(FINAL, VAL_ACC)
SELECTION_COLUMN = FINAL_VAL_ACC
EPOCH_AT_BEST_VAL = "epoch_at_best_val"  # epoch of the best val_acc
TEST_ACC_AT_BEST_VAL = "test_acc_at_best_val"
TEST_LOSS_AT_BEST_VAL = "test_loss_at_best_val"
AT_BEST_VAL_COLUMNS = (EPOCH_AT_BEST_VAL, TEST_ACC_AT_BEST_VAL, TEST_LOSS_AT_BEST_VAL)
# Every per-trial column of results.parquet besides KEY_COLUMNS and the config columns.
# Robustness per trial: each of ROBUSTNESS_KEYS at the last epoch that measured it (the end of
# the trial), under its own name; NaN when no epoch did.
RESULTS_COLUMNS = (
    *OUTCOME_COLUMNS,
    *SUMMARY_COLUMNS,
    *AT_BEST_VAL_COLUMNS,
    *RESULT_COST_COLUMNS,
    *ROBUSTNESS_KEYS,
)

# --- results.parquet of the sharing study: throughput timed alone ------------------------------
# Written by tune_jobs.sharing after every trial finished (the Tuner returned): each regime's
# training steps timed with nothing else of the study running (core.train.time_train_steps, one
# Ray task with a trial's resources), one regime after another; every trial of a regime gets
# its regime's values. Read by the sharing figures, which compare regimes by these rather than
# by the trials' own batches/s (measured while other trials shared the node).
CALIB_BATCHES_PER_S = "calib_batches_per_s"
CALIB_IMAGES_PER_S = "calib_images_per_s"
CALIB_COLUMNS = (CALIB_BATCHES_PER_S, CALIB_IMAGES_PER_S)

# --- Cost metrics ---------------------------------------------------------------------------------
# Measurements of cost, in either table: valid even when a trial diverged (analysis keeps them
# for diverged trials, unlike accuracy or loss).
COST_METRICS = (
    PARAMS,
    BATCHES_PER_S,
    IMAGES_PER_S,
    *EPOCH_COST,
    EPOCH_S,
    TOTAL_S,
    *CALIB_COLUMNS,
)

# --- predictions.npz: one trial's predicted class probabilities ----------------------------------
# Written by core.predictions.PredictionKeeper (from core.train) at the epoch selection reads: a
# new best validation accuracy (the first such epoch on ties: EPOCH_AT_BEST_VAL's epoch), and
# only then; without a validation split, every epoch (the last one stays). Read by
# analysis.ensemble. The probabilities are the ensemble's (mean over members), float16 (N, K).
PRED_SELECTED_ON = "selected_on"  # PRED_BY_VAL_ACC or PRED_BY_LAST_EPOCH
PRED_BY_VAL_ACC = VAL_ACC  # the epoch of the best validation accuracy
PRED_BY_LAST_EPOCH = "last_epoch"  # no validation split: no selection was possible
PRED_MEMBERS = "members"  # ensemble members averaged into the probabilities


def probs_key(split: str) -> str:
    """The array of a split's probabilities in predictions.npz: probs_key('val') == 'val_probs'."""
    return f"{split}_probs"


def labels_key(split: str) -> str:
    """The array of a split's labels in predictions.npz: labels_key('val') == 'val_labels'."""
    return f"{split}_labels"


PREDICTION_SPLITS = (VAL, TEST)  # the val arrays are missing without a validation split
PREDICTION_KEYS = (
    TRIAL_ID,  # Ray's trial id, as in results.parquet
    EPOCH,  # the epoch the probabilities are of
    PRED_SELECTED_ON,
    PRED_MEMBERS,
    *(k(s) for s in PREDICTION_SPLITS for k in (probs_key, labels_key)),
)
