"""What the user sees while a study runs: trials done / planned per phase and optimizer and overall, the
running trials with their epoch, elapsed time and ETA, the best validation score so far per optimizer.

:class:`StudyProgress` is a Ray Tune callback that keeps a :class:`ProgressState` from Tune's trial events
(``on_trial_start/result/complete/error/recover``) and hands it to a display:

* :class:`LiveDisplay` (stdout is a terminal): one status area redrawn in place by rich's ``Live``; the
  runner's messages print above it.
* :class:`PlainDisplay` (anything else: CI logs, ``ray job submit``): lines, never redrawn — a status line
  at most every ``interval_s`` seconds, a line when an optimizer's trials of a phase are all done, and one
  per failed or retried attempt (with the trial's own error); the runner's messages as they come.
* :class:`QuietDisplay` (``--quiet``): nothing.

Lines (plain mode) keep the facts ``amgt-study`` always printed: ``[study phase] adam: 2/2 done, 0 running,
0 failed``; ``... (retrying <trial> after attempt 1 failed: ValueError: ...)``; ``... (failed <trial> after
2 attempts: ValueError: ...)``; and :func:`phase_line` when a phase ends.  ETA: the trials left (planned
minus done and failed, over every phase of the study) divided by the rate of this driver's work so far
(trials finished plus the fraction of epochs done of those running, per second of wall time).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from ray import tune

from .attempts import failure_text, last_error_line, planned_of
from .phases import PhaseSummary
from .plan import StudyContext

__all__ = ["StudyProgress", "ProgressState", "PhaseProgress", "OptimizerProgress", "RunningTrial", "Display",
           "PlainDisplay", "LiveDisplay", "QuietDisplay", "make_display", "phase_line", "status_line",
           "duration_text", "Echo"]

Echo = Callable[[str], None]


def phase_line(study: str, summary: PhaseSummary) -> str:
    """``"[study phase] finished: adam: 0/1 completed, 1 failed after 2 attempts; sgd: 1/2 completed, 1 diverged"``."""
    parts = []
    for opt, planned in summary.planned.items():
        div = summary.diverged.get(opt, 0)
        text = f"{opt}: {summary.finished.get(opt, 0) - div}/{planned} completed"
        if div:
            text += f", {div} diverged"
        if summary.interrupted.get(opt):
            text += f", {summary.interrupted[opt]} interrupted"
        if summary.failed.get(opt):
            n, a = summary.failed[opt], summary.attempts.get(opt, 0)
            text += f", {n} failed after {a} attempt{'s' * (a != 1)}"
        if opt in summary.not_run:
            text += " (not run: no completed search trial)"
        parts.append(text)
    return f"[{study} {summary.phase}] finished: " + "; ".join(parts)


def duration_text(seconds: float | None) -> str:
    """``"42 s"``, ``"3m05s"``, ``"1h02m"``; ``"?"`` for None."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


# ---- state ---------------------------------------------------------------------------------------------


@dataclass
class OptimizerProgress:
    """One optimizer in one phase: trials planned, done (with a result, before or in this driver), failed
    (every attempt), retried attempts, running, and the best value of the progress metric over its completed
    trials (each trial's last result, the value Optuna is told; a running trial's epochs do not count)."""

    planned: int = 0
    done: int = 0
    failed: int = 0
    retries: int = 0
    running: int = 0
    best: float | None = None

    @property
    def settled(self) -> bool:
        return self.planned > 0 and self.done + self.failed >= self.planned

    def offer(self, value, mode: str) -> None:
        """Keep ``value`` as ``best`` when it is a finite number better than it (``mode`` "max" or "min")."""
        if isinstance(value, (int, float)) and math.isfinite(value) and (
                self.best is None or (value > self.best if mode == "max" else value < self.best)):
            self.best = float(value)


@dataclass
class PhaseProgress:
    """A phase's optimizers, and whether it has closed."""

    phase: str
    optimizers: dict[str, OptimizerProgress] = field(default_factory=dict)
    closed: bool = False

    def total(self, what: str) -> int:
        return sum(getattr(o, what) for o in self.optimizers.values())


@dataclass
class RunningTrial:
    """A trial running now: its label (``amgt search#3``), the epoch it reported last, since when, and the
    progress metric's value in its last result (``best`` takes it when the trial completes)."""

    phase: str
    optimizer: str
    label: str
    started: float
    epoch: int = 0
    last_value: float | None = None


