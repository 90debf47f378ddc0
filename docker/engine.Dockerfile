# The engine builder: TensorRT of the same NGC release, Ultralytics for the ONNX export, and this
# project's package. Run it on the GPU that will serve: `docker compose run --rm engine`.
ARG NGC_RELEASE
FROM nvcr.io/nvidia/tensorrt:${NGC_RELEASE}-py3
# OpenCV (an Ultralytics dependency) needs these shared libraries
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
COPY docker/requirements-engine.txt /tmp/requirements-engine.txt
RUN python3 -m pip install --no-cache-dir -r /tmp/requirements-engine.txt
COPY pyproject.toml README.md /opt/yolo-triton/
COPY yolo_triton /opt/yolo-triton/yolo_triton
RUN python3 -m pip install --no-cache-dir --no-deps /opt/yolo-triton
ENV YOLO_CONFIG_DIR=/tmp/ultralytics
WORKDIR /work
