"""Config: defaults <- YAML <- key=value, errors that name the key, every recipe file loads."""
from pathlib import Path

import pytest
import torch

from training.config import (
    Config,
    ConfigError,
    allowed_keys,
    build_criterion,
    from_dict,
    load_config,
    loss_weights,
)

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "training" / "configs").glob("*.yaml"))


def test_defaults_follow_idisc():
    config = Config()
    assert (config.optim.lr, config.optim.backbone_lr, config.optim.grad_clip) == (2e-4, 2e-5, 1.0)
    assert (config.train.batch_size, config.train.accumulate) == (8, 2)
    assert config.model.num_clusters == 32 and config.model.update == "sequential"


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "my_recipe.yaml"
    path.write_text("model:\n  update: parallel\noptim:\n  lr: 1e-4\ntrain:\n  steps: 10\n")
    config = load_config(path, ["train.steps=20", "model.img_size=[64,128]", "loss.icm_2=0", "data.root=null"])
    assert config.name == "my_recipe"
    assert config.model.update == "parallel"
    assert config.optim.lr == 1e-4  # YAML 1.1 reads 1e-4 as a string; the float field takes it
    assert config.train.steps == 20 and config.model.img_size == [64, 128]
    assert loss_weights(config) == {"loss_silog": 1.0, "loss_icm_1": 1.0, "loss_icm_2": 0.0, "loss_icm_3": 1.0}
    assert config.output_dir == Path("outputs/my_recipe")


def test_unknown_key_names_key_and_allowed_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'train.stepz'.*allowed keys: .*train\.steps"):
        load_config(None, ["train.stepz=3"])
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'optim.learning_rate'.*optim\.lr"):
        load_config(path)
    with pytest.raises(ConfigError, match="unknown config key 'model'"):
        load_config(None, ["model=3"])


def test_bad_values_name_the_allowed_values():
    with pytest.raises(ConfigError, match=r"'model.update' must be one of \['sequential', 'parallel'\]"):
        load_config(None, ["model.update=both"])
    with pytest.raises(ConfigError, match=r"'train.steps' expects int \(a whole number\), got 'many'"):
        load_config(None, ["train.steps=many"])
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(None, ["train.steps"])


