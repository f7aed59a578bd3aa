"""Every command of the project refuses bad input before any work: one line naming the option, key or file,
the value and what is allowed; exit code 2; no traceback. Run as real subprocesses, as a user would.

Categories, for each command: a value out of range, a value of the wrong type, a file that is not what it
should be, an output that would overwrite an input, and an option the combination given would ignore.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "models" / "demo" / "icm_demo.onnx"
TINY = ["model.encoder=resnet10t", "model.img_size=[64,128]", "model.dim=32", "model.num_clusters=8",
        "model.iterations=1", "data.val_length=2", "data.num_workers=0", "train.accumulate=1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A text file, a YAML file that is not a mapping, a rosbag2 drive of two frames, a folder."""
    folder = tmp_path_factory.mktemp("inputs")
    text = folder / "notes.txt"
    text.write_text("not a checkpoint, model, config or bag\n")
    scalar_yaml = folder / "scalar.yaml"
    scalar_yaml.write_text("just a sentence\n")
    from training.data.synthetic import render_sequence, write_bag

    bag = write_bag(folder / "drive", render_sequence(2, (64, 128), seed=3))
    text_model = folder / "model.onnx"
    text_model.write_text("this is not an ONNX file\n")
    (folder / "calib").mkdir()
    return {"text": text, "scalar_yaml": scalar_yaml, "bag": bag, "text_model": text_model, "calib": folder / "calib",
            "folder": folder}


def run(command: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)