@dataclass
class ProgressState:
    """Everything a display shows (read under ``lock``: Tune's thread writes, rich's refresh thread reads).

    Attributes:
        planned_total: trials planned over every phase of the study (``study.plan.planned_counts``).
        metric, mode: the score shown as "best so far" (the search metric, else ``val_accuracy``).
        epochs: epochs per trial (for "epoch 2/5" and the ETA).
    """

    study: str
    planned_total: int
    metric: str | None
    mode: str = "max"
    epochs: int | None = None
    phases: dict[str, PhaseProgress] = field(default_factory=dict)
    running: dict[str, RunningTrial] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    finished_here: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.lock = threading.RLock()

    @property
    def current(self) -> str | None:
        """The phase open now (the last one added and not closed), else the last one."""
        open_ = [p for p, ph in self.phases.items() if not ph.closed]
        return open_[-1] if open_ else (next(reversed(self.phases)) if self.phases else None)

    def settled_total(self) -> int:
        return sum(ph.total("done") + ph.total("failed") for ph in self.phases.values())

    def done_total(self) -> int:
        return sum(ph.total("done") for ph in self.phases.values())

    def failed_total(self) -> int:
        return sum(ph.total("failed") for ph in self.phases.values())

    def elapsed(self, now: float | None = None) -> float:
        return (now or time.time()) - self.started

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the rate of this driver's work so far; None before any work is measurable."""
        now = now or time.time()
        partial = sum(min(1.0, t.epoch / self.epochs) for t in self.running.values()) if self.epochs else 0.0
        work = self.finished_here + partial
        elapsed = self.elapsed(now)
        left = max(0.0, self.planned_total - self.settled_total() - partial)
        if left == 0:
            return 0.0
        if work <= 0 or elapsed <= 0:
            return None
        return left / (work / elapsed)

    def best(self, optimizer: str) -> float | None:
        """The best value of the metric for ``optimizer`` so far: in the search phase when the study has one
        (the selection's score, as ``status`` gives it; the final phase's re-runs are not a selection), else
        over every phase."""
        phases = [ph for name, ph in self.phases.items() if name == "search"] or list(self.phases.values())
        vals = [ph.optimizers[optimizer].best for ph in phases
                if optimizer in ph.optimizers and ph.optimizers[optimizer].best is not None]
        if not vals:
            return None
        return max(vals) if self.mode == "max" else min(vals)

    def best_label(self, phase: str | None = None) -> str:
        """``"best val_accuracy"``; ``"search's best val_accuracy"`` in another phase of a study that searched
        (what :meth:`best` then gives: the selection's score, not the phase's own)."""
        own = phase == "search" or "search" not in self.phases
        return f"best {self.metric}" if own else f"search's best {self.metric}"

    def optimizer_names(self) -> list[str]:
        names: list[str] = []
        for ph in self.phases.values():
            names.extend(o for o in ph.optimizers if o not in names)
        return names


