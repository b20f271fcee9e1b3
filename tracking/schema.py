"""The names under which every study and trial is stored in MLflow: the contract between the study
runner (which writes) and the reports (which read). Change a name here and both follow.

Layout (MLflow's experiment → run → params/metrics/tags/artifacts model):
- one MLflow experiment per study, named after the study;
- one parent run per (study, phase), tagged ``role=parent``;
- one nested child run per trial (``mlflow.parentRunId`` set), tagged ``role=trial``.
Per-epoch metrics are logged with ``step = epoch`` (1-based); the latest value of each metric is the final one.
"""

from __future__ import annotations

# ---- tags ---------------------------------------------------------------------------------------
TAG_STUDY = "study"                    # study name (also the experiment name)
TAG_PHASE = "phase"                    # one of PHASES
TAG_ROLE = "role"                      # "parent" | "trial"
TAG_KIND = "kind"                      # study kind: comparison | sensitivity | ablation | quadratic
TAG_OPTIMIZER = "optimizer"            # registry name, amgt.available_optimizers()
TAG_BENCHMARK = "benchmark"            # workers.available_benchmarks()
TAG_SEED = "seed"
TAG_OPTUNA_TRIAL = "optuna_trial_number"
TAG_OPTUNA_STUDY = "optuna_study_name"
TAG_RAY_TRIAL_ID = "ray_trial_id"
TAG_TRIAL_KEY = "trial_key"            # stable id of a planned trial (resume: no duplicate runs)
TAG_GIT_SHA = "mlflow.source.git.commit"
TAG_DEVICE = "device"                  # e.g. "cpu", "cuda:0 (NVIDIA H100)"
TAG_OUTCOME = "outcome"                # one of OUTCOMES (MLflow's own run status is separate)
TAG_ERROR = "error"                    # error text of a failed trial

ROLE_PARENT = "parent"
ROLE_TRIAL = "trial"
PHASES = ("search", "final", "grid", "ablation", "quadratic")
OUTCOMES = ("completed", "diverged", "failed")

# ---- params (strings in MLflow) ------------------------------------------------------------------
PARAM_HP_PREFIX = "hp."                # hp.lr, hp.tau, hp.lr_decay, hp.gamma, ...
PARAMS_TRIAL = ("optimizer", "benchmark", "seed", "epochs", "batch_size", "max_steps")

# ---- per-epoch metrics (step = epoch) --------------------------------------------------------------
METRICS_EPOCH = (
    "train_loss", "val_loss", "val_accuracy", "test_accuracy", "test_loss",
    "epoch_time_s", "steps", "samples_per_s", "grad_norm_mean", "grad_norm_std",
    "loss_oscillation", "optimizer_state_bytes", "peak_memory_bytes",
    "amgt_suppressed_fraction", "amgt_lambda_mean", "amgt_lr_t",
    # function benchmarks (quadratics, Rosenbrock; claims C13, C14)
    "distance_to_optimum", "grad_norm", "grad_norm_sq_min",
)
# ---- final metrics of a trial (logged once at the end) ---------------------------------------------
METRICS_FINAL = (
    "best_val_accuracy", "epochs_completed", "wall_time_s",
    "target_val_accuracy_epoch", "target_val_accuracy_step", "target_val_accuracy_time_s",
    "target_train_loss_epoch", "target_train_loss_step",
)

# ---- artifacts ---------------------------------------------------------------------------------------
ARTIFACT_CONFIG = "config.json"        # the trial's resolved config (child) / the study file (parent)
ARTIFACT_CURVES = "curves.csv"         # one row per epoch, columns = METRICS_EPOCH present
ARTIFACT_STUDY = "study.yaml"          # parent: the validated study file
ARTIFACT_FAIRNESS = "fairness.json"    # parent: trials per optimizer, search-space dimensions, seeds
ARTIFACT_QUADRATIC = "quadratic_facts.json"  # quadratic study: computed facts (claims C11–C13)

# ---- added for the reports' verdicts (issue 10); appended, read when present ------------------------------
TAG_OPTIMIZER_IMPL = "optimizer_impl"        # trial: the implementation timed, e.g. "torch.optim.Adam(foreach)"
PARAM_SEARCH_SEED = "search_seed"            # parent runs: the seed every search trial used (int)
PARAM_FINAL_SEEDS = "final_seeds"            # parent runs: the final phase's seeds, comma-separated ints
FAIRNESS_KEYS_PROTOCOL = ("search_seed", "final_seeds", "n_startup_trials")  # fairness.json (sampler start-up)
METRICS_FINAL_OPTIONAL = (
    "test_examples",   # size of the test set: an accuracy moves in steps of 1/test_examples
    "num_classes",     # classes of a classification benchmark: chance accuracy = 1/num_classes
)

# ---- the MLflow UI as the study's dashboard (issue 14) ----------------------------------------------
#: A trial's final values of the headline metrics, logged once at ``step = 0`` beside the per-epoch ones
#: (which keep their names): MLflow 3.17's runs charts draw a metric whose latest value has ``step >= 1``
#: as a line chart and one at step 0 as a bar chart (values, not single dots), and they list the sections
#: named by a ``prefix/`` first (alphabetically), then "Model metrics" (unprefixed), then "System metrics".
RESULTS_PREFIX = "results/"
METRICS_HEADLINE = ("test_accuracy", "val_accuracy", "best_val_accuracy", "test_loss", "val_loss", "train_loss",
                    "distance_to_optimum")
#: Every setting of the optimizer a trial built (``torch.optim.Optimizer.defaults``: the class's defaults,
#: the registry's paper defaults, the pinned values and the trial's hyperparameters), e.g. ``optim.betas``.
PARAM_OPTIM_PREFIX = "optim."
#: Parent-run summary metrics: ``<group>.<metric>_<stat>`` for each group of a phase (the optimizer; in a
#: grid ``<optimizer>.lr<value>``), e.g. ``adam.test_accuracy_mean``, ``adam.test_accuracy_ci_low``.
SUMMARY_STATS = ("mean", "std", "ci_low", "ci_high")
SUMMARY_COUNTS = ("n", "trials", "failed", "diverged", "interrupted")  # ``adam.n``: finite values averaged
#: Parent-run params of the chosen configuration: ``best.<optimizer>.<hparam>``, ``best.<optimizer>.optuna_trial``.
PARAM_BEST_PREFIX = "best."
#: Experiment tag read by the MLflow UI (3.x) to pick its layout: "custom_model_development" is the
#: training layout (runs table and charts), "genai_development" the GenAI one (traces).
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
TAG_NOTE = "mlflow.note.content"       # the description the UI shows (experiments and runs)
#: Experiment tag prefix of a saved runs view (``?viewStateShareKey=<key>`` in the UI's URL).
TAG_SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
#: What the results table and the report say of an optimizer searched but never run in the final phase.
NOTE_NOT_RERUN = "not re-run: no completed search trial"
