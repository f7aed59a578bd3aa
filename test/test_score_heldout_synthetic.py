"""The demo model card's held-out table is what scripts/score_heldout_synthetic.py computed (committed as
models/demo/heldout_metrics.json), and the script recomputes the first scenes of that file."""
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "models" / "demo" / "heldout_metrics.json"
COLUMNS = ["abs_rel", "sq_rel", "rmse", "rmse_log", "silog", "log10", "d1", "d2", "d3", "d1_instance", "d1_background",
           "cluster_alignment"]


def card_row() -> list[str]:
    text = (ROOT / "models" / "demo" / "MODEL_CARD.md").read_text()
    section = text[text.index("## Held-out metrics"):]
    return [cell.strip() for cell in re.search(r"\n\| (0\.\d+ \|.*)\|\n", section).group(1).split("|")]


def test_the_card_table_is_the_committed_result():
    means = json.loads(RESULT.read_text())["metrics"]
    row = card_row()
    assert len(row) == len(COLUMNS)
    for name, cell in zip(COLUMNS, row):
        decimals = len(cell.split(".")[1])
        assert cell == f"{means[name]:.{decimals}f}", (name, cell, means[name])


@pytest.mark.slow
def test_the_script_recomputes_the_committed_scenes():
    pytest.importorskip("torch")  # the held-out scenes come from training.data's SyntheticRoadScenes
    sys.path.insert(0, str(ROOT / "scripts"))
    from score_heldout_synthetic import score

    committed = json.loads(RESULT.read_text())
    again = score(ROOT / committed["model"], 3, committed["seed"])
    for fresh, saved in zip(again["per_scene"], committed["per_scene"][:3]):
        assert fresh.keys() == saved.keys()
        for name, value in saved.items():
            assert fresh[name] == pytest.approx(value, rel=1e-6, abs=1e-9), (saved["index"], name)
