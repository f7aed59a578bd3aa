"""Every training/evaluation setting in one place: pydantic models with commented defaults and their ranges.

A run's config is built in three layers, later ones winning:
    the defaults below  <-  one YAML file per recipe (training/configs/NAME.yaml)  <-  key=value overrides
e.g. ``python training/train.py --config training/configs/X.yaml train.steps=200 model.update=parallel``.
The result is validated by pydantic (types, ranges, choices) before any work starts; an unknown key or a bad
value is a ConfigError whose one line names the key, the value and what is allowed. Classes elsewhere take numbers and
modules; ``build_model`` and ``build_criterion`` at the bottom are the only places that read a Config.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

DATASETS = ("kitti_eigen", "cityscapes_dvps", "semkitti_dvps", "synthetic")
EVAL_CROPS = ("none", "garg")
UPDATE_MODES = ("sequential", "parallel")  # same as training.model.UPDATE_MODES, kept import-free
ICM_REDUCTIONS = ("sum", "mean")  # same as training.losses.matcher.REDUCTIONS

PositiveInt = Annotated[int, Field(ge=1)]
Size = Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]  # [H, W]


def _exceeds_min_depth(cls, max_depth: float, info: ValidationInfo) -> float:
    """max_depth is validated after min_depth (field order) and must exceed it."""
    min_depth = info.data.get("min_depth")
    if min_depth is not None and max_depth <= min_depth:
        raise ValueError(f"must exceed min_depth ({min_depth})")
    return max_depth


class Section(BaseModel):
    """Validation for every section: unknown keys are errors, assignments are checked, numbers may name strings."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, coerce_numbers_to_str=True)


class ModelConfig(Section):
    """Keyword arguments of ICMDepthNet (saved as config["model"]; training/export.py rebuilds from it)."""

    encoder: str = "resnet18"  # timm name; the paper uses swin_large_patch4_window7_224, its ablation resnet50
    img_size: Size = [192, 640]  # [H, W], multiples of 32 (the encoder's stride); also the data size
    num_clusters: PositiveInt = 32  # N (paper II-B)
    dim: PositiveInt = 256  # D, channels of F1..F3 and of the clusters
    update: Literal[UPDATE_MODES] = "sequential"  # "sequential" (paper, methods II/III) or "parallel" (method I)
    iterations: PositiveInt = 2  # cluster-update passes per scale, shared weights (iDisc)
    min_depth: float = Field(1e-3, gt=0)  # metres; predictions are clamped to [min_depth, max_depth] at evaluation
    max_depth: float = Field(80.0, gt=0)
    init_depth: float = Field(10.0, gt=0)  # the depth head starts here: a plausible road-scene distance

    @field_validator("img_size")
    @classmethod
    def _multiple_of_32(cls, size: list[int]) -> list[int]:
        if any(side % 32 for side in size):
            raise ValueError("both sides must be multiples of 32 (the encoder's output stride)")
        return size

    _max_exceeds_min = field_validator("max_depth")(_exceeds_min_depth)


class DataConfig(Section):
    dataset: Literal[DATASETS] = "synthetic"
    root: Optional[str] = None  # dataset folder; None with "synthetic" = scenes generated in memory
    train_split: str = "train"
    val_split: str = "val"
    augment: bool = True  # training split only (iDisc's augmentation, docs/data.md)
    # Loader worker processes; -1 = sized for the device (training/engine.py loader_settings): up to 8 on
    # a GPU, whose steps outrun one process rendering scenes, up to 2 on the CPU; never more than the cores.
    num_workers: int = Field(-1, ge=-1, le=64)
    pin_memory: bool = True  # page-locked batches on CUDA (asynchronous copies); ignored on the CPU
    prefetch_factor: int = Field(2, ge=1, le=16)  # batches each worker prepares ahead (with num_workers > 0)
    # Only for in-memory synthetic scenes (root None): how many, and from which seeds. The held-out set
    # uses a seed far from the training seed so no scene is shared.
    train_length: PositiveInt = 2000
    train_seed: int = Field(0, ge=0)
    val_length: PositiveInt = 200
    val_seed: int = Field(1_000_000, ge=0)


