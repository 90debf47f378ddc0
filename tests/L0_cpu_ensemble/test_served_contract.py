"""The served metadata and config of every ensemble are the contract (HTTP and gRPC), and each
publishes its weights' class names."""

import json

import pytest
from conftest import ALL_SERVED, CUSTOM_MODEL


def _metadata(client, protocol, name):
    meta = client.get_model_metadata(name)
    if protocol == "grpc":
        from google.protobuf.json_format import MessageToDict

        meta = MessageToDict(meta, preserving_proto_field_name=True)
    return meta


def _config(client, protocol, name):
    config = client.get_model_config(name)
    if protocol == "grpc":
        from google.protobuf.json_format import MessageToDict

        config = MessageToDict(config.config, preserving_proto_field_name=True)
    return config


@pytest.mark.parametrize("name", ALL_SERVED)
def test_metadata_is_the_contract(client, protocol, name, served_models):
    v = served_models[name]
    meta = _metadata(client, protocol, name)
    as_list = lambda tensors: [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in tensors]
    assert as_list(meta["inputs"]) == [(s.name, s.datatype, [-1, *s.dims]) for s in v.inputs]
    assert as_list(meta["outputs"]) == [(s.name, s.datatype, [-1, *s.dims]) for s in v.outputs]


@pytest.mark.parametrize("name", ALL_SERVED)
def test_config_is_the_contract(client, protocol, name, served_models):
    v = served_models[name]
    config = _config(client, protocol, name)
    assert config["platform"] == "ensemble" and int(config["max_batch_size"]) == v.max_batch_size
    as_list = lambda tensors: [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in tensors]
    assert as_list(config["input"]) == [(s.name, s.data_type, list(s.dims)) for s in v.inputs]
    assert as_list(config["output"]) == [(s.name, s.data_type, list(s.dims)) for s in v.outputs]
    # one per input size and letterbox
    expected_preprocess = "preprocess" + ("" if v.imgsz == 640 else f"_{v.imgsz}") + ("_rect" if v.rect else "")
    assert [s["model_name"] for s in config["ensemble_scheduling"]["step"]] == [expected_preprocess, v.detector]


@pytest.mark.parametrize("name", ALL_SERVED)
def test_config_publishes_the_class_names_of_the_weights(client, protocol, name, served_models):
    from ultralytics import YOLO

    names = json.loads(_config(client, protocol, name)["parameters"]["class_names"]["string_value"])
    assert names == list(YOLO(served_models[name].weights).names.values())
    assert len(names) == (3 if name == CUSTOM_MODEL else 80)


def test_server_is_live_and_every_model_ready(client, served_models):
    assert client.is_server_live() and client.is_server_ready()
    for name in ALL_SERVED:
        assert client.is_model_ready(name) and client.is_model_ready(served_models[name].detector)
    for preprocess in ("preprocess", "preprocess_320", "preprocess_1280", "preprocess_rect"):
        assert client.is_model_ready(preprocess)
