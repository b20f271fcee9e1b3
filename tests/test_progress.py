"""The progress display: plain lines when stdout is not a terminal (captured here), a live status area on a
terminal (a pseudo-terminal here, os.openpty), nothing with --quiet; and the results table at the end."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from study.plan import PlannedTrial, StudyContext
from study.progress import (
    LiveDisplay,
    PlainDisplay,
    QuietDisplay,
    StudyProgress,
    make_display,
    status_line,
)

ROOT = Path(__file__).resolve().parents[1]
OPTIMIZERS = ["amgt", "amgt-no-threshold", "amgt-no-decay", "amgt-no-variance", "adam", "adamw", "amsgrad",
              "adabelief", "rmsprop", "sgd"]


class FakeTrial:
    """What StudyProgress reads of a Ray Tune trial: its id, config, failures so far and error file."""

    def __init__(self, planned: PlannedTrial, trial_id: str, error_file: str | None = None, failures: int = 0):
        self.trial_id, self.config, self.error_file = trial_id, {"trial": planned.to_dict()}, error_file

        class Meta:
            num_failures = failures

        self.run_metadata = Meta()

    def get_error(self):
        return None


def ctx(study: str = "qs", epochs: int = 3) -> StudyContext:
    return StudyContext(study=study, kind="comparison", tracking_uri="sqlite:///unused.db", experiment_id="0",
                        base={"epochs": epochs}, fingerprint="f", search_metric="val_accuracy")


def search_trial(opt: str, n: int) -> PlannedTrial:
    return PlannedTrial(f"qs/search/{opt}/{n}", "search", opt, "digits-cnn", 1_000_000, optuna_trial_number=n)


def final_trial(opt: str, seed: int) -> PlannedTrial:
    return PlannedTrial(f"qs/final/{opt}/seed{seed}", "final", opt, "digits-cnn", seed)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drive(progress: StudyProgress, clock: Clock, trials: list[PlannedTrial], *, epochs: int = 3, fail: set = frozenset(),
          error_file: str | None = None) -> None:
    """Every trial starts, reports each epoch, completes (or fails after a retry), 2 s of clock per event."""
    for i, p in enumerate(trials):
        t = FakeTrial(p, f"t{i:05d}", error_file=error_file)
        progress.on_trial_start(0, [], t)
        for epoch in range(1, epochs + 1):
            clock.now += 2
            progress.on_trial_result(0, [], t, {"epoch": epoch, "val_accuracy": 0.5 + 0.01 * i + 0.1 * epoch})
        clock.now += 2
        if p.trial_key in fail:
            t.run_metadata.num_failures = 1
            progress.on_trial_recover(0, [], t)
            progress.on_trial_start(0, [], t)
            t.run_metadata.num_failures = 2
            progress.on_trial_error(0, [], t)
        else:
            progress.on_trial_complete(0, [], t)


def test_plain_mode_prints_far_fewer_lines_with_the_same_facts(tmp_path):
    """The quickstart's 40 trials (10 optimizers × 2 search + 2 final): one line per optimizer done per phase,
    a status line at most every 30 s, one per failed/retried attempt; the old display printed ~90."""
    error = tmp_path / "error.txt"
    error.write_text("Failure # 1 (occurred at 2026-12-01_10-00-00)\nTraceback ...\nValueError: Corrupt file x\n")
    lines: list[str] = []
    clock = Clock()
    display = PlainDisplay(lines.append, interval_s=30.0, clock=clock)
    progress = StudyProgress(ctx(), display, planned_total=40, clock=clock)
    progress.add_phase("search", {o: 2 for o in OPTIMIZERS}, {})
    drive(progress, clock, [search_trial(o, n) for o in OPTIMIZERS for n in (0, 1)])
    progress.add_phase("final", {o: 2 for o in OPTIMIZERS}, {})
    drive(progress, clock, [final_trial(o, s) for o in OPTIMIZERS for s in (0, 1)], fail={"qs/final/sgd/seed1"},
          error_file=str(error))

    text = "\n".join(lines)
    events = 40 * (2 + 3) + 2  # start + 3 results + end per trial, and the retry
    assert len(lines) < 45 < events, text
    assert "[qs search] amgt: 2/2 done, 0 running, 0 failed; best val_accuracy 0.8" in text
    assert "[qs final] adam: 2/2 done, 0 running, 0 failed" in text
    (retry,) = [ln for ln in lines if "retrying" in ln]
    assert "[qs final] sgd:" in retry and "after attempt 1 failed: ValueError: Corrupt file x" in retry
    (failed,) = [ln for ln in lines if "(failed " in ln]
    assert failed.startswith("[qs final] sgd: 1/2 done, 0 running, 1 failed, 1 retried  (failed t00019 after 2 "
                             "attempts: ValueError: Corrupt file x)"), failed
    status = [ln for ln in lines if "trials done overall" in ln]
    assert status, text  # 40 trials × 10 s of clock: a status line every 30 s
    assert all("ETA" in ln and "elapsed" in ln for ln in status)
    assert re.search(r"\[qs final\] \d+/40 trials done overall, 1 running, \d failed; elapsed \S+, ETA \S+; final: amgt",
                     text), text


def test_status_line_counts_every_phase_and_estimates_the_time_left():
    clock = Clock()
    progress = StudyProgress(ctx(epochs=4), QuietDisplay(), planned_total=8, clock=clock)
    progress.add_phase("search", {"adam": 2, "sgd": 2}, {"adam": 1})  # one adam trial done by an earlier driver
    t = FakeTrial(search_trial("sgd", 0), "a")
    progress.on_trial_start(0, [], t)
    progress.on_trial_result(0, [], t, {"epoch": 4, "val_accuracy": 0.85})
    progress.on_trial_complete(0, [], t)
    t2 = FakeTrial(search_trial("sgd", 1), "b")
    progress.on_trial_start(0, [], t2)
    progress.on_trial_result(0, [], t2, {"epoch": 2, "val_accuracy": 0.9})  # running: not a best yet
    # 10 s for 1 trial + half of another: 1.5 trials per 10 s; 8 planned - 2 done - 0.5 running = 5.5 left
    eta = progress.state.eta(clock.now + 10)
    assert eta == pytest.approx(5.5 / 0.15)
    line = status_line(progress.state, clock.now + 10)
    assert line.startswith("[qs search] 2/8 trials done overall, 1 running, 0 failed; elapsed 10 s, ETA 37 s; "
                           "search: adam 1/2, sgd 1/2 (0.85)"), line


def test_best_so_far_counts_the_trials_of_an_earlier_driver():
    """A resumed search: "best so far" is the recorded best (Optuna's) until a new trial beats it; the final
    phase's "search's best" is the same number (a resumed run once printed its own trials' best only)."""
    progress = StudyProgress(ctx(), QuietDisplay(), planned_total=6)
    progress.add_phase("search", {"amgt": 4}, {"amgt": 1}, {"amgt": 0.8843})
    t = FakeTrial(search_trial("amgt", 1), "a")
    progress.on_trial_start(0, [], t)
    progress.on_trial_result(0, [], t, {"epoch": 2, "val_accuracy": 0.91})
    progress.on_trial_result(0, [], t, {"epoch": 3, "val_accuracy": 0.8796})
    assert progress.state.best("amgt") == 0.8843
    progress.on_trial_complete(0, [], t)  # its last result, not its best epoch, is what Optuna is told
    assert progress.state.best("amgt") == 0.8843
    t = FakeTrial(search_trial("amgt", 2), "b")
    progress.on_trial_start(0, [], t)
    progress.on_trial_result(0, [], t, {"epoch": 3, "val_accuracy": 0.9})
    assert progress.state.best("amgt") == 0.8843  # running: a (0/N) optimizer once showed a best
    progress.on_trial_complete(0, [], t)
    assert progress.state.best("amgt") == 0.9
    progress.add_phase("final", {"amgt": 2}, {})
    assert "search's best val_accuracy 0.9" in progress._line("final", "amgt")


def test_quiet_and_choice_of_display(capsys):
    assert isinstance(make_display(quiet=True), QuietDisplay)
    display = make_display()  # pytest captures stdout: not a terminal
    assert isinstance(display, PlainDisplay)
    display.message("[x] hello")
    assert capsys.readouterr().out == "[x] hello\n"


_LIVE_SCRIPT = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from tests.test_progress import ctx, search_trial, final_trial, FakeTrial
from study.progress import StudyProgress, make_display, LiveDisplay
display = make_display()
print("display:", type(display).__name__, flush=True)
with display:
    p = StudyProgress(ctx(), display, planned_total=4)
    p.add_phase("search", {"amgt": 2, "adam": 2}, {})
    display.message("[qs search] amgt: 2 trial(s) to run")
    for i, opt in enumerate(["amgt", "adam"]):
        t = FakeTrial(search_trial(opt, 0), f"t{i}")
        p.on_trial_start(0, [], t)
        p.on_trial_result(0, [], t, {"epoch": 2, "val_accuracy": 0.91 + i / 100})
        time.sleep(1.2)  # rich redraws twice a second
        p.on_trial_complete(0, [], t)
    time.sleep(0.8)
print("after the live area", flush=True)
"""


def _on_pty(args: list[str], *, env: dict, cwd: Path | None = None, timeout: float = 120) -> tuple[int, str]:
    """Run ``args`` with stdin/stdout/stderr on a pseudo-terminal; its exit status and what it wrote."""
    master, slave = os.openpty()
    proc = subprocess.Popen(args, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    try:
        raw = _read_pty(master, proc, timeout)
        proc.wait(timeout=60)
    finally:
        os.close(master)
    return proc.returncode, raw.decode("utf-8", "replace")


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def _read_pty(master: int, proc: subprocess.Popen, timeout: float) -> bytes:
    out, deadline = b"", time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def test_live_display_on_a_pseudo_terminal():
    """On a terminal the status area is drawn and redrawn in place (cursor movements), with the phase, the
    per-optimizer counts, the running trial's epoch, elapsed and ETA; messages print above it."""
    env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    rc, text = _on_pty([sys.executable, "-c", _LIVE_SCRIPT, str(ROOT)], env=env)
    assert rc == 0, text[-3000:]
    assert "display: LiveDisplay" in text, text[-3000:]
    assert "\x1b[" in text and ("\x1b[2K" in text or "\x1b[1A" in text or "\x1b[A" in text), repr(text[-2000:])
    plain = _strip_ansi(text)
    assert "[qs search] amgt: 2 trial(s) to run" in plain
    assert "trials done" in plain and "ETA" in plain and "elapsed" in plain
    assert "amgt search#0 (search): epoch 2/3" in plain
    assert "best val_accuracy" in plain and "0.91" in plain
    assert plain.rstrip().endswith("after the live area")


@pytest.mark.slow
def test_cli_run_on_a_terminal_then_in_a_log(tmp_path, ray_local):
    """`amgt-study run` of a two-trial study on a pseudo-terminal (live area, then the results table); then
    `resume` of it with its output captured (plain lines, the same table as text), and with --quiet."""
    from click.testing import CliRunner

    from study.cli import cli

    (tmp_path / "one.yaml").write_text(yaml.safe_dump({
        "name": "one", "kind": "comparison", "benchmark": "digits-cnn", "epochs": 2, "batch_size": 256,
        "optimizers": ["adam"], "search": {"trials_per_optimizer": 1}, "seeds": 1, "resources": {"cpus": 1}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "140", "TERM": "xterm-256color",
           "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    rc, raw = _on_pty([sys.executable, "-c", "from study.cli import main; main()", "run", "one.yaml"], env=env,
                      cwd=tmp_path, timeout=500)
    text = _strip_ansi(raw)
    assert rc == 0, text[-3000:]
    assert "[one search] adam: 1 trial(s) to run" in text and "[one final] launching 1 of 1 planned trials" in text
    assert "[one final] finished: adam: 1/1 completed" in text
    assert "results of one (final phase" in text and "test_accuracy (one seed)" in text, text[-3000:]
    assert "MLflow UI: amgt-study ui one" in text

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = CliRunner().invoke(cli, ["resume", "one", "--tracking-uri", uri])
    assert out.exit_code == 0, out.output[-3000:]
    assert "\x1b[" not in out.output
    assert "[one search] adam: 1/1 trials already done" in out.output
    assert "[one final] all 1 planned trials already finished" in out.output
    table = out.output[out.output.index("results of one"):].splitlines()
    assert table[1].split()[:2] == ["optimizer", "configuration"]
    assert table[2].split()[0] == "adam" and "%" in table[2]
    assert f"MLflow UI: amgt-study ui one --tracking-uri {uri}" in out.output
    quiet = CliRunner().invoke(cli, ["resume", "one", "--tracking-uri", uri, "--quiet"])
    assert quiet.exit_code == 0 and "[one" not in quiet.output and "results of one" in quiet.output, quiet.output
