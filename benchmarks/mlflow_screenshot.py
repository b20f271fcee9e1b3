"""Screenshot of the MLflow UI on a study's saved runs view (its runs grouped by optimizer), from a real store.

Makes ``docs/images/mlflow-runs-by-optimizer.png``::

    mkdir -p /tmp/qs && cd /tmp/qs && amgt-study run /path/to/checkout/studies/quickstart.yaml
    python benchmarks/mlflow_screenshot.py --tracking-uri sqlite:////tmp/qs/mlflow.db --study quickstart \\
        --out docs/images/mlflow-runs-by-optimizer.png

What it does: saves the study's view (``study.views.save_study_view``, as ``amgt-study ui NAME`` does),
starts ``mlflow ui`` on the store (one worker, a free port on 127.0.0.1), waits for ``/health``, takes the
screenshot with headless Chromium (Debian's ``chromium``: ``--headless --no-sandbox --disable-gpu ...
--virtual-time-budget`` lets the single-page app fetch and draw), and stops the server it started.

Needs: ``chromium`` on PATH (``apt-get install -y chromium``), ``mlflow``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow ui exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=3) as resp:
                if resp.read().strip() == b"OK":
                    return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"mlflow ui did not answer {url}/health within {timeout_s:g} s")


def screenshot(tracking_uri: str, study: str, out: Path, *, window: str = "1600,1000", charts: bool = True,
               budget_ms: int = 90000, timeout_s: float = 240) -> str:
    """Take the screenshot; returns the address shot.

    Raises:
        RuntimeError: no chromium, or the UI did not start or did not render.
    """
    import tracking

    from study.views import save_study_view

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("chromium not found: apt-get install -y chromium")
    port = _free_port()
    ui = f"http://127.0.0.1:{port}"
    view = save_study_view(tracking_uri, study, ui)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    root = tracking.default_artifact_root(tracking_uri)
    if root:
        cmd += ["--default-artifact-root", root]
    with tempfile.TemporaryDirectory() as profile:
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            _wait_healthy(ui, server, timeout_s)
            url = view.charts_url if charts else view.table_url
            out.parent.mkdir(parents=True, exist_ok=True)
            shot = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={window}",
                                   f"--virtual-time-budget={budget_ms}", f"--screenshot={out.resolve()}", url],
                                  capture_output=True, text=True, timeout=timeout_s)
            if shot.returncode != 0 or not out.is_file():
                raise RuntimeError(f"chromium failed ({shot.returncode}): {shot.stderr[-500:]}")
        finally:
            os.killpg(server.pid, signal.SIGTERM)  # the server this function started, and its workers
            server.wait(timeout=30)
    return url


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracking-uri", required=True, help="the MLflow store that holds the study")
    p.add_argument("--study", required=True)
    p.add_argument("--out", type=Path, default=Path("docs/images/mlflow-runs-by-optimizer.png"))
    p.add_argument("--window", default="1600,1000", help="Chromium window size, W,H in pixels")
    p.add_argument("--table", action="store_true", help="the grouped runs table instead of the charts")
    args = p.parse_args(argv)
    url = screenshot(args.tracking_uri, args.study, args.out, window=args.window, charts=not args.table)
    print(f"wrote {args.out} from {url}")


if __name__ == "__main__":
    main()
