"""The quick start: the shipped demo model matches its card, and scripts/demo.py runs the node end to end."""
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import onnx
import pytest

from icm_depth_ros.inference.contract import ModelInfo

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "demo" / "icm_demo.onnx"
CARD = ROOT / "models" / "demo" / "MODEL_CARD.md"


def test_shipped_demo_model_is_small_and_matches_its_card():
    assert MODEL.stat().st_size <= 20 * 1024 * 1024
    card = CARD.read_text()
    sha256 = hashlib.sha256(MODEL.read_bytes()).hexdigest()
    assert f"`{sha256}`" in card, "models/demo/MODEL_CARD.md must state the shipped file's sha256"
    model = onnx.load(str(MODEL))
    info = ModelInfo.from_metadata({p.key: p.value for p in model.metadata_props}, str(MODEL))
    assert info.config_name == "synthetic_mobilenetv3_demo_96x320"
    assert (info.input_height, info.input_width) == (96, 320)
    assert f"training/configs/{info.config_name}.yaml" in card and "Not a real-world model" in card
    assert f"`{info.checkpoint_sha256}`" in card


@pytest.mark.slow
@pytest.mark.ros
def test_demo_runs_the_node_over_a_ros_graph_and_reports(tmp_path):
    frames = 12
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--frames", str(frames),
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout[result.stdout.index("demo summary"):]
    abs_rel = float(re.search(r"abs_rel (\d+\.\d+)", summary).group(1))
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    live = metrics["live"]
    assert live["published"] == frames and live["received"] + live["dropped"] == frames and live["received"] > 0
    assert metrics["frames"]["scored"] == live["received"]
    assert abs_rel == pytest.approx(metrics["metrics"]["abs_rel"], abs=5e-4)
    assert f"published {frames}" in summary and "p99" in summary
    sheet = cv2.imread(str(tmp_path / "report" / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] > 3 * 300  # image | depth | instances
    # A second run reuses the rendered drive.
    assert (tmp_path / f"drive_{frames}_frames" / "metadata.yaml").is_file()
