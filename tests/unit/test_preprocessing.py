"""The CPU letterbox is Ultralytics' LetterBox, pixel for pixel, and its parameters map boxes back
exactly as Ultralytics' scale_boxes does."""

import gc

import numpy as np
import pytest
from ultralytics.data.augment import LetterBox
from ultralytics.utils.ops import scale_boxes

from yolo_triton.preprocessing import CpuPreprocessor, ImageError, Letterbox, decode, letterbox_boxes, letterbox_into

IMGSZ = 640
ODD_SHAPES = [(1, 1), (1, 3000), (3000, 1), (16, 10000), (639, 641), (641, 639), (480, 640), (1080, 1920), (333, 777)]


def _ours(image: np.ndarray):
    out = np.empty((3, IMGSZ, IMGSZ), np.uint8)
    params = letterbox_into(out, image)
    return out, params


def _ultralytics(image: np.ndarray) -> np.ndarray:
    """Ultralytics' predict preprocessing for a fixed square input: LetterBox, BGR->RGB, HWC->CHW."""
    return LetterBox((IMGSZ, IMGSZ), auto=False)(image=image)[..., ::-1].transpose(2, 0, 1)


def test_letterbox_matches_ultralytics_on_real_images(test_images):
    for path in test_images:
        image = decode(path.read_bytes())
        ours, _ = _ours(image)
        np.testing.assert_array_equal(ours, _ultralytics(image), err_msg=str(path))


@pytest.mark.parametrize("shape", ODD_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_letterbox_matches_ultralytics_on_odd_shapes(shape):
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    ours, params = _ours(image)
    np.testing.assert_array_equal(ours, _ultralytics(image))
    # the parameters undo the letterbox as Ultralytics' scale_boxes does
    boxes = np.array([[0, 0, IMGSZ, IMGSZ], [100.5, 200.25, 300.75, 400.0]], np.float32)
    expected = scale_boxes((IMGSZ, IMGSZ), boxes.copy(), shape)
    pad, scale, size = params[:2], params[2:4], params[4:]
    mapped = np.clip((boxes - np.tile(pad, 2)) / np.tile(scale, 2), 0, np.tile(size, 2))
    np.testing.assert_allclose(mapped, expected, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("shape", ODD_SHAPES + [(500, 375), (427, 640), (720, 1280)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_rect_letterbox_matches_ultralytics_default_predict(shape):
    """rect: LetterBox(auto=True), each side padded to the smallest multiple of 32, as Ultralytics'
    predict of .pt weights does an image (a batch of one shape); boxes map back the same way."""
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    (batch,), (params,) = CpuPreprocessor(IMGSZ, rect=True).letterbox([image])
    expected = LetterBox((IMGSZ, IMGSZ), auto=True, stride=32)(image=image)[..., ::-1].transpose(2, 0, 1)
    np.testing.assert_array_equal(batch, expected)
    height, width = batch.shape[1:]
    assert height % 32 == 0 and width % 32 == 0 and max(height, width) == IMGSZ
    boxes = np.array([[100.5, 20.25, 300.75, 30.0]], np.float32)
    expected_boxes = scale_boxes((height, width), boxes.copy(), shape)
    mapped = np.clip((boxes - np.tile(params[:2], 2)) / np.tile(params[2:4], 2), 0, np.tile(params[4:], 2))
    np.testing.assert_allclose(mapped, expected_boxes, rtol=1e-6, atol=1e-4)


def test_rect_batch_of_mixed_shapes_is_square():
    """Ultralytics letterboxes a batch of mixed shapes to imgsz x imgsz (auto only for same shapes)."""
    same = [np.zeros((480, 640, 3), np.uint8)] * 2
    mixed = [np.zeros((480, 640, 3), np.uint8), np.zeros((640, 480, 3), np.uint8)]
    assert {(b.out_height, b.out_width) for b in letterbox_boxes([im.shape[:2] for im in same], IMGSZ, rect=True)} == {
        (480, 640)
    }
    assert {(b.out_height, b.out_width) for b in letterbox_boxes([im.shape[:2] for im in mixed], IMGSZ, rect=True)} == {
        (640, 640)
    }
    assert CpuPreprocessor(IMGSZ, rect=True).letterbox(mixed)[0].shape == (2, 3, 640, 640)


def test_letterbox_fit_keeps_thin_images_one_pixel():
    box = Letterbox.fit(1, 10000, IMGSZ)
    assert (box.new_height, box.new_width) == (1, 640)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty input"),
        (np.random.default_rng(1).bytes(5000), "cannot decode"),
        (b"name,score\nbus,0.9\n", "cannot decode"),
    ],
)
def test_decode_rejects_non_images(data, message):
    with pytest.raises(ImageError, match=message):
        decode(data)


@pytest.mark.parametrize("keep", [200, 0.33, 0.9])
def test_decode_rejects_truncated_jpeg(test_images, keep):
    # cut inside the header or inside the scan: refused before decoding, as the GPU path refuses it
    # (OpenCV would decode some, nvImageCodec most, as partly grey pictures)
    data = test_images[0].read_bytes()
    cut = data[: keep if isinstance(keep, int) else int(len(data) * keep)]
    with pytest.raises(ImageError, match=rf"truncated JPEG \({len(cut)} bytes\): no end-of-image marker"):
        decode(cut)
    assert decode(data).shape[2] == 3  # the whole file decodes


def test_decode_applies_exif_orientation_as_ultralytics(tmp_path, test_images):
    """A JPEG whose EXIF says 'rotate 90': decoded upright, as Ultralytics' imread (IMREAD_COLOR) gives it."""
    from PIL import Image
    from ultralytics.utils.patches import imread

    path = tmp_path / "rotated.jpg"
    image = Image.open(test_images[-1])  # zidane.jpg, 1280x720
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 clockwise to display
    image.save(path, exif=exif)
    ours = decode(path.read_bytes())
    assert ours.shape[:2] == (1280, 720)
    np.testing.assert_array_equal(ours, imread(str(path)))


def test_bad_row_leaves_no_reference_cycle(test_images):
    """A batch with a bad row is freed when its results are dropped, not at Python's next full garbage
    collection: a refused row's exception kept with its traceback held the frames of the call, and with
    them every image of the batch (on the GPU, the decoded images and the letterboxed batch)."""
    from yolo_triton.batch_preprocessing import BatchPreprocessor

    preprocess = BatchPreprocessor(640, device="cpu")
    good = test_images[0].read_bytes()
    gc.collect()
    gc.disable()
    try:
        results = preprocess([[good, b""], [good, good[: len(good) // 3]], [good]])
        assert [isinstance(r, ImageError) for r in results] == [True, True, False]
        del results
        assert gc.collect() == 0
    finally:
        gc.enable()
