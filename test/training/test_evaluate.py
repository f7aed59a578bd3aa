"""training/evaluate.py: a checkpoint in, JSON and a Markdown table out, the network rebuilt from the
checkpoint's own settings."""
import json

import pytest
import torch

from training.checkpoint import save_checkpoint, training_state
from training.config import build_model, load_config
from training.engine import build_optimizer, build_scheduler
from training.evaluate import main, markdown_table

TINY = ["model.encoder=resnet10t", "model.img_size=[64,128]", "model.dim=32", "model.num_clusters=8", "model.iterations=1",
        "data.val_length=3", "data.num_workers=0", "eval.batch_size=2", "name=tiny"]


def write_checkpoint(path, config):
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = build_optimizer(model, 1e-4, 1e-5, 0.0, (0.9, 0.999))
    scheduler = build_scheduler(optimizer, 10, 0.3, 1.0, 10.0)
    save_checkpoint(path, training_state(model, optimizer, scheduler, 7, config.to_dict(), {}, {}, 0))


def test_evaluate_writes_json_and_markdown(tmp_path):
    config = load_config(None, TINY)
    write_checkpoint(tmp_path / "best.pt", config)
    metrics = main(["--checkpoint", str(tmp_path / "best.pt"), "--output", str(tmp_path / "eval"),
                    "eval.crop=garg"])  # a model.* override is refused: test_commands_refuse_bad_input.py
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["step"] == 7 and report["metrics"] == pytest.approx(metrics)
    assert report["config"]["eval"]["crop"] == "garg" and report["config"]["model"]["update"] == "sequential"
    assert metrics["images"] == 3 and 0 <= metrics["d1"] <= 1 and metrics["abs_rel"] > 0
    table = (tmp_path / "eval" / "metrics.md").read_text()
    assert "| run | abs_rel | sq_rel |" in table and "| tiny |" in table and "crop: garg" in table


def test_markdown_table_keeps_metric_order_and_marks_missing():
    text = markdown_table({"a": {"d1": 0.5, "abs_rel": 0.25}, "b": {"abs_rel": 0.125}})
    lines = text.splitlines()
    assert lines[0] == "| run | abs_rel | d1 |"
    assert lines[2] == "| a | 0.2500 | 0.5000 |" and lines[3] == "| b | 0.1250 | - |"


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--checkpoint", str(tmp_path / "nope.pt")])
    assert stop.value.code == 2 and f"--checkpoint {tmp_path / 'nope.pt'}: no such file" in capsys.readouterr().err
