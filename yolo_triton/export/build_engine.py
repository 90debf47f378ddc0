"""Stage 2 of export: the detector's ONNX graph (EfficientNMS flavour) -> a raw TensorRT plan.

Runs in NVIDIA's TensorRT container of the pinned release (see .env), on the GPU that will serve
the plan: plans are specific to a GPU model and a TensorRT version. The plan is written raw, as
`builder.build_serialized_network` returns it: Triton's tensorrt_plan loads exactly that (the
metadata header Ultralytics puts in front of its .engine files is why those fail in Triton).

The network is strongly typed: every layer runs in the type the ONNX graph gives it, so an FP16
graph (create_onnx.py --precision fp16) builds an FP16 engine whose NMS and box mapping stay FP32,
and an FP32 graph an FP32 engine. No precision flags: TensorRT 10 refuses them on a strongly typed
network, and TensorRT 11 removes them.

    python -m yolo_triton.export.build_engine --onnx model.onnx --variant yolov11_nano -o model.plan \
        [--timing-cache cache.bin]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from yolo_triton.contract import STRIDE, VARIANTS, Variant

WORKSPACE_BYTES = 4 << 30


def optimisation_profile(variant: Variant) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """Input name -> (min, opt, max) shapes: batch 1, the largest preferred batch (what dynamic
    batching forms under load), and the variant's max batch size; a rect variant's images from
    STRIDE x STRIDE to imgsz x imgsz, tuned for the square."""
    opt = max(variant.preferred_batch_sizes)
    square = (variant.imgsz, variant.imgsz)

    def dims(spec, sides):
        return tuple(d if d > 0 else side for d, side in zip(spec.dims, (None, *sides)))

    return {
        s.name: ((1, *dims(s, (STRIDE, STRIDE))), (opt, *dims(s, square)), (variant.max_batch_size, *dims(s, square)))
        for s in variant.detector_inputs
    }


def build_engine(
    onnx_path: str | Path, plan_path: str | Path, variant: Variant, timing_cache: str | Path | None = None
) -> Path:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")  # registers EfficientNMS_TRT
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}:\n{errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    for name, (smallest, typical, largest) in optimisation_profile(variant).items():
        profile.set_shape(name, smallest, typical, largest)
    config.add_optimization_profile(profile)

    cache_file = Path(timing_cache) if timing_cache else None
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file and cache_file.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path}")
    plan_path = Path(plan_path)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(plan))
    if cache_file:
        cache_file.write_bytes(bytes(config.get_timing_cache().serialize()))
    return plan_path


def tensorrt_version() -> str:
    import tensorrt as trt

    return trt.__version__


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", required=True, help="graph of create_onnx.py --nms efficient_nms")
    parser.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    parser.add_argument("-o", "--output", required=True, help="where to write the plan (model.plan)")
    parser.add_argument("--timing-cache", help="read and updated, so later builds on this GPU are faster")
    args = parser.parse_args()
    print(build_engine(args.onnx, args.output, VARIANTS[args.variant], args.timing_cache))


if __name__ == "__main__":
    main()
