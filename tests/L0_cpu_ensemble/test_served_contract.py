"""The served metadata and config of every ensemble are the contract (HTTP and gRPC)."""

import pytest

from yolo_triton.contract import VARIANTS

from conftest import SERVED


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


@pytest.mark.parametrize("name", SERVED)
def test_metadata_is_the_contract(client, protocol, name):
    v = VARIANTS[name]
    meta = _metadata(client, protocol, name)
    as_list = lambda tensors: [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in tensors]
    assert as_list(meta["inputs"]) == [(s.name, s.datatype, [-1, *s.dims]) for s in v.inputs]
    assert as_list(meta["outputs"]) == [(s.name, s.datatype, [-1, *s.dims]) for s in v.outputs]


@pytest.mark.parametrize("name", SERVED)
def test_config_is_the_contract(client, protocol, name):
    v = VARIANTS[name]
    config = _config(client, protocol, name)
    assert config["platform"] == "ensemble" and int(config["max_batch_size"]) == v.max_batch_size
    as_list = lambda tensors: [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in tensors]
    assert as_list(config["input"]) == [(s.name, s.data_type, list(s.dims)) for s in v.inputs]
    assert as_list(config["output"]) == [(s.name, s.data_type, list(s.dims)) for s in v.outputs]
    assert [s["model_name"] for s in config["ensemble_scheduling"]["step"]] == ["preprocess", v.detector]


def test_server_is_live_and_every_model_ready(client):
    assert client.is_server_live() and client.is_server_ready()
    for name in SERVED:
        assert client.is_model_ready(name) and client.is_model_ready(VARIANTS[name].detector)
    assert client.is_model_ready("preprocess")
