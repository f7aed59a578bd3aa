"""scripts/score_real_kitti.py on the real KITTI frames (skipped where absent): the demo model card's real-frame
table is what the script computes, and the script's figures follow the metric definitions."""
import importlib.util
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMES = ROOT.parent / "shared" / "real-samples" / "kitti" / "metric3d_kitti_demo"


def load_script():
    spec = importlib.util.spec_from_file_location("score_real_kitti", ROOT / "scripts" / "score_real_kitti.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result():
    if not FRAMES.is_dir():
        pytest.skip(f"real sample {FRAMES} not available")
    return load_script().score_frames(ROOT / "models" / "demo" / "icm_demo.onnx", FRAMES)


def test_model_card_states_the_real_frame_scores(result):
    card = (ROOT / "models" / "demo" / "MODEL_CARD.md").read_text()
    for kind, row_name in (("metric", "metric"), ("median_scaled", "median-scaled")):
        row = re.search(rf"^\| {row_name} \|(.*)\|$", card, re.MULTILINE)
        assert row, f"MODEL_CARD.md has no '| {row_name} |' row"
        stated = [float(cell) for cell in row.group(1).split("|")]
        computed = [result[kind][name] for name in ("abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3")]
        np.testing.assert_allclose(stated, computed, atol=5e-5)
    assert f"{result['median_scale']:.3f}" in card


def test_abs_rel_and_median_scaling_by_definition(result):
    from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig

    pipeline = DepthPipeline.from_config(PipelineConfig(model_path=str(ROOT / "models" / "demo" / "icm_demo.onnx"),
                                                        backend="onnxruntime"))
    frame = result["frames"][0]
    rgb = cv2.imread(str(FRAMES / "rgb" / f"{frame['frame']}.png"))[..., ::-1].copy()
    g = cv2.imread(str(FRAMES / "depth" / f"{frame['frame']}.png"), cv2.IMREAD_UNCHANGED) / 256.0
    pred = pipeline.process(rgb).depth.astype(np.float64)
    rows, cols = np.arange(g.shape[0])[:, None], np.arange(g.shape[1])[None]
    garg = ((rows >= int(0.40810811 * 375)) & (rows < int(0.99189189 * 375)) &
            (cols >= int(0.03594771 * 1242)) & (cols < int(0.96405229 * 1242)))
    counted = garg & (g > 1e-3) & (g < 80)
    assert counted.sum() == frame["pixels"]
    p = np.clip(np.nan_to_num(pred, nan=80.0), 1e-3, 80.0)[counted]
    assert frame["metric"]["abs_rel"] == pytest.approx(np.mean(np.abs(p - g[counted]) / g[counted]), rel=1e-9)
    scale = np.median(g[counted]) / np.median(pred[counted])
    q = np.clip(pred[counted] * scale, 1e-3, 80.0)
    assert frame["median_scale"] == pytest.approx(scale, rel=1e-9)
    assert frame["median_scaled"]["d1"] == pytest.approx(np.mean(np.maximum(q / g[counted], g[counted] / q) < 1.25))