def test_round_trip_through_a_checkpoint_dict(tmp_path):
    config = load_config(None, ["model.encoder=resnet50", "eval.full_size=[375,1242]", "name=x"])
    path = tmp_path / "c.pt"
    torch.save({"config": config.to_dict()}, path)
    restored = from_dict(torch.load(path, weights_only=True)["config"])
    assert restored == config
    assert set(config.to_dict()["model"]) >= {"encoder", "img_size", "num_clusters", "dim", "update", "iterations",
                                              "min_depth", "max_depth"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_recipe_loads(path):
    config = load_config(path)
    assert config.name == path.stem
    height, width = config.model.img_size
    assert height % 32 == 0 and width % 32 == 0
    build_criterion(config)


def test_icm_options_are_off_by_default_and_resolve_to_steps():
    config = load_config(None, ["train.steps=900"])
    criterion = build_criterion(config)
    assert (criterion.icm_warmup_steps, criterion.icm_reduction) == (0, "sum")  # the paper's eq. 5 and 7
    criterion = build_criterion(load_config(None, ["train.steps=900", "loss.icm_warmup=0.3", "loss.icm_reduction=mean"]))
    assert (criterion.icm_warmup_steps, criterion.icm_reduction) == (270, "mean")
    with pytest.raises(ConfigError, match=r"'loss.icm_reduction' must be one of \['sum', 'mean'\], got 'avg'"):
        load_config(None, ["loss.icm_reduction=avg"])
    with pytest.raises(ConfigError, match=r"'loss.icm_warmup': input should be less than or equal to 1, got 1.5"):
        load_config(None, ["loss.icm_warmup=1.5"])  # refused when the config is read, before any work


def test_synthetic_deviation_recipes_are_method_three_plus_one_option():
    """The issue-15 options: III with the ICM warm-up, III with the per-pixel ICM cost; nothing else differs."""
    folder = CONFIGS[0].parent
    base = load_config(folder / "synthetic_resnet18_method3_64x256.yaml").to_dict()
    for stem, key, value in (("icm_warmup", "icm_warmup", 0.3), ("icm_per_pixel", "icm_reduction", "mean")):
        config = load_config(folder / f"synthetic_resnet18_method3_{stem}_64x256.yaml").to_dict()
        assert config["loss"].pop(key) == value
        config["loss"][key] = base["loss"][key]
        config.pop("name")
        assert config == {k: v for k, v in base.items() if k != "name"}


def test_ablation_recipes_differ_only_in_the_method():
    """Table V: methods I/II/III share encoder, data and budget; I is parallel, III adds the ICM loss."""
    for family in ("synthetic_resnet18_method{}_64x256", "ablation_resnet50_method{}_cityscapes_dvps"):
        configs = [load_config(CONFIGS[0].parent / f"{family.format(m)}.yaml").to_dict() for m in (1, 2, 3)]
        for config in configs:
            config.pop("name")
        updates = [c["model"].pop("update") for c in configs]
        icm = [[c["loss"].pop(f"icm_{s}") for s in (1, 2, 3)] for c in configs]
        assert updates == ["parallel", "sequential", "sequential"]
        assert icm == [[0.0] * 3, [0.0] * 3, [1.0] * 3]
        assert configs[0] == configs[1] == configs[2]


def test_allowed_keys_are_dotted_leaves():
    keys = allowed_keys()
    assert "train.steps" in keys and "model.encoder" in keys and "name" in keys and "model" not in keys


@pytest.mark.parametrize("override, message", [
    ("train.steps=-5", r"'train.steps': input should be greater than or equal to 1, got -5"),
    ("train.batch_size=0", r"'train.batch_size': input should be greater than or equal to 1, got 0"),
    ("train.log_every=0", r"'train.log_every': input should be greater than or equal to 1, got 0"),
    ("train.eval_every=0", r"'train.eval_every': input should be greater than or equal to 1, got 0"),
    ("train.save_every=-1", r"'train.save_every': input should be greater than or equal to 1, got -1"),
    ("train.steps=2.5", r"'train.steps' expects int \(a whole number\), got 2.5"),
    ("model.img_size=[96.5,320]", r"'model.img_size' expects int \(a whole number\), got 96.5"),
    ("model.img_size=[100,320]", r"'model.img_size': both sides must be multiples of 32"),
    ("model.img_size=[96]", r"'model.img_size': list should have at least 2 items"),
    ("model.max_depth=0.0005", r"'model.max_depth': must exceed min_depth \(0.001\)"),
    ("eval.full_size=[375,0]", r"'eval.full_size' \(item 1\): input should be greater than or equal to 1, got 0"),
    ("loss.fuzziness=1", r"'loss.fuzziness': input should be greater than 1, got 1"),
    ("optim.lr=0", r"'optim.lr': input should be greater than 0, got 0"),
    ("train.amp=maybe", r"'train.amp' expects true or false, got 'maybe'"),
    ("data.num_workers=-2", r"'data.num_workers': input should be greater than or equal to -1, got -2"),
])
def test_ranges_and_types_are_refused_naming_the_key_and_value(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_a_bad_value_in_a_file_names_the_file_and_key(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("train:\n  steps: 0\n")
    with pytest.raises(ConfigError, match=r"recipe.yaml: config key 'train.steps': input should be greater"):
        load_config(path)
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match=r"config file .*recipe.yaml is not YAML"):
        load_config(path)


def test_fractional_sizes_are_never_rounded_silently():
    """A fraction where a whole number is needed is an error, not an integer (2.0 is the whole number 2)."""
    assert load_config(None, ["model.img_size=[96.0,320]"]).model.img_size == [96, 320]
    with pytest.raises(ConfigError):
        load_config(None, ["model.img_size=[96.4,320]"])


def test_assignment_is_validated_too():
    config = Config()
    with pytest.raises(ValueError):
        config.train.steps = 0


def test_keys_the_dataset_would_ignore_are_refused(tmp_path):
    """Scene counts and seeds only make in-memory synthetic scenes; with a real dataset they would be ignored."""
    recipe = CONFIGS[0].parent / "icm_swinl_kitti_352x1216.yaml"
    with pytest.raises(ConfigError, match=r"^data.train_length=5 would be ignored: it applies to in-memory synthetic "
                                          r"scenes only .* not to data.dataset kitti_eigen"):
        load_config(recipe, ["data.train_length=5"])
    with pytest.raises(ConfigError, match="data.val_seed=7 would be ignored"):
        load_config(None, ["data.root=/data/synthetic_on_disk", "data.val_seed=7"])
    assert load_config(None, ["data.train_length=5"]).data.train_length == 5  # in-memory synthetic: used
