"""Export a trained ICM checkpoint to ONNX (+ fp16 / INT8 Q/DQ variants) and to a TensorRT 10.3-11.x engine.

    python training/export.py --checkpoint runs/x/best.pt --out model.onnx [--height H --width W]
        [--dynamic-batch] [--fp16-out model.fp16.onnx] [--int8-out model.int8.onnx [--calib DIR]]
        [--engine model.engine --precision fp32|fp16|int8 [--calib DIR] [--max-batch 4]]
    python training/export.py --onnx model.onnx --engine model.engine --precision fp16

Engines are strongly typed: an fp16 or int8 engine is built from the ONNX variant of that precision,
written beside the fp32 file as model.fp16.onnx / model.int8.onnx (INT8: symmetric Q/DQ calibrated on
--calib DIR images, or on rendered synthetic scenes without it) unless it exists already. Every ONNX
file is checked against TensorRT's operator support (and symmetric Q/DQ) and, for the fp32 graph,
against PyTorch in ONNX Runtime on a rendered synthetic scene, and carries the self-test reference
(icm_depth_ros/inference/self_test.py). Every engine built is opened through the node's backend and
self-tested against that reference (exit 1 when it fails: the engine computes something else than the
fp32 model). An engine request fails at once, before any export, when TensorRT or a GPU is missing.
Details: docs/export.md. Importable as ``training.export``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the repository's packages, not training/'s files
    _root = Path(__file__).resolve().parents[1]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(_root))

from training.exporting.tensorrt_build import DEFAULT_WORKSPACE_GIB, TensorRTUnavailable, require_tensorrt  # noqa: E402

PARITY_TOLERANCE = 1e-3  # max relative depth error of ONNX Runtime against PyTorch (fp32)
DEFAULT_INT8_SCENES = 16  # rendered scenes to calibrate INT8 on without --calib


def __getattr__(name: str):
    """``from training.export import export_onnx`` without importing PyTorch for the CLI's fast checks."""
    from training.exporting import onnx_export  # noqa: PLC0415

    if name in ("export_onnx", "load_model_from_checkpoint", "read_model_info", "ExportGraph"):
        return getattr(onnx_export, name)
    raise AttributeError(f"module 'training.export' has no attribute {name!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="training checkpoint (.pt) to export")
    source.add_argument("--onnx", type=Path, help="existing ONNX file: only build the engine from it")
    parser.add_argument("--out", type=Path, help="ONNX file to write (with --checkpoint)")
    parser.add_argument("--height", type=int, help="input height (default: the checkpoint's img_size)")
    parser.add_argument("--width", type=int, help="input width (default: the checkpoint's img_size)")
    parser.add_argument("--dynamic-batch", action="store_true", help="batch dimension dynamic (several cameras)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--fp16-out", type=Path, help="also write a float16 ONNX variant (I/O stay float32)")
    parser.add_argument("--int8-out", type=Path, help="also write the INT8 symmetric Q/DQ variant (ONNX Runtime and TensorRT)")
    parser.add_argument("--int8-scenes", type=int, default=None,
                        help=f"synthetic train scenes to calibrate on without --calib (default {DEFAULT_INT8_SCENES})")
    parser.add_argument("--engine", type=Path, help="TensorRT engine to build (needs TensorRT 10.3+ or 11.x and a GPU)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                        help="the engine's precision (default fp16; with --engine only)")
    parser.add_argument("--calib", type=Path, help="directory of dataset images for INT8 calibration (default: synthetic scenes)")
    parser.add_argument("--calib-images", type=int, default=64, help="at most this many calibration images")
    parser.add_argument("--workspace-gib", type=float, default=DEFAULT_WORKSPACE_GIB, help="TensorRT workspace limit")
    parser.add_argument("--timing-cache", type=Path, help="timing cache file (default: beside the engine, one per TensorRT version and GPU)")
    parser.add_argument("--max-batch", type=int, default=1,
                        help="largest batch of a dynamic-batch engine: the number of cameras one node serves")
    parser.add_argument("--skip-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    check_combination(parser, args)
    args.int8_scenes = DEFAULT_INT8_SCENES if args.int8_scenes is None else args.int8_scenes
    args.precision = "fp16" if args.precision is None else args.precision
    return args


def check_combination(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse, before any work, values out of range, inputs that are not there, outputs that would overwrite
    an input or each other, and options the combination given would ignore (argparse's error: exit code 2)."""
    if args.checkpoint is not None and args.out is None:
        parser.error("--checkpoint needs --out model.onnx")
    if args.onnx is not None and args.engine is None:
        parser.error("--onnx only builds an engine: add --engine model.engine")
    if args.calib is not None and not args.calib.is_dir():
        parser.error(f"--calib {args.calib}: not a directory")
    if (args.height is None) != (args.width is None):
        parser.error("give both --height and --width, or neither")
    if args.max_batch < 1:
        parser.error(f"--max-batch {args.max_batch}: must be >= 1")
    if args.checkpoint is not None and args.max_batch > 1 and not args.dynamic_batch:
        parser.error(f"--max-batch {args.max_batch} needs --dynamic-batch: an ONNX model with a fixed batch of 1 "
                     "gives an engine of batch 1")
    source = args.checkpoint if args.checkpoint is not None else args.onnx
    if not source.is_file():
        parser.error(f"{'--checkpoint' if args.checkpoint is not None else '--onnx'} {source}: no such file")
    for option, value in (("--height", args.height), ("--width", args.width)):
        if value is not None and (value < 32 or value % 32):
            parser.error(f"{option} {value}: must be a positive multiple of 32 (the encoder's output stride)")
    for option, value in (("--calib-images", args.calib_images), ("--int8-scenes", args.int8_scenes)):
        if value is not None and value < 1:
            parser.error(f"{option} {value}: must be >= 1")
    if args.workspace_gib <= 0:
        parser.error(f"--workspace-gib {args.workspace_gib}: must be > 0")
    outputs = [(option, path) for option, path in (("--out", args.out), ("--fp16-out", args.fp16_out),
                                                   ("--int8-out", args.int8_out), ("--engine", args.engine),
                                                   ("--timing-cache", args.timing_cache)) if path is not None]
    inputs = [(option, path) for option, path in (("--checkpoint", args.checkpoint), ("--onnx", args.onnx),
                                                  ("--calib", args.calib)) if path is not None]
    for index, (option, path) in enumerate(outputs):
        for other, other_path in inputs + outputs[:index]:
            if path.resolve() == other_path.resolve():
                parser.error(f"{option} {path} is also {other}: it would overwrite it; give another file")
    int8 = args.int8_out is not None or (args.engine is not None and args.precision == "int8")
    engine_only = {"--precision": args.precision, "--timing-cache": args.timing_cache}
    if args.engine is None:
        engine_only["--max-batch"] = args.max_batch if args.max_batch != 1 else None
        engine_only["--workspace-gib"] = args.workspace_gib if args.workspace_gib != DEFAULT_WORKSPACE_GIB else None
    ignored = [(option, value, "it applies to --engine only") for option, value in engine_only.items()
               if value is not None and args.engine is None]
    if not int8:
        ignored += [(option, value, "it applies to an INT8 output (--int8-out, or --engine --precision int8) only")
                    for option, value in (("--calib", args.calib), ("--int8-scenes", args.int8_scenes))
                    if value is not None]
    if args.calib is not None and args.int8_scenes is not None:
        ignored.append(("--int8-scenes", args.int8_scenes, "--calib DIR is calibrated on instead"))
    if args.onnx is not None:
        ignored += [(option, value, "it applies to --checkpoint (an export) only")
                    for option, value in (("--dynamic-batch", args.dynamic_batch or None),
                                          ("--skip-parity", args.skip_parity or None), ("--out", args.out),
                                          ("--height", args.height), ("--width", args.width))
                    if value is not None]
    if ignored:
        option, value, why = ignored[0]
        shown = "" if value is True else f" {value}"
        parser.error(f"{option}{shown} would be ignored: {why}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.engine is not None:
        try:
            require_tensorrt()  # before minutes of export work, not after
        except TensorRTUnavailable as error:
            print(f"error: --engine {args.engine}: {error}", file=sys.stderr)
            return 2
    try:
        onnx_path = args.onnx if args.onnx is not None else export_checkpoint(args)
        if onnx_path is None:
            return 1
        if args.engine is not None:
            return build(args, onnx_path)
    except (FileNotFoundError, ValueError) as error:  # the input is not what it should be, already worded
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # a failed build, already worded
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def export_checkpoint(args: argparse.Namespace) -> Path | None:
    """--checkpoint: export, check for TensorRT, compare with PyTorch, write variants. None on a failed check."""
    from training.exporting import onnx_export  # noqa: PLC0415
    from training.exporting.operator_check import check_tensorrt_compatibility  # noqa: PLC0415

    model, config = onnx_export.load_model_from_checkpoint(args.checkpoint)
    height, width = (args.height, args.width) if args.height else tuple(config["model"]["img_size"])
    info = onnx_export.export_onnx(
        model, args.out, height, width,
        config_name=str(config.get("name", "unknown")),
        checkpoint_sha256=onnx_export.checkpoint_sha256(args.checkpoint),
        dynamic_batch=args.dynamic_batch, opset=args.opset,
    )
    print(f"wrote {args.out}: {info}")
    if not report_tensorrt_check(args.out, check_tensorrt_compatibility(args.out)):
        return None
    if not args.skip_parity:
        image = synthetic_images(1, height, width, split="val")[0][None]  # [1, 3, H, W]
        errors = onnx_export.parity(model, onnx_export.onnxruntime_session(args.out), image)
        print(f"parity ONNX Runtime vs PyTorch on a rendered scene: {errors}")
        if errors["max_rel_depth_error"] > PARITY_TOLERANCE:
            print(f"error: max relative depth error above {PARITY_TOLERANCE}", file=sys.stderr)
            return None
    for precision, out in (("fp16", args.fp16_out), ("int8", args.int8_out)):
        if out is not None and write_variant(args, args.out, precision, out) is None:
            return None
    return args.out


def write_variant(args: argparse.Namespace, fp32_path: Path, precision: str, out: Path) -> Path | None:
    """Write the fp16 or INT8 Q/DQ variant of ``fp32_path`` to ``out`` and check it for TensorRT; None when it fails."""
    from training.exporting import variants  # noqa: PLC0415
    from training.exporting.onnx_export import read_model_info  # noqa: PLC0415
    from training.exporting.operator_check import check_tensorrt_compatibility  # noqa: PLC0415

    if precision == "fp16":
        variants.write_float16(fp32_path, out)
        print(f"wrote {out} (float16 weights and compute, float32 I/O)")
    else:
        info = read_model_info(fp32_path)
        height, width = info.input_height, info.input_width
        if args.calib:
            images = load_images(args.calib, height, width, args.calib_images)
        else:
            print(f"warning: no --calib DIR: calibrating INT8 on {args.int8_scenes} synthetic scenes; use real "
                  "frames of the vehicle's camera for a real model", file=sys.stderr)
            images = synthetic_images(args.int8_scenes, height, width, split="train")
        variants.write_int8(fp32_path, out, images)
        print(f"wrote {out} (INT8 symmetric Q/DQ, per-channel weights, calibrated on {len(images)} images; "
              "ONNX Runtime and TensorRT)")
    return out if report_tensorrt_check(out, check_tensorrt_compatibility(out)) else None


def report_tensorrt_check(path: Path, report) -> bool:
    for warning in report.warnings:
        print(f"warning: {path}: {warning}", file=sys.stderr)
    for error in report.errors:
        print(f"error: {path}: TensorRT would reject: {error}", file=sys.stderr)
    if report.ok:
        print(f"{path}: TensorRT operator and Q/DQ check passed ({sum(report.op_counts.values())} nodes)")
    return report.ok


def build(args: argparse.Namespace, onnx_path: Path) -> int:
    """Build --engine from the ONNX file of --precision: ``onnx_path`` when it carries it, else its variant
    beside it (model.fp16.onnx / model.int8.onnx), written first when missing."""
    from icm_depth_ros.inference import onnx_precision  # noqa: PLC0415
    from training.exporting import tensorrt_build  # noqa: PLC0415

    source = Path(onnx_path)
    if args.max_batch > 1 and onnx_precision.onnx_metadata(source).get("icm.dynamic_batch") != "true":
        print(f"error: --max-batch {args.max_batch}: {source} has a fixed batch of 1; export it with --dynamic-batch "
              "to build an engine that takes several cameras' frames in one call", file=sys.stderr)
        return 1
    carried = onnx_precision.file_precision(source)
    if carried not in (args.precision, "fp32"):
        print(f"error: {source} is the {carried} variant; give the fp32 export to build a {args.precision} engine",
              file=sys.stderr)
        return 1
    if carried != args.precision:
        given = {"fp16": args.fp16_out, "int8": args.int8_out}.get(args.precision)
        source = Path(given) if given else onnx_precision.variant_path(onnx_path, args.precision)
        if source.is_file():
            print(f"building from the existing {args.precision} variant {source}")
        elif write_variant(args, Path(onnx_path), args.precision, source) is None:
            return 1
    fingerprint = tensorrt_build.build_engine(
        source, args.engine, args.precision, workspace_gib=args.workspace_gib,
        timing_cache_path=args.timing_cache, max_batch=args.max_batch,
    )
    print(f"wrote {args.engine} (from {source}) and its fingerprint: {shown_fingerprint(fingerprint)}")
    return engine_self_test(args.engine, source, args.precision)


def shown_fingerprint(fingerprint: dict) -> dict:
    """The fingerprint as printed: the self-test reference (tens of KB) by its size only."""
    from icm_depth_ros.inference.contract import META_SELF_TEST  # noqa: PLC0415

    metadata = dict(fingerprint.get("model_metadata") or {})
    if META_SELF_TEST in metadata:
        metadata[META_SELF_TEST] = f"<{len(metadata[META_SELF_TEST])} characters>"
    return {**fingerprint, "model_metadata": metadata} if "model_metadata" in fingerprint else fingerprint


class _Printer:
    """The self-test's log lines on the command's output: info on stdout, warnings on stderr."""

    @staticmethod
    def info(text: str) -> None:
        print(text)

    @staticmethod
    def warning(text: str) -> None:
        print(f"warning: {text}", file=sys.stderr)


def engine_self_test(engine: Path, source: Path, precision: str) -> int:
    """Open the engine just built through the node's backend and run the model's self-test on it: 0 passed (or
    nothing to compare: a model without a reference, warned about), 1 failed (the engine stays where it is)."""
    from icm_depth_ros.inference import ModelLoadError, open_backend  # noqa: PLC0415
    from icm_depth_ros.inference.self_test import SelfTestFailed, check_backend  # noqa: PLC0415

    try:
        backend = open_backend("tensorrt", str(engine), onnx_path=str(source), precision=precision)
        check_backend(backend, "refuse", _Printer(), model=str(engine), precision=precision)
    except SelfTestFailed as error:
        print(error, file=sys.stderr)
        print(f"error: {engine} does not compute what the fp32 model does on the self-test input; it was kept for "
              "inspection, but a node with self_test: refuse (the default) will not run it", file=sys.stderr)
        return 1
    except ModelLoadError as error:
        print(f"error: {engine} was built but its self-test could not run: {error}", file=sys.stderr)
        return 1
    return 0


def load_images(directory: Path, height: int, width: int, limit: int):
    from training.exporting.tensorrt_build import load_calibration_images  # noqa: PLC0415

    return load_calibration_images(directory, height, width, limit)


def synthetic_images(count: int, height: int, width: int, split: str):
    """``count`` rendered road scenes of ``split`` as float32 [3, H, W] in [0, 1] (training.data)."""
    from training.data import SYNTHETIC_SPLIT_SEEDS, SyntheticRoadScenes  # noqa: PLC0415

    scenes = SyntheticRoadScenes(count, size=(height, width), seed=SYNTHETIC_SPLIT_SEEDS[split])
    return [scenes[index]["image"].numpy() for index in range(count)]


if __name__ == "__main__":
    sys.exit(main())
