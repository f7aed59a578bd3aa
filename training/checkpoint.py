"""Checkpoints: written atomically, read without unpickling arbitrary objects.

Format (training/export.py reads it too), a ``torch.save`` dict of plain containers and tensors:
    "model":     model state_dict (no "module." prefix, also under DistributedDataParallel)
    "config":    the resolved config as a plain dict (Config.to_dict()); config["model"] = ICMDepthNet
                 kwargs, config["name"] = the recipe
    "optimizer": optimiser state_dict            "scheduler": LR scheduler state_dict
    "step":      optimiser steps done            "metrics":   {name: float}, the last evaluation
    "best":      {"abs_rel": float, "step": int}, the best evaluation so far (for --resume)
    "nonfinite": int, steps skipped for a non-finite loss so far
    "scaler":    GradScaler state_dict ({"scale", "growth_factor", "backoff_factor", "growth_interval",
                 "_growth_tracker"}) of an fp16 run; {} when no scaler ran (fp32, bf16, CPU)
    "rng":       {"torch": uint8 tensor, the CPU generator state;
                  "cuda": uint8 tensor, the generator state of the saving process's GPU (only when CUDA ran)}
Checkpoints written before "scaler" and "rng"["cuda"] existed load too: a missing entry restores nothing.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

LAST = "last.pt"
BEST = "best.pt"


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel (state_dict keys without "module.")."""
    return model.module if hasattr(model, "module") else model


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, flushed to disk,
    then renamed over ``path``. A kill at any point leaves either the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(state, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)  # atomic on POSIX within one file system
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


def read_checkpoint_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dict a checkpoint file holds (``weights_only=True``); FileNotFoundError or a ValueError that
    names the file when it is missing or is not a PyTorch checkpoint (a text file, a cut file, code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch says it many ways: UnpicklingError, KeyError, RuntimeError, EOFError
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{path} is not a training checkpoint (torch.load: {type(error).__name__}: "
                         f"{first_line[:120]})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a training checkpoint: it holds a {type(state).__name__}, not a dict")
    return state


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``: tensors and plain containers only, no code runs."""
    state = read_checkpoint_file(path, map_location)
    missing = [key for key in ("model", "config", "step") if key not in state]
    if missing:
        raise ValueError(f"{path} is not a training checkpoint: missing key(s) {missing}")
    return state


def random_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The "rng" entry: the CPU generator and, on a GPU, that device's generator (dropout, random init)."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_random_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Set the generators saved by random_state; a CUDA state is set only where CUDA runs now."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def training_state(model, optimizer, scheduler, step: int, config: dict, metrics: dict, best: dict,
                   nonfinite: int, scaler: torch.amp.GradScaler | None = None,
                   device: torch.device = torch.device("cpu")) -> dict[str, Any]:
    return {
        "model": unwrap(model).state_dict(),
        "config": config,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": int(step),
        "metrics": {name: float(value) for name, value in metrics.items()},
        "best": dict(best),
        "nonfinite": int(nonfinite),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "rng": random_state(device),
    }
