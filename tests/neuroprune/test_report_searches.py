"""SPEAR's reward-per-episode plot in the HTML report (write_html and neuroprune energy)."""

from __future__ import annotations

import base64
import re

from hw_models import fit
from hw_models.energy_report import energy_table
from neuroprune.report import ReportEntry, reward_figure_png, write_html

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def history(n: int, offset: float = 0.0) -> list[dict]:
    return [{"episode": e, "reward": offset + 0.01 * e - (0.5 if e == 3 else 0.0), "feasible": e != 3}
            for e in range(n)]


def test_reward_plot_is_a_png_and_joins_the_report_only_with_a_search(tmp_path, dense_net) -> None:
    png = reward_figure_png({"target 0.3, seed 0": history(10), "target 0.3, seed 1": history(6, 0.1)})
    assert png.startswith(PNG_MAGIC) and len(png) > 2000
    entry = ReportEntry("dense", energy_table(fit(dense_net, "loihi1")))
    with_search = write_html(tmp_path / "a.html", "t", [entry], searches={"SPEAR": history(10)}).read_text()
    without = write_html(tmp_path / "b.html", "t", [entry]).read_text()
    assert "SPEAR reward per episode" in with_search and "SPEAR reward per episode" not in without
    images = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,([^']+)'>", with_search)
    assert len(images) == len(re.findall("<img", without)) + 1
    name, data = images[-1]
    assert name == "SPEAR reward per episode" and base64.b64decode(data).startswith(PNG_MAGIC)


def test_energy_report_finds_the_search_beside_a_spear_model(tmp_path) -> None:
    from neuroprune.commands.energy import _searches
    from neuroprune.prune.spear import CHECKPOINT_KIND
    from neuroprune.snn.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "pruned.search", {}, {"history": history(4)}, kind=CHECKPOINT_KIND)
    save_checkpoint(tmp_path / "other.search", {}, {"history": history(4)}, kind="train-state")
    found = _searches([str(tmp_path / "pruned.pt"), str(tmp_path / "other.pt"), str(tmp_path / "none.pt")])
    assert list(found) == ["pruned.pt"] and [h["episode"] for h in found["pruned.pt"]] == [0, 1, 2, 3]
