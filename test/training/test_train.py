"""training/train.py on real synthetic scenes with a tiny network: outputs, resume, faults, atomic saves."""
import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from training import checkpoint as checkpoint_module
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import build_datasets, load_config
from training.data import SyntheticRoadScenes
from training.train import LogFile, NonFiniteLossError, main, train

RECIPE = str(Path(__file__).resolve().parents[2] / "training" / "configs" / "synthetic_resnet18_method3_64x256.yaml")
TINY = ["model.encoder=resnet10t", "model.img_size=[64,128]", "model.dim=32", "model.num_clusters=8", "model.iterations=1",
        "data.train_length=8", "data.val_length=2", "data.num_workers=0", "data.augment=false",
        "train.batch_size=2", "train.accumulate=1", "train.log_every=1", "train.image_every=2",
        "train.eval_every=2", "train.save_every=2", "eval.batch_size=2"]


def tiny_config(tmp_path, *overrides):
    return load_config(None, TINY + [f"train.output_dir={tmp_path / 'run'}", "name=tiny", *overrides])


@pytest.mark.slow
def test_short_run_writes_checkpoints_logs_and_report(tmp_path):
    config = tiny_config(tmp_path, "train.steps=4")
    summary = train(config)
    run = tmp_path / "run"
    state = load_checkpoint(run / "last.pt")  # weights_only=True inside
    assert {"model", "config", "optimizer", "scheduler", "step", "metrics"} <= set(state)
    assert state["step"] == 4 and state["config"]["name"] == "tiny"
    assert state["config"]["model"]["img_size"] == [64, 128] and state["config"]["model"]["update"] == "sequential"
    assert state["metrics"] == pytest.approx({k: v for k, v in summary["metrics"].items()})
    assert set(summary["metrics"]) >= {"abs_rel", "d1", "d1_instance", "d1_background", "cluster_alignment"}
    assert summary["metrics"]["images"] == 2
    assert (run / "best.pt").exists() and summary["best"]["step"] in (2, 4)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train_records = [r for r in records if "loss_silog" in r]
    assert [r["step"] for r in train_records] == [1, 2, 3, 4]
    assert all(k in train_records[0] for k in ("loss_icm_1", "loss_icm_2", "loss_icm_3", "images_per_second"))
    assert [r["step"] for r in records if "val" in r] == [2, 4]
    report = json.loads((run / "report.json").read_text())
    assert report["config"]["model"]["num_clusters"] == 8 and "abs_rel" in report["metrics"]
    assert "| tiny |" in (run / "report.md").read_text()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_method_one_and_two_skip_the_icm_terms(tmp_path):
    config = tiny_config(tmp_path, "train.steps=1", "model.update=parallel", "loss.icm_1=0", "loss.icm_2=0",
                         "loss.icm_3=0")
    train(config)
    record = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert "loss_silog" in record and "loss_icm_1" not in record


def test_log_holds_every_terms_gradient_norm_at_the_features_and_the_warm_up_weights(tmp_path):
    config = tiny_config(tmp_path, "train.steps=4", "train.log_every=2", "loss.icm_warmup=0.5")
    train(config)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    logged = [r for r in records if "loss_silog" in r]
    assert [r["step"] for r in logged] == [2, 4]
    terms = ("loss_silog", "loss_icm_1", "loss_icm_2", "loss_icm_3")
    for record in logged:
        norms = [record[f"feature_grad/{term}"] for term in terms]
        assert all(math.isfinite(n) and n > 0 for n in norms), record
    # warm-up over 0.5 x 4 = 2 steps: the record of step 2 is the second step (0-based step 1) at 1/2
    assert [r["weight/loss_icm_3"] for r in logged] == [0.5, 1.0]
    assert [r["weight/loss_silog"] for r in logged] == [1.0, 1.0]


def test_every_method_of_a_seed_sees_the_same_images(tmp_path):
    """Method I builds three cluster matrices and II/III one, which moves the global generator; the
    items and their augmentation must not move with it."""
    checksums = {}
    for name, overrides in (("I", ["model.update=parallel", "loss.icm_1=0", "loss.icm_2=0", "loss.icm_3=0"]),
                            ("III", [])):
        config = tiny_config(tmp_path / name, "train.steps=3", "data.augment=true", "train.eval_every=100",
                             "train.log_feature_gradients=false", *overrides)
        train(config)
        records = [json.loads(line) for line in (tmp_path / name / "run" / "log.jsonl").read_text().splitlines()]
        checksums[name] = [r["data_checksum"] for r in records if "data_checksum" in r]
        assert not any("feature_grad/loss_silog" in r for r in records)
    assert len(checksums["I"]) == 3 and checksums["I"] == checksums["III"]
    other_seed = tiny_config(tmp_path / "seed1", "train.steps=1", "data.augment=true", "train.seed=1",
                             "train.eval_every=100")
    train(other_seed)
    record = json.loads((tmp_path / "seed1" / "run" / "log.jsonl").read_text().splitlines()[0])
    assert record["data_checksum"] != checksums["I"][0]


class CrashAfter(torch.utils.data.Dataset):
    """Raises (like a killed job) once ``limit`` items have been read."""

    def __init__(self, dataset, limit):
        self.dataset, self.limit, self.reads = dataset, limit, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.reads += 1
        if self.reads > self.limit:
            raise KeyboardInterrupt("simulated kill")
        return self.dataset[index]