class LossConfig(Section):
    """Weights of the named terms (paper eq. 7: all 1). Method I/II of the ablation set the ICM terms to 0."""

    silog: float = Field(1.0, ge=0)
    icm_1: float = Field(1.0, ge=0)  # on A1 at F1 (1/16 of the input)
    icm_2: float = Field(1.0, ge=0)  # on A1 at F2 (1/8)
    icm_3: float = Field(1.0, ge=0)  # on A1 at F3 (1/4)
    fuzziness: float = Field(2.0, gt=1)  # Fuzzy C-means m (paper eq. 4); m = 1 divides by zero
    # Two deviations from the paper (issue 15), both off by default:
    # the ICM weights ramp linearly 0 -> 1 over this fraction of train.steps (0 = none, the paper) ...
    icm_warmup: float = Field(0.0, ge=0, le=1)
    # ... and each ICM cost sums (the paper's eq. 5) or averages ("mean") over its scale's pixels.
    icm_reduction: Literal[ICM_REDUCTIONS] = "sum"


class OptimConfig(Section):
    """iDisc's recipe (SysCV/idisc configs; docs/training.md)."""

    lr: float = Field(2e-4, gt=0)  # neck, clusters, head
    backbone_lr: float = Field(2e-5, ge=0)  # the (pretrained) encoder moves 10x slower
    weight_decay: float = Field(0.05, ge=0)
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)] = [0.9, 0.999]
    pct_start: float = Field(0.3, gt=0, lt=1)  # OneCycle: warm up over the first 30% of the steps
    div_factor: float = Field(1.0, gt=0)  # OneCycle starts at lr / div_factor (iDisc: no warm-up ramp in lr)
    final_div_factor: float = Field(10.0, gt=0)  # ... and ends at lr / (div_factor * final_div_factor)
    grad_clip: float = Field(1.0, ge=0)  # max global L2 norm of the gradient; 0 = off


class TrainConfig(Section):
    steps: PositiveInt = 40_000  # optimiser steps (not micro-batches)
    batch_size: PositiveInt = 8  # per process and micro-batch
    accumulate: PositiveInt = 2  # micro-batches per optimiser step (iDisc: 8 x 2)
    seed: int = Field(0, ge=0)
    amp: bool = True  # mixed precision (bf16 on compute capability >= 8.0, else fp16 + loss scaling); GPU only
    # cuDNN picks the fastest convolution algorithms for the first batch of each size and keeps them:
    # training images all have model.img_size, so it tunes once. CUDA only.
    cudnn_benchmark: bool = True
    encoder_weights: Optional[str] = None  # local ImageNet weights for the encoder; nothing is downloaded
    output_dir: Optional[str] = None  # None = outputs/<config name>
    log_every: PositiveInt = 20  # steps between TensorBoard scalars
    image_every: int = Field(500, ge=0)  # steps between TensorBoard pictures; 0 = none
    eval_every: PositiveInt = 2000  # steps between evaluations (and best-checkpoint updates)
    save_every: PositiveInt = 1000  # steps between last.pt writes (also written at eval and at the end)
    max_nonfinite: PositiveInt = 5  # this many non-finite losses in a row stop the run
    eval_max_images: int = Field(0, ge=0)  # 0 = the whole validation split
    # At each log step, also the L2 norm of every loss term's gradient at the neck features F1..F3, which
    # SIlog and the ICM terms all act through (one extra partial backward pass per term).
    log_feature_gradients: bool = True


class EvalConfig(Section):
    """Dataset-specific evaluation region (docs/data.md, "Evaluation")."""

    min_depth: float = Field(1e-3, gt=0)  # GT outside (min_depth, max_depth) is not evaluated
    max_depth: float = Field(80.0, gt=0)
    crop: Literal[EVAL_CROPS] = "none"  # "garg" for KITTI Eigen
    # Size of the image the crop fractions refer to, when the evaluated image is a bottom-centre crop of
    # it (KITTI's KB crop of 375 x 1242); None = the evaluated image itself.
    full_size: Optional[Size] = None
    batch_size: PositiveInt = 4

    _max_exceeds_min = field_validator("max_depth")(_exceeds_min_depth)


