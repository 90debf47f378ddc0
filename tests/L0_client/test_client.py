"""The Python client (blocking and asyncio, HTTP and gRPC) against the real server: files, folders,
globs and bytes in the order given; Ultralytics' detections; a bad file costs only its own result;
clear errors for no server, an unknown model and a missing file."""

import asyncio
import shutil

import pytest
from matching import Detections, MatchCounts, unpaired

from yolo_triton.client import AsyncDetector, Detector, ServerUnavailable, UnknownModel, detect
from yolo_triton.tritonserver import free_ports

MODEL = "yolov11_nano"


def _url(triton, protocol):
    return triton.http_url if protocol == "http" else triton.grpc_url


@pytest.fixture(scope="module")
def photo_folder(test_images, tmp_path_factory):
    """20 photos and one file that is not an image, in one folder."""
    folder = tmp_path_factory.mktemp("photos")
    for path in test_images[:20]:
        shutil.copy2(path, folder)
    (folder / "000000000100_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return folder


def test_folder_glob_file_and_bytes_in_order_with_ultralytics_detections(
    triton, protocol, photo_folder, test_images, reference
):
    photos = sorted(p for p in photo_folder.iterdir() if "broken" not in p.name)
    sources = [photo_folder, str(photo_folder / "00000000000*.jpg"), photos[0], photos[1].read_bytes()]
    results = detect(sources, model=MODEL, url=_url(triton, protocol), protocol=protocol, batch_size=4, concurrency=3)

    folder = sorted(photo_folder.iterdir())
    glob = sorted(photo_folder.glob("00000000000*.jpg"))
    assert [r.source for r in results] == [*map(str, folder), *map(str, glob), str(photos[0]), "<bytes 3>"]
    broken = results[[p.name for p in folder].index("000000000100_broken.jpg")]
    assert (
        not broken.ok and broken.error == "truncated JPEG (23 bytes): no end-of-image marker" and not broken.detections
    )

    expected = reference(MODEL, test_images[:20])
    by_name = {p.name: p for p in test_images[:20]}
    counts = MatchCounts()
    for path, result in zip([*folder, *glob, photos[0], photos[1]], results):
        if result.ok:
            counts.add(path.name, expected[by_name[path.name]], Detections.from_client(result.detections))
    assert counts.reference > 50 and counts.matched_fraction >= 0.99 and counts.extra_fraction <= 0.01, str(counts)
    assert all(d.class_name and len(d.box) == 4 for r in results for d in r.detections)


def test_asyncio_client_gives_the_blocking_clients_results(triton, protocol, photo_folder):
    url = _url(triton, protocol)

    async def run():
        async with AsyncDetector(MODEL, url, protocol, batch_size=3, concurrency=4) as detector:
            return await detector.detect(photo_folder)

    with Detector(MODEL, url, protocol) as detector:
        blocking = detector.detect(photo_folder)
    asynchronous = asyncio.run(run())
    # batched differently, so compared as sets of detections (matching.unpaired), not bit for bit
    assert [(r.source, r.error) for r in asynchronous] == [(r.source, r.error) for r in blocking]
    assert all(
        unpaired(Detections.from_client(a.detections), Detections.from_client(b.detections)) == 0
        for a, b in zip(asynchronous, blocking)
    )


def test_batch_size_is_capped_at_the_models_maximum(triton):
    with Detector("yolov11_medium", triton.grpc_url, batch_size=1000) as detector:
        assert detector.batch_size == 32


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_no_server_unknown_model_and_missing_file_are_clear_errors(triton, protocol, photo_folder):
    (port,) = free_ports(1)
    with pytest.raises(ServerUnavailable, match=f"no Triton server at 127.0.0.1:{port}"):
        detect(photo_folder, url=f"127.0.0.1:{port}", protocol=protocol)
    with pytest.raises(UnknownModel, match=r"'yolov99_giant' is not served .*served: .*yolov11_nano\b") as error:
        detect(photo_folder, model="yolov99_giant", url=_url(triton, protocol), protocol=protocol)
    assert "_detector" not in str(error.value) and "preprocess" not in str(error.value)  # ensembles only
    with pytest.raises(FileNotFoundError, match="no image file, folder or glob match: .*nowhere"):
        detect([photo_folder / "nowhere.jpg"], url=_url(triton, protocol), protocol=protocol)
