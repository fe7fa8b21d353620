"""Report pages in headless Chromium (the alpha/gamma heatmap page, the overview, the parallel
coordinates): drawn, offline, screenshots saved under test-artifacts/.

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

from analysis import build_report
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


def screenshot_colours(
    shot: Path, size: tuple[int, int], width: int | None = None
) -> list[tuple[int, tuple]]:
    """The colours of a saved screenshot (checked to be a real PNG of `size`), of its left
    `width` pixels when given."""
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(shot) as img:
        rgb = img.convert("RGB")
        assert rgb.size == size
        if width is not None:
            rgb = rgb.crop((0, 0, width, size[1]))
        colours = rgb.getcolors(maxcolors=1 << 22)
    assert colours is not None
    return colours


def viridis_ends(colours: list[tuple[int, tuple]]) -> tuple[int, int]:
    """Pixels near Viridis' yellow (best) and purple (worst) ends."""
    yellow = sum(n for n, (r, g, b) in colours if r > 200 and g > 200 and b < 80)
    purple = sum(n for n, (r, g, b) in colours if 50 < r < 100 and g < 40 and b > 80)
    return yellow, purple


def parcoords_axis_titles(dom: str) -> list[str]:
    return re.findall(r'<text class="axis-title"[^>]*>([^<]*)</text>', dom)


def test_overview_page_renders_offline(chromium, ag_report, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "overview.png"
    shot.unlink(missing_ok=True)
    size = (1300, 2000)
    dom, requests = run_chromium(
        chromium,
        ag_report,
        tmp_path,
        f"--window-size={size[0]},{size[1]}",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        budget_ms=8000,
    )
    assert requests == []  # the overview's figures use the folder's plotly.min.js only

    # both headline figures drawn: the heatmap (cells annotated as on its own page) ...
    assert 'class="heatmaplayer mlayer"' in dom
    assert dom.count('class="heatmap-label"') == 79
    # ... and the parallel coordinates: SVG axes (alpha, gamma, the metric) over WebGL lines
    assert dom.count('class="parcoords"') == 1
    assert parcoords_axis_titles(dom) == ["alpha", "gamma", "final validation accuracy"]
    assert dom.count('class="gl-canvas gl-canvas-context"') == 1
    # the tables and the links below the figures
    assert '<table class="best">' in dom and '<table class="definitions">' in dom
    assert 'href="parallel_coordinates.html"' in dom

    colours = screenshot_colours(shot, size)
    assert len(colours) > 200
    yellow, purple = viridis_ends(colours)
    assert yellow > 2000 and purple > 2000


def test_parallel_coordinates_page_renders_offline(chromium, tmp_path):
    results, history = fakes.search_frames()
    exp = fakes.write_experiment(tmp_path / "search", results, history, study="search")
    page = build_report(exp).parent / "parallel_coordinates.html"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "parallel_coordinates.png"
    shot.unlink(missing_ok=True)
    size = (1200, 800)
    dom, requests = run_chromium(
        chromium,
        page,
        tmp_path,
        f"--window-size={size[0]},{size[1]}",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        budget_ms=8000,
    )
    assert requests == []
    assert 'class="main-svg"' in dom and dom.count('class="parcoords"') == 1
    assert parcoords_axis_titles(dom) == [
        "alpha",
        "optimizer",
        "lr (log)",
        "final validation accuracy",
    ]
    # the categorical knob's tick text, drawn by the browser
    ticks = re.findall(r'<g class="tick"[^>]*>.*?<text[^>]*>([^<]*)</text>', dom)
    assert {"adam", "sgd", "0.0001"} <= set(ticks)
    assert "8 trials drawn across 3 swept knobs" in dom

    # the lines were painted (WebGL): thin, blended lines of both halves of Viridis left of
    # the colour bar (which is SVG, x > 1050 at this window size); the axes and their text
    # are grey or slate blue (green not above red, or red not above green)
    colours = screenshot_colours(shot, size, width=1000)
    greenish = sum(n for n, (r, g, b) in colours if g > r + 40 and g > b)
    purplish = sum(n for n, (r, g, b) in colours if b > g + 30 and r > g)
    assert greenish > 300 and purplish > 300