class Config(Section):
    name: str = "unnamed"  # the recipe; defaults to the YAML file's stem
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _no_ignored_synthetic_keys(self) -> Config:
        """The in-memory scene counts and seeds apply to data.dataset synthetic without a root only."""
        data = self.data
        if data.dataset == "synthetic" and data.root is None:
            return self
        defaults = DataConfig()
        for name in ("train_length", "train_seed", "val_length", "val_seed"):
            if getattr(data, name) != getattr(defaults, name):
                raise ValueError(f"data.{name}={getattr(data, name)} would be ignored: it applies to in-memory "
                                 f"synthetic scenes only (data.dataset synthetic, data.root null), not to "
                                 f"data.dataset {data.dataset} with data.root {data.root}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only (loadable with torch.load(weights_only=True))."""
        return self.model_dump()

    @property
    def output_dir(self) -> Path:
        return Path(self.train.output_dir or Path("outputs") / self.name)


class ConfigError(ValueError):
    """A config file or override that cannot be applied; the message says which key and what is allowed."""


def allowed_keys() -> list[str]:
    """Every settable dotted key, e.g. ['name', 'model.encoder', ...]."""
    keys = []
    for name, item in Config.model_fields.items():
        section = item.annotation
        if isinstance(section, type) and issubclass(section, Section):
            keys += [f"{name}.{leaf}" for leaf in section.model_fields]
        else:
            keys.append(name)
    return keys


def _check_key(key: str) -> None:
    if key not in allowed_keys():
        raise ConfigError(f"unknown config key {key!r}; allowed keys: {', '.join(allowed_keys())}")


def _explain(error: ValidationError) -> ConfigError:
    """pydantic's first error as one line that names the dotted key, the value and what is allowed."""
    detail = error.errors()[0]
    location = [str(part) for part in detail["loc"] if not isinstance(part, int)]
    key = ".".join(location)
    kind, value = detail["type"], detail.get("input")
    if kind == "extra_forbidden":
        return ConfigError(f"unknown config key {key!r}; allowed keys: {', '.join(allowed_keys())}")
    if kind == "literal_error":
        section, leaf = location[0], location[-1]
        allowed = list(get_args(Config.model_fields[section].annotation.model_fields[leaf].annotation))
        return ConfigError(f"config key {key!r} must be one of {allowed}, got {value!r}")
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return ConfigError(f"config key {key!r} expects int (a whole number), got {value!r}")
    if kind in ("float_parsing", "float_type"):
        return ConfigError(f"config key {key!r} expects float, got {value!r}")
    if kind in ("bool_parsing", "bool_type"):
        return ConfigError(f"config key {key!r} expects true or false, got {value!r}")
    if detail["loc"] and isinstance(detail["loc"][-1], int):
        key_text = f"{key!r} (item {detail['loc'][-1]})"
    else:
        key_text = repr(key)
    message = detail["msg"].removeprefix("Value error, ")
    if not key:  # a rule across sections: its message names the keys itself
        return ConfigError(message)
    message = message[:1].lower() + message[1:]
    shown = "" if kind.startswith("value_error") or isinstance(value, dict) else f", got {value!r}"
    return ConfigError(f"config key {key_text}: {message}{shown}")


def _merge(tree: dict, key: str, value: Any) -> None:
    """Put ``value`` at dotted ``key`` of the nested ``tree``."""
    *sections, leaf = key.split(".")
    for section in sections:
        tree = tree.setdefault(section, {})
    tree[leaf] = value


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + str(key)] = value
    return flat


def _validate(tree: dict) -> Config:
    for key in _flatten(tree):
        _check_key(key)
    try:
        return Config.model_validate(tree)
    except ValidationError as error:
        raise _explain(error) from None


def set_key(config: Config, key: str, value: Any) -> Config:
    """``config`` with dotted ``key`` (e.g. 'train.steps') set, after checking the key and the whole config."""
    _check_key(key)
    tree = config.to_dict()
    _merge(tree, key, value)
    return _validate(tree)


def parse_override(text: str) -> tuple[str, Any]:
    """'train.steps=200' -> ('train.steps', 200); the value is read as YAML ('[96,320]' is a list)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value (e.g. train.steps=200)")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: the value is not valid YAML") from None
    return key.strip(), value


def from_dict(tree: dict, name: str | None = None) -> Config:
    """A Config from a (possibly nested, possibly partial) dict, e.g. one saved in a checkpoint."""
    tree = dict(tree)
    if name is not None and "name" not in tree:
        tree["name"] = name
    return _validate(tree)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- YAML file ``path`` <- ``overrides`` ('key=value' strings), validated once at the end."""
    tree, name = {}, None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise ConfigError(f"config file {path} is not YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {path} must hold a mapping, got {type(tree).__name__}")
        name = path.stem
        try:
            from_dict(tree, name)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
        tree = {"name": name, **tree}
    for text in overrides:
        key, value = parse_override(text)
        _check_key(key)
        _merge(tree, key, value)
    return _validate(tree)


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
