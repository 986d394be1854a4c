"""`hpcxlt report`: one self-contained page, checked in a real headless Chromium: it renders, its plots show,
and it asks the network for nothing."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from hpcxlt.aggregate.aggregate_run import Options, aggregate
from hpcxlt.launch.record import write_launch
from tests.aggregate_fixture import make_run
from tests.launch_assets import run_cli


@pytest.fixture
def reported(tmp_path):
    store = make_run(
        tmp_path / "run",
        arms=[{"name": "none"}, {"name": "en", "tasks": ["mnli"]}],
        targets={"xnli": ["en", "de"]},
        seeds=[1, 2],
        score=lambda arm, *_: 60.0 + (arm == "en"),
    )
    write_launch(store, "local")
    aggregate(store.root, Options(plots=True))
    code, out = run_cli("report", str(store.root))
    assert code == 0 and "report.html" in out
    return store, store.root / "report.html"


def test_the_page_holds_the_answer_tables_plots_and_provenance(reported):
    store, page = reported
    import html

    text = html.unescape(page.read_text())
    assert "The question" in text and "zero-shot rows first" in text
    assert "Significance of arm differences" in text and "<details><summary>" in text
    assert text.count('src="data:image/png;base64,') == len(list(store.tables_dir.glob("*.png"))) == 2
    assert '"hpcxlt": "0.1.0' in text and '"torch"' in text and "config as run" in text
    # nothing outside the page: no http(s) source, link or stylesheet
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', text)


def test_headless_chromium_renders_it_with_every_plot_and_no_request(reported, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is missing: `make test` installs Debian's chromium package")
    _, page = reported
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'data-images-rendered="2"' in done.stdout  # both plots decoded and laid out
    # the page's own resource timing: it fetched nothing (a stylesheet, a font or a script from elsewhere would show)
    assert 'data-resources-fetched="0"' in done.stdout


def test_a_run_without_tables_is_told_to_aggregate_first(tmp_path, capsys):
    store = make_run(
        tmp_path / "run", arms=[{"name": "none"}], targets={"xnli": ["en"]}, seeds=[1], score=lambda *_: 50.0
    )
    code, _ = run_cli("report", str(store.root))
    assert code == 2 and "hpcxlt aggregate" in capsys.readouterr().err