def _value(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def status_line(state: ProgressState, now: float | None = None) -> str:
    """One line of the whole study (plain mode): ``[study phase] 12/40 trials done overall, 2 running, 0 failed;
    elapsed 1m12s, ETA 1m30s; search: amgt 2/2 (best val_accuracy 0.951), adam 1/2 (0.962), ...``."""
    with state.lock:
        phase = state.current
        head = (f"[{state.study} {phase}] {state.done_total()}/{state.planned_total} trials done overall, "
                f"{len(state.running)} running, {state.failed_total()} failed; elapsed "
                f"{duration_text(state.elapsed(now))}, ETA {duration_text(state.eta(now))}")
        ph = state.phases.get(phase)
        if ph is None:
            return head
        parts = []
        for i, (opt, o) in enumerate(ph.optimizers.items()):
            best = state.best(opt)
            label = f" ({state.best_label(phase)} {_value(best)})" if i == 0 and best is not None else (
                f" ({_value(best)})" if best is not None else "")
            parts.append(f"{opt} {o.done}/{o.planned}{label}")
        return f"{head}; {phase}: " + ", ".join(parts)


# ---- displays --------------------------------------------------------------------------------------------


class Display(Protocol):
    """Where progress goes: ``message`` (the runner's lines), ``note`` (a trial event worth a line),
    ``refresh`` (the state changed); a context manager (``__enter__`` starts it, ``__exit__`` stops it)."""

    def message(self, line: str) -> None: ...
    def note(self, line: str) -> None: ...
    def refresh(self, state: ProgressState) -> None: ...
    def __enter__(self) -> "Display": ...
    def __exit__(self, *exc) -> None: ...


class QuietDisplay:
    """``--quiet``: nothing (errors and warnings still go to stderr)."""

    def message(self, line: str) -> None:
        pass

    def note(self, line: str) -> None:
        pass

    def refresh(self, state: ProgressState) -> None:
        pass

    def __enter__(self) -> "QuietDisplay":
        return self

    def __exit__(self, *exc) -> None:
        pass


class PlainDisplay(QuietDisplay):
    """Lines for logs: messages and notes as they come, a :func:`status_line` at most every ``interval_s``.
    ``verbose``: also one line per trial start and end (``(started <trial id>)``, ``(finished <trial id>)``:
    the timeline benchmarks/service_overhead.py reads)."""

    def __init__(self, echo: Echo = print, interval_s: float = 30.0, clock: Callable[[], float] = time.time,
                 verbose: bool = False):
        self.echo, self.interval_s, self.clock, self.verbose = echo, interval_s, clock, verbose
        self._last: float | None = None

    def message(self, line: str) -> None:
        self.echo(line)

    def note(self, line: str) -> None:
        self.echo(line)

    def refresh(self, state: ProgressState) -> None:
        now = self.clock()
        if self._last is None:
            self._last = now  # the runner has just said what it launches
            return
        if now - self._last >= self.interval_s:
            self._last = now
            self.echo(status_line(state, now))


class LiveDisplay(QuietDisplay):
    """A status area redrawn in place (rich ``Live``, 2 redraws per second); messages and notes print above it.
    The area is removed when the display stops (what stays on screen: the messages, then the CLI's results)."""

    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console()
        self.state: ProgressState | None = None
        self._live = None

    def __reduce__(self):
        # Ray Tune pickles its callbacks and searcher (for Tuner.restore), and with them what they hold of this
        # display (e.g. ``message`` as the runner's echo): a terminal and a redraw thread belong to this
        # process, so a copy is a QuietDisplay.
        return (QuietDisplay, ())

    def __enter__(self) -> "LiveDisplay":
        from rich.live import Live

        self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=2, transient=True,
                          redirect_stdout=True, redirect_stderr=True)
        self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def message(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def note(self, line: str) -> None:
        self.message(line)

    def refresh(self, state: ProgressState) -> None:
        self.state = state

    def _render(self):
        from rich.console import Group
        from rich.text import Text

        state = self.state
        if state is None:
            return Text("starting ...", style="dim")
        with state.lock:
            return Group(*render_state(state))


def render_state(state: ProgressState, now: float | None = None) -> list:
    """The live area's renderables: a header line, one table row per optimizer (a column per phase: done /
    planned, failed, running; the best score so far), the running trials with their epoch."""
    from rich.table import Table
    from rich.text import Text

    now = now or time.time()
    header = Text.assemble(
        (f"{state.study}", "bold"), f" · {state.current or '-'} · ",
        (f"{state.done_total()}/{state.planned_total}", "bold"), " trials done",
        f" · {len(state.running)} running · {state.failed_total()} failed",
        f" · elapsed {duration_text(state.elapsed(now))} · ETA {duration_text(state.eta(now))}")
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("optimizer")
    for phase in state.phases:
        table.add_column(phase, justify="right")
    if state.metric:
        table.add_column(state.best_label(), justify="right")
    for opt in state.optimizer_names():
        cells = []
        for ph in state.phases.values():
            o = ph.optimizers.get(opt)
            if o is None or o.planned == 0:
                cells.append(Text("-", style="dim"))
                continue
            cell = Text(f"{o.done}/{o.planned}", style="green" if o.settled and not o.failed else "")
            if o.running:
                cell.append(f" +{o.running}", style="cyan")
            if o.failed:
                cell.append(f" {o.failed} failed", style="red")
            cells.append(cell)
        if state.metric:
            cells.append(Text(_value(state.best(opt))))
        table.add_row(opt, *cells)
    out: list = [header, table]
    for t in sorted(state.running.values(), key=lambda t: t.started):
        epoch = f"epoch {t.epoch}/{state.epochs}" if state.epochs else f"epoch {t.epoch}"
        out.append(Text(f"  ▶ {t.label} ({t.phase}): {epoch}, {duration_text(now - t.started)}", style="cyan"))
    return out


def make_display(*, quiet: bool = False, verbose: bool = False, echo: Echo | None = None, console=None) -> Display:
    """The display for this process: quiet; plain lines, one per trial event (``verbose``); live (stdout is a
    terminal that can redraw); else plain lines."""
    if quiet:
        return QuietDisplay()
    from rich.console import Console

    console = console or Console()
    if console.is_terminal and not console.is_dumb_terminal and not verbose:
        return LiveDisplay(console)
    return PlainDisplay(echo or (lambda line: (print(line), sys.stdout.flush())), verbose=verbose)


# ---- the Tune callback -------------------------------------------------------------------------------------


class StudyProgress(tune.Callback):
    """Keeps the study's :class:`ProgressState` from Ray Tune's trial events and refreshes ``display``.

    Args:
        ctx: the study context (its name; the run name of each trial).
        display: a :class:`Display`, or a function taking a line (a :class:`PlainDisplay` of it).
        planned_total: the study's planned trials over every phase (default: those added so far).
        metric, mode: the score shown as "best so far" (default: the search metric, else ``val_accuracy``).
        clock: seconds since the epoch (``time.time``; a test's clock).
    """

    def __init__(self, ctx: StudyContext, display: "Display | Echo", *, planned_total: int | None = None,
                 metric: str | None = None, mode: str = "max", clock: Callable[[], float] = time.time):
        self.ctx, self.clock = ctx, clock
        self.display = display if hasattr(display, "refresh") else PlainDisplay(display)
        epochs = ctx.base.get("epochs")
        self.state = ProgressState(ctx.study, planned_total or 0, metric or ctx.search_metric or "val_accuracy",
                                   mode, int(epochs) if epochs else None, started=clock())
        self._fixed_total = planned_total is not None

    def __getstate__(self) -> dict:
        # Ray Tune pickles its callbacks with the Tuner's state (for Tuner.restore); a display belongs to this
        # process (a terminal, a redraw thread): a copy restored elsewhere shows nothing.
        return {**self.__dict__, "display": QuietDisplay()}

    @classmethod
    def for_study(cls, cfg, ctx: StudyContext, display: "Display | Echo") -> "StudyProgress":
        """The progress of study ``cfg`` (every phase's planned trials; the search metric and mode)."""
        from .plan import planned_counts

        s = cfg.search
        return cls(ctx, display, planned_total=sum(planned_counts(cfg).values()),
                   metric=s.metric if s is not None else "val_accuracy", mode=s.mode if s is not None else "max")

    # -- phases (called by the runner) --
    def add_phase(self, phase: str, planned: dict[str, int], done: dict[str, int],
                  best: dict[str, float] | None = None) -> None:
        """Register a phase about to launch trials: ``planned`` and ``done`` (before) per optimizer, and
        ``best``: the best score of the trials done before (a resumed search: the Optuna study's best), so
        "best so far" counts them too."""
        with self.state.lock:
            ph = self.state.phases.setdefault(phase, PhaseProgress(phase))
            for opt, n in planned.items():
                o = ph.optimizers.setdefault(opt, OptimizerProgress())
                o.planned, o.done = int(n), max(o.done, int(done.get(opt, 0)))
                o.offer((best or {}).get(opt), self.state.mode)
            ph.closed = False
            self._grow_total()
        self.display.refresh(self.state)

    def phase_closed(self, summary: PhaseSummary) -> None:
        """A phase ended: its counts become the tally of its runs (``PhaseSummary``)."""
        with self.state.lock:
            ph = self.state.phases.setdefault(summary.phase, PhaseProgress(summary.phase))
            for opt, n in summary.planned.items():
                o = ph.optimizers.setdefault(opt, OptimizerProgress())
                o.planned, o.done = int(n), int(summary.finished.get(opt, 0))
                o.failed = int(summary.failed.get(opt, 0))
            ph.closed = True
            self._grow_total()
        self.display.refresh(self.state)

    def _grow_total(self) -> None:
        known = sum(ph.total("planned") for ph in self.state.phases.values())
        if not self._fixed_total or known > self.state.planned_total:
            self.state.planned_total = max(self.state.planned_total, known)

    # -- helpers --
    def _opt(self, phase: str, opt: str) -> OptimizerProgress:
        ph = self.state.phases.setdefault(phase, PhaseProgress(phase))
        return ph.optimizers.setdefault(opt, OptimizerProgress())

    def _line(self, phase: str, opt: str, event: str | None = None) -> str:
        o = self.state.phases.get(phase, PhaseProgress(phase)).optimizers.get(opt, OptimizerProgress())
        text = (f"[{self.ctx.study} {phase}] {opt}: {o.done}/{o.planned} done, {o.running} running, {o.failed} failed"
                + (f", {o.retries} retried" if o.retries else ""))
        best = self.state.best(opt)
        if event is None and best is not None:
            text += f"; {self.state.best_label(phase)} {_value(best)}"
        return text + (f"  ({event})" if event else "")

    @property
    def _verbose(self) -> bool:
        return bool(getattr(self.display, "verbose", False))

    @staticmethod
    def _attempts(trial) -> int:
        """Attempts of this Ray trial that failed so far (Ray Tune's ``num_failures``; at least 1 here)."""
        return max(1, int(getattr(getattr(trial, "run_metadata", None), "num_failures", 0) or 0))

    def _label(self, trial) -> tuple[str, str, str]:
        from .trainable import run_name

        planned = planned_of(trial)
        if planned is None:
            return "?", "?", str(getattr(trial, "trial_id", "?"))
        return planned.phase, planned.optimizer, run_name(self.ctx.study, planned)

    # -- Ray Tune's events --
    def on_trial_start(self, iteration, trials, trial, **info):
        phase, opt, label = self._label(trial)
        with self.state.lock:
            self._opt(phase, opt).running += 1
            self.state.running[trial.trial_id] = RunningTrial(phase, opt, label, self.clock())
            line = self._line(phase, opt, f"started {trial.trial_id}") if self._verbose else None
        if line:
            self.display.note(line)
        self.display.refresh(self.state)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        phase, opt, _ = self._label(trial)
        with self.state.lock:
            t = self.state.running.get(trial.trial_id)
            if t is not None:
                t.epoch = int(result.get("epoch") or result.get("training_iteration") or t.epoch)
                t.last_value = result.get(self.state.metric)
        self.display.refresh(self.state)

    def _ended(self, trial, phase: str, opt: str, what: str | None) -> OptimizerProgress:
        o = self._opt(phase, opt)
        o.running = max(0, o.running - 1)
        if what:
            setattr(o, what, getattr(o, what) + 1)
        self.state.running.pop(trial.trial_id, None)
        return o

    def on_trial_complete(self, iteration, trials, trial, **info):
        phase, opt, _ = self._label(trial)
        with self.state.lock:
            t = self.state.running.get(trial.trial_id)
            o = self._ended(trial, phase, opt, "done")
            o.offer(t.last_value if t is not None else None, self.state.mode)  # its last result: what Optuna is told
            self.state.finished_here += 1
            line = (self._line(phase, opt, f"finished {trial.trial_id}") if self._verbose
                    else self._line(phase, opt) if o.settled else None)
        if line:
            self.display.note(line)
        self.display.refresh(self.state)

    def on_trial_error(self, iteration, trials, trial, **info):
        phase, opt, _ = self._label(trial)
        n = self._attempts(trial)
        error = last_error_line(failure_text(self.ctx, trial))
        with self.state.lock:
            self._ended(trial, phase, opt, "failed")
            self.state.finished_here += 1
            line = self._line(phase, opt, f"failed {trial.trial_id} after {n} attempt{'s' * (n != 1)}: {error}")
        self.display.note(line)
        self.display.refresh(self.state)

    def on_trial_recover(self, iteration, trials, trial, **info):
        phase, opt, _ = self._label(trial)
        error = last_error_line(failure_text(self.ctx, trial))
        with self.state.lock:
            self._ended(trial, phase, opt, "retries")
            line = self._line(phase, opt, f"retrying {trial.trial_id} after attempt {self._attempts(trial)} failed: "
                                          f"{error}")
        self.display.note(line)
        self.display.refresh(self.state)
