"""replay_eval --model runs the model's self-test before scoring (--self-test refuse|warn|off, default refuse)."""
from __future__ import annotations

import json

import pytest

from conftest import MODEL_SIZE


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    from training.data.synthetic import render_sequence, write_bag

    return write_bag(tmp_path_factory.mktemp("drive") / "bag", render_sequence(2, MODEL_SIZE, seed=5))


def replay(*args):
    from icm_depth_ros.replay_eval import main

    return main([str(arg) for arg in args] + ["--no-progress"])


def test_the_shipped_model_passes_and_is_scored(bag, onnx_model, tmp_path, capsys):
    assert replay(bag, "--model", onnx_model, "--out", tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "replay_eval: self-test passed: " in err
    run = json.loads((tmp_path / "out" / "metrics.json").read_text())["run"]
    assert run["self_test"]["policy"] == "refuse" and run["self_test"]["passed"] is True
    assert run["self_test"]["precision"] == "fp32" and run["self_test"]["agreement"] == 1.0


def test_a_model_with_changed_weights_stops_the_run_with_the_line(bag, perturbed_model, tmp_path, capsys):
    assert replay(bag, "--model", perturbed_model, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("replay_eval: error: self-test failed: depth abs_rel "), err
    assert "tolerance for fp32" in err[0]
    assert not (tmp_path / "out" / "metrics.json").exists()  # nothing scored


def test_warn_scores_it_and_records_the_failure(bag, perturbed_model, tmp_path, capsys):
    assert replay(bag, "--model", perturbed_model, "--out", tmp_path / "out", "--self-test", "warn") == 0
    assert "replay_eval: self-test failed: " in capsys.readouterr().err
    run = json.loads((tmp_path / "out" / "metrics.json").read_text())["run"]
    assert run["self_test"]["policy"] == "warn" and run["self_test"]["passed"] is False
    assert run["self_test"]["abs_rel"] > run["self_test"]["tolerance"]["abs_rel"]


def test_off_and_a_model_without_reference(bag, perturbed_model, unreferenced_model, tmp_path, capsys):
    assert replay(bag, "--model", perturbed_model, "--out", tmp_path / "off", "--self-test", "off") == 0
    assert "self-test" not in capsys.readouterr().err
    run = json.loads((tmp_path / "off" / "metrics.json").read_text())["run"]
    assert run["self_test"] == {"policy": "off", "passed": None}
    assert replay(bag, "--model", unreferenced_model, "--out", tmp_path / "old") == 0
    assert "carries no reference" in capsys.readouterr().err


def test_self_test_is_refused_where_it_would_be_ignored(bag, tmp_path, capsys):
    assert replay(bag, "--live", "--self-test", "warn", "--out", tmp_path / "out") == 2
    assert "--self-test warn would be ignored --live" in capsys.readouterr().err
    assert replay(bag, "--depth-source", "ground-truth", "--instances-topic", "/camera/instances", "--self-test", "off",
                  "--out", tmp_path / "out") == 2
    assert "--self-test off would be ignored with --depth-source ground-truth" in capsys.readouterr().err
