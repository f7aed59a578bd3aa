"""The ablation charts drawn with matplotlib (Agg): what each panel plots, and the files' pixel sizes."""
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from training.scripts.ablation_figures import PALETTE, TERM_COLOURS, curves, panel, term_analysis

NAMES = {"method1": "I (parallel, SIlog)", "method3": "III (sequential, SIlog + ICM)"}


def records(scale: float) -> list[dict]:
    rows = []
    for step in (10, 20, 30):
        row = {"step": step, "loss_silog": scale * step, "loss_icm_1": 0.5, "loss_icm_2": 0.0, "loss_icm_3": 2.0,
               "feature_grad/loss_silog": 0.1, "feature_grad/loss_icm_1": 0.2}
        if step != 20:
            row["val"] = {"abs_rel": scale / step, "d1": 0.5, "d1_instance": 0.4, "d1_background": 0.6, "cluster_alignment": 0.3}
        rows.append(row)
    return rows


def test_uses_the_agg_backend():
    assert matplotlib.get_backend().lower() == "agg"


def test_panel_plots_finite_points_and_leaves_non_positive_ones_out_of_a_log_axis():
    figure, axes = plt.subplots()
    panel(axes, "t", [("#000000", 1.0, [(1, 2.0), (2, 0.0), (3, float("nan")), (4, 8.0)])], log_y=True)
    (line,) = axes.lines
    assert list(line.get_xdata()) == [1, 4] and list(line.get_ydata()) == [2.0, 8.0]
    assert axes.get_yscale() == "log" and line.get_marker() == "o"
    plt.close(figure)


def test_curves_and_terms_are_written_at_their_size(tmp_path):
    runs = {("method1", 0): {"records": records(1.0)}, ("method3", 0): {"records": records(2.0)},
            ("method3", 1): {"records": records(3.0)}}
    curves(runs, NAMES, tmp_path / "figures" / "ablation_curves.png")
    term_analysis(runs, NAMES, tmp_path / "figures" / "ablation_terms.png")
    assert Image.open(tmp_path / "figures" / "ablation_curves.png").size == (1050, 650)
    assert Image.open(tmp_path / "figures" / "ablation_terms.png").size == (1050, 560)
    pixels = np.asarray(Image.open(tmp_path / "figures" / "ablation_curves.png").convert("RGB")).reshape(-1, 3)
    present = {tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5)): np.any(np.all(pixels == [
        int(colour[i:i + 2], 16) for i in (1, 3, 5)], axis=1)) for colour in PALETTE}
    assert list(present.values()) == [True, True, False, False, False]  # the two methods' colours, in NAMES order
    assert not plt.get_fignums()  # every figure closed after saving


def test_term_analysis_without_runs_writes_nothing(tmp_path):
    term_analysis({}, NAMES, tmp_path / "terms.png")
    assert not (tmp_path / "terms.png").exists()
    assert set(TERM_COLOURS) == {"loss_silog", "loss_icm_1", "loss_icm_2", "loss_icm_3"}
