"""From a trained network to what the vehicle runs, in the order of the steps:

    onnx_export.py     checkpoint -> fp32 ONNX graph with the model contract's metadata (export_onnx)
    variants.py        fp32 ONNX -> fp16 ONNX, INT8 Q/DQ ONNX (calibrated on images)
    operator_check.py  will TensorRT parse it? ops, types, shapes, symmetric Q/DQ (CPU only)
    tensorrt_build.py  calibration images, engine build through icm_depth_ros.inference.engine_builder,
                       run_engine for parity checks

training/export.py is the command that runs them.
"""
