"""The walkthrough notebook executes; the demo pipeline runs end to end and its HTML
report renders in headless Chromium with every plot decoded."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("Chromium is needed to check the HTML report renders; install it (apt-get install chromium) "
                "— make test does this on Debian machines")


def render(html: Path, tmp_path: Path) -> tuple[str, Path]:
    """DOM after load and a screenshot of ``html`` in headless Chromium."""
    chromium = _chromium()
    common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120).stdout
    shot = tmp_path / "shot.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1000,2400", html.as_uri()],
                   capture_output=True, timeout=120)
    return dom, shot


@pytest.mark.slow
def test_walkthrough_notebook_executes(monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it (see tests/conftest.py)
    notebook = nbformat.read(ROOT / "notebooks" / "walkthrough.ipynb", as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3").execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "spike-exact in Lava: True" in outputs
    assert "report:" in outputs


@pytest.mark.slow
def test_demo_pipeline_and_report_renders(tmp_path):
    import numpy as np
    from PIL import Image

    from neuroprune.demo import DemoConfig, run_demo

    config = DemoConfig(data="synthetic", arch="c20,c8s2,f", epochs=4, steps=8, core_margin=1, episodes=4,
                        warmup=2, lre_samples=3, lre_finetune_steps=10, recovery_steps=2, finetune_steps=30,
                        hidden=32, verify_samples=1, energy_samples=16, synops_target=0.7)
    lines: list[str] = []
    result = run_demo(tmp_path / "demo", config, log=lines.append, progress=False)
    text = "\n".join(lines)
    for stage in ("[train]", "[fit]", "[spear]", "[uniform]", "[lava]", "[energy]"):
        assert stage in text
    assert "does NOT fit" in text and "100% spike-exact" in text
    assert lines[-1].startswith("report: ") and result.report.exists()
    assert result.summary["synops_ratio"] <= 0.7 and result.summary["fits"]
    for name in ("dense.pt", "dense.net", "spear.pt", "spear.net", "spear.json"):
        assert (result.out_dir / name).exists()
    dom, shot = render(result.report, tmp_path)
    assert 'data-images-loaded="true"' in dom
    assert dom.count("data:image/png;base64") == 5  # SynOps, cores, energy, accuracy vs SynOps, SPEAR reward
    assert "SPEAR reward per episode" in dom
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape[0] >= 2000 and (pixels < 128).mean() > 0.01  # text and plots, not a blank page