@pytest.mark.slow
def test_resume_continues_exactly_where_the_run_stopped(tmp_path):
    straight = tiny_config(tmp_path / "a", "train.steps=4")
    reference = train(straight)["model"].state_dict()

    interrupted = tiny_config(tmp_path / "b", "train.steps=4")
    train_set, val_set = build_datasets(interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, datasets=(CrashAfter(train_set, limit=3 * 2 + 1), val_set))  # dies in step 4
    assert load_checkpoint(tmp_path / "b" / "run" / "last.pt")["step"] == 2
    resumed = train(interrupted, resume=True)
    assert resumed["step"] == 4
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "run" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 2, 3, 4, 4]  # train records 1-4 and evaluations at 2 and 4, none twice
    for name, tensor in reference.items():
        torch.testing.assert_close(resumed["model"].state_dict()[name], tensor, msg=name)


class NaNImages(torch.utils.data.Dataset):
    def __init__(self, dataset, bad):
        self.dataset, self.bad = dataset, bad

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        item = dict(self.dataset[index])
        if index in self.bad:
            item["image"] = torch.full_like(item["image"], float("nan"))
        return item


def test_a_nonfinite_loss_skips_the_step_and_is_counted(tmp_path):
    config = tiny_config(tmp_path, "train.steps=4", "train.batch_size=1", "data.train_length=4",
                         "train.eval_every=100")
    train_set, val_set = build_datasets(config)
    summary = train(config, datasets=(NaNImages(train_set, bad={1}), val_set))  # one epoch: item 1 once
    assert summary["nonfinite"] == 1 and summary["step"] == 4
    assert all(torch.isfinite(p).all() for p in summary["model"].parameters())


def test_nonfinite_losses_in_a_row_stop_the_run(tmp_path):
    config = tiny_config(tmp_path, "train.steps=10", "train.max_nonfinite=2")
    train_set, val_set = build_datasets(config)
    with pytest.raises(NonFiniteLossError, match="2 steps in a row had a non-finite loss"):
        train(config, datasets=(NaNImages(train_set, bad=set(range(8))), val_set))


def test_cli_reports_a_bad_key_and_refuses_to_overwrite(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--config", RECIPE, "train.stepz=1"])
    assert stop.value.code == 2
    assert re.search(r"error: unknown config key 'train.stepz'.*train\.steps", capsys.readouterr().err)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"")
    with pytest.raises(SystemExit) as stop:
        main(["--config", RECIPE, *TINY, f"train.output_dir={tmp_path / 'run'}"])
    assert stop.value.code == 2 and "exists: pass --resume" in capsys.readouterr().err


def test_a_new_run_moves_an_older_runs_log_aside_and_resume_drops_a_cut_line(tmp_path, capsys):
    output = tmp_path / "run"
    output.mkdir()
    (output / "log.jsonl").write_text('{"step": 1, "loss": 9.0}\n{"step": 2, "lo')  # a run that died early
    config = tiny_config(tmp_path, "train.steps=2")
    train(config)
    assert json.loads((output / "log.jsonl.1").read_text().splitlines()[0]) == {"step": 1, "loss": 9.0}
    assert "moved to" in capsys.readouterr().out
    records = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
    assert records and all(record.get("loss") != 9.0 for record in records)
    with (output / "log.jsonl").open("a") as stream:
        stream.write('{"step": 99, "lo')  # cut mid-write
    LogFile(output / "log.jsonl", True).truncate_after(config.train.steps)
    assert [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()] == records
    (output / "log.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"log.jsonl: line 2 is not a JSON record"):
        LogFile(output / "log.jsonl", True).records()


def test_training_without_instances_leaves_the_callers_config_alone(tmp_path):
    class NoInstances(torch.utils.data.Dataset):
        has_instances = False

        def __init__(self, dataset):
            self.dataset = dataset

        def __len__(self):
            return len(self.dataset)

        def __getitem__(self, index):
            return self.dataset[index]

    config = tiny_config(tmp_path, "train.steps=2")
    train_set, val_set = build_datasets(config)
    train(config, datasets=(NoInstances(train_set), val_set))
    assert config.loss.icm_1 == 1.0  # the caller's object
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (saved["loss"]["icm_1"], saved["loss"]["icm_2"], saved["loss"]["icm_3"]) == (0.0, 0.0, 0.0)


def test_a_kill_during_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "config": {}, "step": 1})

    def dies_halfway(state, stream):
        stream.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(checkpoint_module.torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "config": {}, "step": 2})
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_checkpoints_refuse_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "step": 0, "payload": SyntheticRoadScenes}, path)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        load_checkpoint(path)


def test_pictures_for_tensorboard(tmp_path):
    """Image, predicted and true depth on one fixed colour scale, and the finest-scale cluster map."""
    from training.config import build_model
    from training.distributed import Context
    from training.engine import pictures

    config = tiny_config(tmp_path)
    batch = torch.utils.data.default_collate([SyntheticRoadScenes(1, size=(64, 128), seed=3)[0]])
    shown = pictures(build_model(config), batch, Context(0, 1, 0, torch.device("cpu")), 80.0)
    assert set(shown) == {"image", "depth_pred", "depth_true", "clusters"}
    assert all(picture.shape == (3, 64, 128) for picture in shown.values())
    valid = batch["valid"][0, 0].numpy()
    assert shown["depth_true"][:, valid].mean() > 0.2  # valid ground truth is visible, not black
    assert (shown["depth_true"][:, ~valid] == 0).all()
