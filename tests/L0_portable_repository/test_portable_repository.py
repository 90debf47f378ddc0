"""A written model repository is portable: copied elsewhere, with the original gone, it serves on a
stock Triton of the pinned release (the nvidia-pytriton wheel's) whose Python has this package; no
file in it names this checkout or the folder it was written to (model_repository/README.md)."""

import shutil

import numpy as np
import tritonclient.http as httpclient
from conftest import ultralytics_assets, weights_of

from yolo_triton.client.async_detector import class_names, image_input
from yolo_triton.contract import VARIANTS
from yolo_triton.repository import ROOT, write_repository
from yolo_triton.tritonserver import TritonServer, free_ports

MODEL = "yolov8_nano"


def test_a_copy_of_the_repository_serves_on_its_own(tmp_path):
    written = write_repository(tmp_path / "written", {MODEL: str(weights_of(MODEL))})
    portable = tmp_path / "elsewhere" / "model_repository"
    shutil.copytree(written, portable, symlinks=True)
    shutil.rmtree(written)

    files = sorted(portable.rglob("*"))
    assert not [p for p in files if p.is_symlink()]
    for path in (p for p in files if p.is_file()):
        data = path.read_bytes()
        assert str(ROOT).encode() not in data and str(written).encode() not in data, path

    v = VARIANTS[MODEL]
    server = TritonServer(portable, tmp_path / "build", *free_ports(3), log=tmp_path / "tritonserver.log")
    with server, httpclient.InferenceServerClient(server.http_url) as client:
        bus = (ultralytics_assets() / "bus.jpg").read_bytes()
        result = client.infer(MODEL, [image_input([bus], "http")])
        names = class_names(client.get_model_config(MODEL))

    for spec in v.outputs:
        assert result.get_output(spec.name)["datatype"] == spec.datatype
        array = result.as_numpy(spec.name)
        assert array.dtype == spec.numpy_dtype and array.shape == (1, *spec.dims), spec.name
    found = int(result.as_numpy("num_dets")[0, 0])
    classes, scores = result.as_numpy("det_classes")[0], result.as_numpy("det_scores")[0]
    assert 0 < found <= v.max_detections
    assert {"person", "bus"} <= {names[c] for c in classes[:found]}
    assert np.all(scores[:found] >= v.conf)
    assert np.all(classes[found:] == -1) and np.all(scores[found:] == 0)  # the contract's padding rows
