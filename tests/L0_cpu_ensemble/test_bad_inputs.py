"""Every kind of input a detection service meets, one named case each, all sent at once beside good
requests: each gets Ultralytics' own detections for that file, or a clear error naming the
problem; the good requests beside them are answered correctly; the server stays up."""

import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from matching import Detections, MatchCounts
from PIL import Image

from yolo_triton.client.async_detector import image_input, tritonclient_module
from yolo_triton.contract import MAX_IMAGE_BYTES, VARIANTS

MODEL = "yolov8_nano"  # the official weights: real detections on any photo


def _pil(photo, fmt, mode="RGB", **save) -> bytes:
    out = io.BytesIO()
    Image.open(photo).convert(mode).save(out, fmt, **save)
    return out.getvalue()


def _png_header(width, height) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


def _exif_rotated(photo) -> bytes:
    image = Image.open(photo)
    exif = image.getexif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=95)
    return out.getvalue()


def _corrupt_header(photo) -> bytes:
    data = bytearray(photo.read_bytes())
    data[2:64] = bytes(range(62))  # SOI kept, the segments after it garbage
    return bytes(data)


# name -> (make bytes from a photo, suffix for Ultralytics' copy or None, error expected or None)
CASES = {
    "empty bytes": (lambda p: b"", None, "empty input"),
    "random bytes": (lambda p: np.random.default_rng(5).bytes(30000), None, "cannot decode image"),
    "truncated JPEG": (lambda p: p.read_bytes()[:400], None, "truncated JPEG (400 bytes): no end-of-image marker"),
    "JPEG with a corrupt header": (_corrupt_header, None, "cannot decode"),
    "PNG": (lambda p: _pil(p, "PNG"), ".png", None),
    "WebP (lossless)": (lambda p: _pil(p, "WEBP", lossless=True), ".webp", None),
    "BMP": (lambda p: _pil(p, "BMP"), ".bmp", None),
    "GIF (not supported)": (lambda p: _pil(p, "GIF"), None, "cannot decode GIF image"),
    "grayscale JPEG": (lambda p: _pil(p, "JPEG", "L", quality=95), ".jpg", None),
    "CMYK JPEG": (lambda p: _pil(p, "JPEG", "CMYK", quality=95), ".jpg", None),
    "progressive JPEG": (lambda p: _pil(p, "JPEG", progressive=True, quality=95), ".jpg", None),
    "EXIF-rotated JPEG": (_exif_rotated, ".jpg", None),
    "1x1 image": (lambda p: cv2.imencode(".png", np.full((1, 1, 3), 200, np.uint8))[1].tobytes(), ".png", None),
    "10000x16 image": (
        lambda p: cv2.imencode(".jpg", cv2.resize(cv2.imread(str(p)), (10000, 16)))[1].tobytes(),
        ".jpg",
        None,
    ),
    "header claiming 60000x60000": (lambda p: _png_header(60000, 60000), None, "60000x60000 pixels, over the limit"),
    "payload over the size limit": (
        lambda p: b"\xff\xd8" + bytes(MAX_IMAGE_BYTES),
        None,
        f"over the limit of {MAX_IMAGE_BYTES}",
    ),
}


@pytest.fixture(scope="module")
def photo(test_images):
    return test_images[-2]  # bus.jpg


def test_bad_input_matrix(triton, client, protocol, photo, test_images, reference, tmp_path):
    url = triton.http_url if protocol == "http" else triton.grpc_url
    module = tritonclient_module(protocol)
    payloads = {name: make(photo) for name, (make, _, _) in CASES.items()}
    good = test_images[:8]

    def send(data: bytes):
        with module.InferenceServerClient(url) as c:
            try:
                result = c.infer(MODEL, [image_input([data], protocol)])
                return Detections.from_outputs(*(result.as_numpy(s.name)[0] for s in VARIANTS[MODEL].outputs))
            except module.InferenceServerException as e:
                return e

    with ThreadPoolExecutor(8) as pool:
        answers = dict(zip([*payloads, *good], pool.map(send, [*payloads.values(), *(p.read_bytes() for p in good)])))

    for path in good:  # the requests beside the bad ones
        one = MatchCounts()
        one.add(path.name, reference(MODEL, [path])[path], answers[path])
        assert one.matched == one.reference == one.ours, f"{path.name} beside bad input: {one}"
    for name, (_, suffix, error) in CASES.items():
        answer = answers[name]
        if error:
            assert isinstance(answer, module.InferenceServerException), f"{name}: answered {answer}"
            assert error in answer.message(), f"{name}: {answer.message()}"
            continue
        assert not isinstance(answer, Exception), f"{name}: {answer}"
        copy = tmp_path / f"{name.replace(' ', '_')}{suffix}"
        copy.write_bytes(payloads[name])
        one = MatchCounts()
        one.add(name, reference(MODEL, [copy])[copy], answer)
        assert one.matched == one.reference and one.ours == one.reference, f"{name}: {one}"
    assert client.is_server_live() and client.is_server_ready()


def test_malformed_requests_get_clear_errors(triton, client, protocol):
    """What Triton itself refuses before any model runs: wrong dtype, wrong shape, missing input."""
    module = tritonclient_module(protocol)
    wrong_dtype = module.InferInput("image", [1, 1], "INT32")
    wrong_dtype.set_data_from_numpy(np.zeros((1, 1), np.int32))
    wrong_shape = module.InferInput("image", [1, 2], "BYTES")
    wrong_shape.set_data_from_numpy(np.array([[b"a", b"b"]], dtype=object))
    for inputs, words in (([wrong_dtype], "data-type"), ([wrong_shape], "shape"), ([], "input")):
        with pytest.raises(module.InferenceServerException) as caught:
            client.infer(MODEL, inputs)
        assert words in caught.value.message().lower() or words.replace("-", "") in caught.value.message().lower(), (
            caught.value.message()
        )
    assert client.is_server_live() and client.is_server_ready()
