"""Every training/evaluation setting in one place: dataclasses with commented defaults.

A run's config is built in three layers, later ones winning:
    the defaults below  <-  one YAML file per recipe (training/configs/NAME.yaml)  <-  key=value overrides
e.g. ``python training/train.py --config training/configs/X.yaml train.steps=200 model.update=parallel``.
An unknown key is an error that names the key and the allowed keys. Classes elsewhere take numbers and
modules; ``build_model`` and ``build_criterion`` at the bottom are the only places that read a Config.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DATASETS = ("kitti_eigen", "cityscapes_dvps", "semkitti_dvps", "synthetic")
EVAL_CROPS = ("none", "garg")
UPDATE_MODES = ("sequential", "parallel")  # same as training.model.UPDATE_MODES, kept import-free


@dataclass
class ModelConfig:
    """Keyword arguments of ICMDepthNet (saved as config["model"]; training/export.py rebuilds from it)."""

    encoder: str = "resnet18"  # timm name; the paper uses swin_large_patch4_window7_224, its ablation resnet50
    img_size: list[int] = field(default_factory=lambda: [192, 640])  # [H, W], multiples of 32; also the data size
    num_clusters: int = 32  # N (paper II-B)
    dim: int = 256  # D, channels of F1..F3 and of the clusters
    update: str = "sequential"  # "sequential" (paper, methods II/III) or "parallel" (method I)
    iterations: int = 2  # cluster-update passes per scale, shared weights (iDisc)
    min_depth: float = 1e-3  # metres; predictions are clamped to [min_depth, max_depth] at evaluation
    max_depth: float = 80.0
    init_depth: float = 10.0  # the depth head starts here: a plausible road-scene distance


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # one of DATASETS
    root: str | None = None  # dataset folder; None with "synthetic" = scenes generated in memory
    train_split: str = "train"
    val_split: str = "val"
    augment: bool = True  # training split only (FACTS section 3)
    num_workers: int = 2
    # Only for in-memory synthetic scenes (root None): how many, and from which seeds. The held-out set
    # uses a seed far from the training seed so no scene is shared.
    train_length: int = 2000
    train_seed: int = 0
    val_length: int = 200
    val_seed: int = 1_000_000


@dataclass
class LossConfig:
    """Weights of the named terms (paper eq. 7: all 1). Method I/II of the ablation set the ICM terms to 0."""

    silog: float = 1.0
    icm_1: float = 1.0  # on A1 at F1 (1/16 of the input)
    icm_2: float = 1.0  # on A1 at F2 (1/8)
    icm_3: float = 1.0  # on A1 at F3 (1/4)
    fuzziness: float = 2.0  # Fuzzy C-means m (paper eq. 4)
    # Two deviations from the paper (issue 15), both off by default:
    # the ICM weights ramp linearly 0 -> 1 over this fraction of train.steps (0 = none, the paper) ...
    icm_warmup: float = 0.0
    # ... and each ICM cost sums (the paper's eq. 5) or averages ("mean") over its scale's pixels.
    icm_reduction: str = "sum"


@dataclass
class OptimConfig:
    """iDisc's recipe (FACTS section 3)."""

    lr: float = 2e-4  # neck, clusters, head
    backbone_lr: float = 2e-5  # the (pretrained) encoder moves 10x slower
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    pct_start: float = 0.3  # OneCycle: warm up over the first 30% of the steps
    div_factor: float = 1.0  # OneCycle starts at lr / div_factor (iDisc: no warm-up ramp in lr)
    final_div_factor: float = 10.0  # ... and ends at lr / (div_factor * final_div_factor)
    grad_clip: float = 1.0  # max global L2 norm of the gradient; 0 = off


@dataclass
class TrainConfig:
    steps: int = 40_000  # optimiser steps (not micro-batches)
    batch_size: int = 8  # per process and micro-batch
    accumulate: int = 2  # micro-batches per optimiser step (iDisc: 8 x 2)
    seed: int = 0
    amp: bool = True  # mixed precision (bf16 where supported, else fp16 + loss scaling); GPU only
    encoder_weights: str | None = None  # local ImageNet weights for the encoder; nothing is downloaded
    output_dir: str | None = None  # None = outputs/<config name>
    log_every: int = 20  # steps between TensorBoard scalars
    image_every: int = 500  # steps between TensorBoard pictures
    eval_every: int = 2000  # steps between evaluations (and best-checkpoint updates)
    save_every: int = 1000  # steps between last.pt writes (also written at eval and at the end)
    max_nonfinite: int = 5  # this many non-finite losses in a row stop the run
    eval_max_images: int = 0  # 0 = the whole validation split
    # At each log step, also the L2 norm of every loss term's gradient at the neck features F1..F3, which
    # SIlog and the ICM terms all act through (one extra partial backward pass per term).
    log_feature_gradients: bool = True


@dataclass
class EvalConfig:
    """Dataset-specific evaluation region (FACTS section 4)."""

    min_depth: float = 1e-3  # GT outside (min_depth, max_depth) is not evaluated
    max_depth: float = 80.0
    crop: str = "none"  # "garg" for KITTI Eigen
    # Size of the image the crop fractions refer to, when the evaluated image is a bottom-centre crop of
    # it (KITTI's KB crop of 375 x 1242); None = the evaluated image itself.
    full_size: list[int] | None = None
    batch_size: int = 4


