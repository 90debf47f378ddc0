# The serving image: Triton of the pinned NGC release (NGC_RELEASE in .env) with what the
# Python-backend models need, and this project's package (contract, preprocessing, models).
ARG NGC_RELEASE
FROM nvcr.io/nvidia/tritonserver:${NGC_RELEASE}-py3
COPY docker/requirements-triton.txt /tmp/requirements-triton.txt
RUN python3 -m pip install --no-cache-dir -r /tmp/requirements-triton.txt
COPY pyproject.toml README.md /opt/yolo-triton/
COPY yolo_triton /opt/yolo-triton/yolo_triton
RUN python3 -m pip install --no-cache-dir --no-deps /opt/yolo-triton
