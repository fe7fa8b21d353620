"""The alpha/gamma heatmap page in headless Chromium: drawn, offline, screenshot saved.

No-network check: Chromium writes a NetLog (--log-net-log) of every URL request the network
stack starts. Files loaded from file:// (the page, plotly.min.js) never enter it; a request
the *page* starts (script, image, XHR, font...) appears as URL_REQUEST_START_JOB whose
network_isolation_key names the page's file:// site. Chromium's own background traffic
(component updater, account checks) has a different key ('null null', https://google.com)
and is ignored. A dead proxy (--proxy-server=127.0.0.1:9) makes sure nothing could leave the
machine anyway. A positive control (a page with one https:// script) proves the check sees
page requests, so an empty result really means none were made.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.analysis import fakes

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
SWEEP_LABELS = ["-1", "-0.8", "-0.5", "-0.2", "0", "0.2", "0.5", "0.8", "1"]


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        if os.environ.get("REQUIRE_CHROMIUM"):
            pytest.fail(f"{CHROMIUM} is missing but REQUIRE_CHROMIUM is set (CI installs it)")
        pytest.skip(f"{CHROMIUM} not installed (Debian package 'chromium'); CI installs it")
    return CHROMIUM


def run_chromium(
    binary: str, page: Path, tmp: Path, *extra: str, budget_ms: int = 5000
) -> tuple[str, list[str]]:
    """Load `page` from file://, let it run `budget_ms` of virtual time; return the DOM
    (--dump-dom) and the URLs of the requests the page started (see the module doc)."""
    netlog = tmp / "netlog.json"
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp / 'profile'}",
        "--proxy-server=127.0.0.1:9",
        f"--log-net-log={netlog}",
        f"--virtual-time-budget={budget_ms}",
        *extra,
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, page_requests(netlog)


def page_requests(netlog: Path) -> list[str]:
    data = json.loads(netlog.read_text())
    names = {v: k for k, v in data["constants"]["logEventTypes"].items()}
    urls = []
    for event in data["events"]:
        if names.get(event["type"]) != "URL_REQUEST_START_JOB":
            continue
        params = event.get("params", {})
        by_page = "file://" in params.get("network_isolation_key", "")
        if by_page or "plot.ly" in params.get("url", ""):
            urls.append(params.get("url", ""))
    return urls


def test_network_check_sees_a_page_request(chromium, tmp_path):
    """Positive control for the no-network assertion below."""
    probe = tmp_path / "probe.html"
    url = "https://cdn.plot.ly/plotly-probe.min.js"
    probe.write_text(f'<!doctype html><html><body><script src="{url}"></script>hi</body></html>')
    dom, requests = run_chromium(chromium, probe, tmp_path, budget_ms=1000)
    assert "hi" in dom
    assert requests == [url]


def test_heatmap_page_renders_offline(chromium, ag_report, tmp_path):
    page = ag_report.parent / "alpha_gamma_final_test_acc.html"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "alpha_gamma_heatmap.png"
    shot.unlink(missing_ok=True)
    dom, requests = run_chromium(
        chromium,
        page,
        tmp_path,
        "--window-size=1200,1100",
        "--hide-scrollbars",
        f"--screenshot={shot}",
    )
    assert requests == []  # plotly.js came from the folder; nothing else was fetched

    # plotly ran and drew the heatmap: its SVG, the heatmap layer and the cell image
    assert dom.count('class="main-svg"') >= 2
    assert 'class="heatmaplayer mlayer"' in dom
    assert re.search(r'<g class="hm"><image [^>]*href="data:image/png;base64,', dom)
    # every cell with a usable value is annotated (81 - diverged - not run)
    assert dom.count('class="heatmap-label"') == 79
    expected = fakes.mean(fakes.ag_acc(0.5, 0.2, s) for s in fakes.AG_SEEDS)
    assert f">{expected:.3f}<" in dom
    assert ">diverged<" in dom and ">no trial<" in dom
    # the browser laid the axes out in sweep order
    xticks = re.findall(r'<g class="xtick"><text[^>]*>([^<]*)</text>', dom)
    yticks = re.findall(r'<g class="ytick"><text[^>]*>([^<]*)</text>', dom)
    assert xticks == SWEEP_LABELS and yticks == SWEEP_LABELS

    # the screenshot is a real picture of the figure
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 30_000
    with Image.open(shot) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (1200, 1100)
        colours = rgb.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200
    # both ends of the Viridis colour scale are on screen (yellow best, purple worst)
    yellow = sum(n for n, (r, g, b) in colours if r > 200 and g > 200 and b < 80)
    purple = sum(n for n, (r, g, b) in colours if r > 50 and r < 100 and g < 40 and b > 80)
    assert yellow > 2000 and purple > 2000