@dataclass
class Config:
    name: str = "unnamed"  # the recipe; defaults to the YAML file's stem
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only (loadable with torch.load(weights_only=True))."""
        return dataclasses.asdict(self)

    @property
    def output_dir(self) -> Path:
        return Path(self.train.output_dir or Path("outputs") / self.name)


class ConfigError(ValueError):
    """A config file or override that cannot be applied; the message says which key and what is allowed."""


CHOICES = {
    ("model", "update"): UPDATE_MODES,
    ("data", "dataset"): DATASETS,
    ("eval", "crop"): EVAL_CROPS,
    ("loss", "icm_reduction"): ("sum", "mean"),  # same as training.losses.matcher.REDUCTIONS
}


def allowed_keys(config: Any = None, prefix: str = "") -> list[str]:
    """Every settable dotted key, e.g. ['name', 'model.encoder', ...]."""
    config = Config() if config is None else config
    keys = []
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            keys += allowed_keys(value, f"{prefix}{item.name}.")
        else:
            keys.append(prefix + item.name)
    return keys


def _coerce(key: str, value: Any, default: Any, field_type: str) -> Any:
    """Check ``value`` against the field's type; YAML quirks (``1e-4`` is a string in YAML 1.1) are fixed."""
    optional = "None" in field_type
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key {key!r} may not be null")
    if field_type.startswith("bool"):
        if isinstance(value, bool):
            return value
    elif field_type.startswith("int"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif field_type.startswith("float"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif field_type.startswith("list"):
        if isinstance(value, (list, tuple)):
            inner = float if "float" in field_type else int
            try:
                return [inner(v) for v in value]
            except (TypeError, ValueError):
                pass
    elif field_type.startswith("str"):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"config key {key!r} expects {field_type}, got {value!r}")


def set_key(config: Config, key: str, value: Any) -> None:
    """Set dotted ``key`` (e.g. 'train.steps') after checking that it exists and the value fits."""
    parts = key.split(".")
    target = config
    for part in parts[:-1]:
        child = getattr(target, part, None) if dataclasses.is_dataclass(target) else None
        if not dataclasses.is_dataclass(child):
            raise ConfigError(f"unknown config key {key!r}; allowed keys: {', '.join(allowed_keys())}")
        target = child
    fields = {f.name: f for f in dataclasses.fields(target)} if dataclasses.is_dataclass(target) else {}
    leaf = parts[-1]
    if leaf not in fields or dataclasses.is_dataclass(getattr(target, leaf)):
        raise ConfigError(f"unknown config key {key!r}; allowed keys: {', '.join(allowed_keys())}")
    value = _coerce(key, value, getattr(target, leaf), str(fields[leaf].type))
    choices = CHOICES.get(tuple(parts))
    if choices is not None and value not in choices:
        raise ConfigError(f"config key {key!r} must be one of {list(choices)}, got {value!r}")
    setattr(target, leaf, value)


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + str(key)] = value
    return flat


def parse_override(text: str) -> tuple[str, Any]:
    """'train.steps=200' -> ('train.steps', 200); the value is read as YAML ('[96,320]' is a list)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value (e.g. train.steps=200)")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def from_dict(tree: dict, name: str | None = None) -> Config:
    """A Config from a (possibly nested, possibly partial) dict, e.g. one saved in a checkpoint."""
    config = Config()
    for key, value in _flatten(tree).items():
        set_key(config, key, value)
    if name is not None and "name" not in tree:
        config.name = name
    return config


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- YAML file ``path`` <- ``overrides`` ('key=value' strings)."""
    tree, name = {}, None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        tree = yaml.safe_load(path.read_text()) or {}
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {path} must hold a mapping, got {type(tree).__name__}")
        name = path.stem
    try:
        config = from_dict(tree, name)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    for text in overrides:
        set_key(config, *parse_override(text))
    return config


def format_config(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False).rstrip()


def loss_weights(config: Config) -> dict[str, float]:
    loss = config.loss
    return {"loss_silog": loss.silog, "loss_icm_1": loss.icm_1, "loss_icm_2": loss.icm_2, "loss_icm_3": loss.icm_3}


def build_model(config: Config, pretrained: bool = True):
    """ICMDepthNet from config.model (+ the encoder's ImageNet weights when starting a run)."""
    from training.model import ICMDepthNet

    weights = config.train.encoder_weights if pretrained else None
    model = config.model
    return ICMDepthNet(
        encoder=model.encoder,
        img_size=tuple(model.img_size),
        num_clusters=model.num_clusters,
        dim=model.dim,
        update=model.update,
        iterations=model.iterations,
        min_depth=model.min_depth,
        max_depth=model.max_depth,
        init_depth=model.init_depth,
        pretrained_path=weights,
    )


def build_criterion(config: Config):
    from training.losses import ICMCriterion

    loss = config.loss
    if not 0.0 <= loss.icm_warmup <= 1.0:
        raise ConfigError(f"config key 'loss.icm_warmup' is a fraction of train.steps in [0, 1], got {loss.icm_warmup}")
    return ICMCriterion(loss_weights(config), fuzziness=loss.fuzziness,
                        icm_warmup_steps=round(loss.icm_warmup * config.train.steps),
                        icm_reduction=loss.icm_reduction)


def build_datasets(config: Config):
    """(training set, validation set) for config.data at the model's input size.

    Synthetic scenes without a root are generated in memory from ``train_seed`` / ``val_seed``.
    """
    from training.data import SyntheticRoadScenes, build_dataset

    data, size = config.data, tuple(config.model.img_size)
    if data.dataset == "synthetic" and data.root is None:
        train = SyntheticRoadScenes(data.train_length, size=size, seed=data.train_seed, augment=data.augment)
        val = SyntheticRoadScenes(data.val_length, size=size, seed=data.val_seed, augment=False)
        return train, val
    return (
        build_dataset(data.dataset, data.root, data.train_split, data.augment, size),
        build_dataset(data.dataset, data.root, data.val_split, False, size),
    )
