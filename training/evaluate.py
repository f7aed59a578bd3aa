#!/usr/bin/env python
"""Evaluate a checkpoint on a validation split; writes JSON and a Markdown table.

    python training/evaluate.py --checkpoint outputs/X/best.pt [--config training/configs/X.yaml] \
        [--output outputs/X/eval] [key=value ...]

The network is rebuilt from the checkpoint's own config["model"]; data and evaluation settings come from
--config (default: the checkpoint's config) and the overrides. The crop and depth caps are eval.* (KITTI:
eval.crop=garg, 1e-3 to 80 m, predictions clamped).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `training.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import (
    Config,
    ConfigError,
    build_datasets,
    build_model,
    format_config,
    from_dict,
    load_config,
    parse_override,
    set_key,
)
from training.metrics import EXTRA_NAMES, METRIC_NAMES

# Columns of the Markdown table, with the direction that is better.
TABLE_COLUMNS = [(name, "lower" if name in ("abs_rel", "sq_rel", "rmse", "rmse_log", "silog", "log10") else "higher")
                 for name in METRIC_NAMES + EXTRA_NAMES]


def markdown_table(rows: dict[str, dict[str, float]]) -> str:
    """{row label: metrics} -> a Markdown table with one column per metric (missing = '-')."""
    names = [name for name, _ in TABLE_COLUMNS if any(name in m for m in rows.values())]
    header = "| run | " + " | ".join(names) + " |"
    rule = "|---|" + "|".join("---:" for _ in names) + "|"
    lines = [header, rule]
    for label, metrics in rows.items():
        cells = [f"{metrics[name]:.4f}" if name in metrics else "-" for name in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(stem: str | Path, config: Config, metrics: dict[str, float], extra: dict) -> None:
    """stem.json (config, metrics, extra) and stem.md (a table and the resolved config)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    report = {"name": config.name, "metrics": metrics, **extra, "config": config.to_dict()}
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    text = [f"# Evaluation: {config.name}", ""]
    text += [f"- {key}: {value}" for key, value in extra.items()]
    text += ["", markdown_table({config.name: metrics}), "", "Resolved config:", "", "```yaml",
             format_config(config), "```", ""]
    stem.with_suffix(".md").write_text("\n".join(text))


def run(checkpoint: str | Path, config_path: str | None, overrides: list[str], output: str | Path | None,
        datasets=None) -> dict[str, float]:
    import torch

    from training import distributed
    from training.checkpoint import load_checkpoint
    from training.engine import evaluate, evaluation_loader, loader_settings

    context = distributed.setup()
    state = load_checkpoint(checkpoint, map_location=context.device)
    saved = from_dict(state["config"])
    config = load_config(config_path, overrides) if config_path else from_dict(state["config"])
    if config_path is None:
        for text in overrides:
            config = set_key(config, *parse_override(text))
    if config.to_dict()["model"] != saved.to_dict()["model"]:
        print(f"note: the network is rebuilt from the checkpoint's model settings {saved.to_dict()['model']}",
              file=sys.stderr)
        config.model = saved.model
    model = build_model(config, pretrained=False).to(context.device)
    model.load_state_dict(state["model"])
    _, val_set = datasets if datasets is not None else build_datasets(config)
    loading = loader_settings(config.data.num_workers, config.data.pin_memory, config.data.prefetch_factor,
                              context.device)
    loader = evaluation_loader(val_set, config.eval.batch_size, loading, context, config.train.eval_max_images)
    full_size = tuple(config.eval.full_size) if config.eval.full_size else None
    with torch.no_grad():
        metrics = evaluate(model, loader, context, config.eval.min_depth, config.eval.max_depth, config.eval.crop,
                           full_size, config.train.amp)
    if context.is_main:
        stem = Path(output) if output else Path(checkpoint).with_suffix("").parent / f"eval_{Path(checkpoint).stem}"
        write_report(stem / "metrics" if output else stem, config, metrics,
                     {"checkpoint": str(checkpoint), "step": state["step"]})
        print(markdown_table({config.name: metrics}))
    return metrics


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--config", default=None, help="data/eval settings (default: the checkpoint's)")
    parser.add_argument("--output", default=None, help="folder for metrics.json / metrics.md")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. eval.crop=garg")
    args = parser.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no such file")
    if args.output is not None and Path(args.output).exists() and not Path(args.output).is_dir():
        parser.error(f"--output {args.output}: exists and is not a folder (metrics.json and metrics.md go there)")
    for text in args.overrides:
        if text.split("=", 1)[0].strip().startswith("model."):
            parser.error(f"{text} would be ignored: the network is rebuilt from the checkpoint's own model settings")
    try:
        if args.config:  # the config run() builds: keys, types, ranges checked before the checkpoint is read
            load_config(args.config, args.overrides)  # (without --config they apply to the checkpoint's config)
        return run(args.checkpoint, args.config, args.overrides, args.output)
    except (ValueError, FileNotFoundError) as error:  # ConfigError is a ValueError
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