def assert_refused(result: subprocess.CompletedProcess, *expected: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    last = result.stderr.strip().splitlines()[-1]  # argparse puts its usage above the one error line
    for text in expected:
        assert text in last, (text, last)


TRAIN_CASES = {
    "range: a negative step count": (["train.steps=-3"], ["config key 'train.steps'", "greater than or equal to 1", "got -3"]),
    "range: a zero logging interval": (["train.log_every=0"], ["'train.log_every'", "got 0"]),
    "range: a batch of 0": (["train.batch_size=0"], ["'train.batch_size'", "got 0"]),
    "type: a fractional image size": (["model.img_size=[96.5,320]"], ["'model.img_size' expects int", "96.5"]),
    "type: a size that is not a multiple of 32": (["model.img_size=[100,320]"], ["'model.img_size'", "multiples of 32"]),
    "unknown key": (["train.stepz=3"], ["unknown config key 'train.stepz'", "train.steps"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_refuses(case, tmp_path):
    overrides, expected = TRAIN_CASES[case]
    result = run([sys.executable, "training/train.py", "--config",
                  "training/configs/synthetic_resnet18_method3_64x256.yaml", *overrides,
                  f"train.output_dir={tmp_path / 'run'}"])
    assert_refused(result, *expected)
    assert not (tmp_path / "run").exists()  # refused before any work


@pytest.mark.slow
def test_train_refuses_files_outputs_and_combinations(files, tmp_path):
    train = [sys.executable, "training/train.py"]
    assert_refused(run(train + ["--config", str(files["scalar_yaml"])]), "scalar.yaml must hold a mapping, got str")
    assert_refused(run(train + ["--config", str(files["folder"] / "none.yaml")]), "config file not found")
    recipe = ["--config", "training/configs/synthetic_resnet18_method3_64x256.yaml"]
    assert_refused(run(train + recipe + ["--resume", f"train.output_dir={tmp_path}"]),
                   "--resume:", "last.pt not found")
    (tmp_path / "last.pt").write_text("an earlier run")
    assert_refused(run(train + recipe + [f"train.output_dir={tmp_path}"]), "last.pt exists: pass --resume")
    # the project's own ValueErrors reach the user as one line too (found after the network is built)
    result = run(train + recipe + TINY + ["data.train_length=2", "train.batch_size=4",
                                         f"train.output_dir={tmp_path / 'small'}"])
    assert_refused(result, "batch size 4 exceeds the 2 training items")
    kitti = ["--config", "training/configs/icm_swinl_kitti_352x1216.yaml"]
    assert_refused(run(train + kitti + ["data.train_length=5"]), "data.train_length=5 would be ignored")
    debug = run(train + recipe + ["train.steps=0", "--debug"])
    assert debug.returncode != 0 and "Traceback" in debug.stderr  # --debug shows where it came from


@pytest.mark.slow
def test_evaluate_refuses(files, tmp_path):
    evaluate = [sys.executable, "training/evaluate.py"]
    assert_refused(run(evaluate + ["--checkpoint", str(files["text"])]), "notes.txt is not a training checkpoint")
    assert_refused(run(evaluate + ["--checkpoint", str(tmp_path / "none.pt")]), "--checkpoint", "no such file")
    recipe = ["--config", "training/configs/synthetic_resnet18_method3_64x256.yaml"]
    assert_refused(run(evaluate + ["--checkpoint", str(files["text"]), *recipe, "eval.batch_size=0"]),
                   "'eval.batch_size'", "got 0")
    assert_refused(run(evaluate + ["--checkpoint", str(files["text"]), *recipe, "eval.crop=center"]),
                   "'eval.crop' must be one of ['none', 'garg'], got 'center'")
    assert_refused(run(evaluate + ["--checkpoint", str(files["text"]), "model.dim=64"]),
                   "model.dim=64 would be ignored", "checkpoint's own model settings")
    assert_refused(run(evaluate + ["--checkpoint", str(files["text"]), "--output", str(files["text"])]),
                   "--output", "is not a folder")


@pytest.mark.slow
def test_export_refuses(files, tmp_path):
    export = [sys.executable, "training/export.py"]
    text = str(files["text"])
    out = str(tmp_path / "m.onnx")
    assert_refused(run(export + ["--checkpoint", text, "--out", out, "--fp16-out", out]),
                   f"--fp16-out {out} is also --out: it would overwrite it")
    assert_refused(run(export + ["--checkpoint", text, "--out", text]), f"--out {text} is also --checkpoint")
    assert_refused(run(export + ["--checkpoint", text, "--out", out, "--calib", str(files["calib"])]),
                   "--calib", "would be ignored", "INT8 output")
    assert_refused(run(export + ["--checkpoint", text, "--out", out, "--dynamic-batch", "--max-batch", "4"]),
                   "--max-batch 4 would be ignored", "--engine only")
    assert_refused(run(export + ["--checkpoint", text, "--out", out, "--precision", "int8"]),
                   "--precision int8 would be ignored")
    assert_refused(run(export + ["--checkpoint", text, "--out", out, "--height", "100", "--width", "320"]),
                   "--height 100", "multiple of 32")
    assert_refused(run(export + ["--checkpoint", text, "--out", out, "--max-batch", "0"]), "--max-batch 0", ">= 1")
    assert_refused(run(export + ["--checkpoint", text, "--out", out, "--height", "a", "--width", "320"]),
                   "--height", "invalid int value: 'a'")
    assert_refused(run(export + ["--checkpoint", text, "--out", out]), "notes.txt is not a training checkpoint")
    assert not Path(out).exists()


@pytest.mark.slow
def test_replay_eval_refuses(files, tmp_path):
    bag, model = str(files["bag"]), str(DEMO_MODEL)
    replay = [sys.executable, "-m", "icm_depth_ros.replay_eval", bag, "--out", str(tmp_path / "out")]
    assert_refused(run(replay + ["--model", model, "--stamp-tolerance", "-0.1"]), "--stamp-tolerance -0.1", ">= 0")
    assert_refused(run(replay + ["--model", model, "--samples", "-1"]), "--samples -1", ">= 0")
    assert_refused(run(replay + ["--model", model, "--threads", "-2"]), "--threads -2", ">= 0")
    assert_refused(run(replay + ["--model", model, "--min-depth", "50", "--max-depth", "10"]), "the depth range needs 0 < min < max")
    assert_refused(run(replay + ["--model", model, "--samples", "two"]), "--samples", "invalid int value: 'two'")
    assert_refused(run(replay + ["--model", model, "--rate", "2"]), "--rate 2.0 would be ignored offline")
    assert_refused(run(replay + ["--live", "--write-bag"]), "--write-bag would be ignored --live")
    assert_refused(run(replay + ["--live", "--model", model]), "--model", "would be ignored --live")
    assert_refused(run(replay + ["--live", "--rate", "0"]), "--rate 0.0: must be > 0")
    assert_refused(run(replay + ["--model", str(tmp_path / "none.onnx")]), "--model", "none.onnx: no such file")
    inside = [sys.executable, "-m", "icm_depth_ros.replay_eval", bag, "--model", model, "--out", str(files["bag"] / "report")]
    assert_refused(run(inside), "it would write into the input")
    assert_refused(run([sys.executable, "-m", "icm_depth_ros.replay_eval", str(files["text"]), "--model", model,
                        "--out", str(tmp_path / "o")]), "notes.txt", "rosbags cannot open it")
    result = run(replay + ["--model", str(files["text_model"]), "--no-progress"])
    assert_refused(result, "model.onnx")
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.slow
def test_demo_refuses(tmp_path):
    demo = ["bash", "scripts/demo.sh"]  # the quick-start command itself (the environment is already set up)
    assert_refused(run(demo + ["--frames", "0", "--out", str(tmp_path)]), "--frames 0", ">= 1")
    demo = [sys.executable, "scripts/demo.py"]
    assert_refused(run(demo + ["--frames", "2.5"]), "--frames", "invalid int value: '2.5'")
    assert_refused(run(demo + ["--rate", "0"]), "--rate 0.0", "> 0")
    assert_refused(run(demo + ["--model", str(tmp_path / "none.onnx")]), "--model", "no such file")
    (tmp_path / "file").write_text("")
    assert_refused(run(demo + ["--out", str(tmp_path / "file")]), "--out", "not a folder")
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]  # nothing rendered, nothing started


@pytest.mark.slow
def test_synthetic_data_commands_refuse(tmp_path):
    synthetic = [sys.executable, "-m", "training.data.synthetic", "--out", str(tmp_path / "data")]
    assert_refused(run(synthetic + ["--frames", "0"]), "--frames 0", "must be >= 1")
    assert_refused(run(synthetic + ["--frames", "2", "--seed", "-1"]), "--seed -1", ">= 0")
    assert_refused(run(synthetic + ["--frames", "two"]), "--frames", "invalid int value: 'two'")
    closing = [sys.executable, "-m", "training.data.synthetic.closing", "--out", str(tmp_path / "closing")]
    assert_refused(run(closing + ["--seed", "-3"]), "--seed -3", ">= 0")
    assert_refused(run(closing + ["--size", "4x4"]), "--size 4x4")
    assert not (tmp_path / "data").exists() and not (tmp_path / "closing").exists()
