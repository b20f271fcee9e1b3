"""Rebuild the committed MNIST report (docs/results/mnist-5ep) with the current report engine, from its CSVs.

The MLflow and Optuna stores of the 2026-11-29 runs are not in the repository; their CSVs are. This script:

1. reads ``docs/results/mnist-5ep/runs.csv`` and ``provenance.csv`` back (``tracking.reports.restore``);
2. recomputes the quadratic study's facts exactly as the study did (``workers.quadratic.study_facts()``,
   deterministic) for C11–C13;
3. takes the comparison study's search space and sampler from the study file it ran
   (``studies/mnist-paper.yaml`` with ``--set epochs=5 --set seeds=3``: ``StudyConfig.fairness()``);
4. recreates the search phase's Optuna studies from the search runs (importance, slice plot);
5. moves the original report's training-curve figures, which need per-epoch histories the CSVs do not hold,
   to ``original-figures/`` (they stay valid: drawn from the same runs), and writes the new report.

Not regenerated (no per-epoch histories in the CSVs): the training-curve figures; claims C4 part (b), C9 part
(a), C14 and C15 (curves), C7 and C8 (the target_* metrics were not in the old runs.csv).

Usage: ``PYTHONPATH=. python benchmarks/rebuild_mnist_report.py [--dir docs/results/mnist-5ep]`` (about a minute).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

STUDIES = ["mnist-paper-5ep", "mnist-ablation-5ep", "mnist-sens-1ep", "quadratics"]
CURVE_FIGURES = ("loss_", "val_acc_", "grad_std_", "acc_vs_time_")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="docs/results/mnist-5ep")
    args = ap.parse_args()
    out = Path(args.dir)

    from study.loading import load_study
    from tracking.reports import write_report
    from tracking.reports.restore import load_report_csvs, rebuild_optuna
    from workers.quadratic import study_facts

    fairness = {"mnist-paper-5ep": load_study("studies/mnist-paper.yaml", sets=["epochs=5", "seeds=3"],
                                              name="mnist-paper-5ep").fairness()}
    data = load_report_csvs(out, studies=STUDIES, quadratic_facts={"quadratics": study_facts()}, fairness=fairness)
    kept = out / "original-figures"
    kept.mkdir(exist_ok=True)
    for f in sorted((out / "figures").glob("*.png")) if (out / "figures").is_dir() else []:
        if f.name.startswith(CURVE_FIGURES):
            shutil.copy2(f, kept / f.name)
    originals = sorted(p.name for p in kept.glob("*.png"))
    data.missing.append(
        "rebuilt from the committed CSVs (runs.csv, provenance.csv) by benchmarks/rebuild_mnist_report.py: the "
        "per-epoch histories of these runs were not committed, so the training-curve figures are not redrawn "
        "(the original report's, drawn from the same runs, are kept in original-figures/: "
        + ", ".join(originals) + "); the quadratic facts were recomputed (workers.quadratic.study_facts(), "
        "exact); the Optuna studies were recreated from the search runs (params and val_accuracy); the search "
        "space and sampler are studies/mnist-paper.yaml's")
    data.missing.append("runs.csv of the original report holds no target_* metrics (time to target): C7 and C8 "
                        "cannot be judged from it")
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{tmp}/optuna.db"
        rebuild_optuna(data, storage)
        result = write_report(data, out, optuna_storage=storage, formats=("md", "csv"))  # as committed before
    for p in result.paths:
        print(f"wrote {p}")
    for c in result.claims:
        print(f"{c.id}: {c.verdict}")


if __name__ == "__main__":
    main()
