"""Screenshot of an HTML report as a reader first sees it (headless Chromium), from a real report.

Makes ``docs/images/report-first-screen.png``::

    mkdir -p /tmp/qs && amgt-study run studies/quickstart.yaml --tracking-uri sqlite:////tmp/qs/mlflow.db
    amgt-study report quickstart --tracking-uri sqlite:////tmp/qs/mlflow.db --out /tmp/qs/report
    python benchmarks/report_screenshot.py /tmp/qs/report/report.html --out docs/images/report-first-screen.png

What it does: opens ``report.html`` (a self-contained file: no server needed) in headless Chromium (Debian's
``chromium``: ``--headless --no-sandbox --disable-gpu --disable-background-networking
--disable-component-update --disable-sync --no-first-run``) with a fresh profile, at ``--window`` (default
1280×900, a laptop's first screen), and writes the PNG of that window: what is visible before any scrolling.
``--full-page HEIGHT`` shoots a taller window instead (to see how far down a part starts).

Needs: ``chromium`` on PATH (``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def screenshot(html: Path, out: Path, *, window: str = "1280,900", timeout_s: float = 120) -> Path:
    """Render ``html`` in headless Chromium at ``window`` ("W,H" pixels) and write the PNG to ``out``.

    Raises:
        FileNotFoundError: ``html`` does not exist.
        RuntimeError: no chromium on PATH, or chromium wrote no screenshot.
    """
    html = Path(html).resolve()
    if not html.is_file():
        raise FileNotFoundError(f"report {html} does not exist")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("chromium not found: apt-get install -y chromium")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        shot = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={window}",
                               f"--screenshot={out}", html.as_uri()],
                              capture_output=True, text=True, timeout=timeout_s)
    if shot.returncode != 0 or not out.is_file():
        raise RuntimeError(f"chromium failed ({shot.returncode}): {shot.stderr[-500:]}")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html", type=Path, help="the report's report.html")
    p.add_argument("--out", type=Path, default=Path("docs/images/report-first-screen.png"))
    p.add_argument("--window", default="1280,900", help="Chromium window size, W,H in pixels (default 1280,900)")
    p.add_argument("--full-page", type=int, metavar="HEIGHT",
                   help="shoot a window this many pixels tall instead (width from --window)")
    args = p.parse_args(argv)
    window = args.window if args.full_page is None else f"{args.window.split(',')[0]},{args.full_page}"
    print(f"wrote {screenshot(args.html, args.out, window=window)}")


if __name__ == "__main__":
    main()
