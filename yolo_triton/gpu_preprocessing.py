"""GPU decode (nvImageCodec) + letterbox (one CuPy kernel over the whole batch).

Used by the `preprocess` Triton model when the server has a GPU. It produces the same hand-off as
preprocessing.py (letterboxed RGB UINT8 NCHW + LETTERBOX_PARAMS rows), in GPU memory:

- decode: one nvImageCodec decoder, one batched decode call for every image of every request;
  the hardware JPEG decoder where the GPU has one (A100, H100), else the CUDA/hybrid decoder. An
  image the GPU cannot decode (another format, a JPEG flavour nvJPEG refuses) falls back alone to
  OpenCV on the CPU, and only an image that also fails there fails its request. EXIF orientation
  is applied, as Ultralytics' OpenCV loading does.
- letterbox: Ultralytics' LetterBox (cv2.resize INTER_LINEAR, centred grey 114 padding, to imgsz x
  imgsz or, rect, to the smallest multiple of the stride) as one CUDA kernel: one thread per
  output pixel, OpenCV's fixed-point bilinear weights.
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from yolo_triton.contract import LETTERBOX_PARAMS, PADDING_VALUE
from yolo_triton.preprocessing import ImageError, check, decode, letterbox_boxes

_LETTERBOX_SOURCE = r"""
// OpenCV's resize (INTER_LINEAR, 8-bit): 11-bit fixed-point weights, horizontal then vertical.
__device__ __forceinline__ void source_taps(int d, float scale, int size, int* s0, int* s1, int* w0, int* w1) {
    float f = (float)((d + 0.5) * scale - 0.5);
    int s = (int)floorf(f);
    f -= s;
    if (s < 0) { s = 0; f = 0.f; }
    if (s >= size - 1) { s = size - 1; f = 0.f; }
    *s0 = s;
    *s1 = min(s + 1, size - 1);
    *w0 = __float2int_rn((1.f - f) * 2048.f);
    *w1 = __float2int_rn(f * 2048.f);
}

extern "C" __global__ void letterbox(const unsigned long long* sources, const int* geometry,
                                     unsigned char* out, const int out_h, const int out_w) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int n = blockIdx.z;
    if (x >= out_w || y >= out_h) return;
    // per image: height, width, new_height, new_width, top, left, row pitch in bytes
    const int* g = geometry + n * 7;
    const int h = g[0], w = g[1], nh = g[2], nw = g[3], top = g[4], left = g[5], pitch = g[6];
    const size_t plane = (size_t)out_h * out_w;
    unsigned char* o = out + n * 3 * plane + (size_t)y * out_w + x;
    const int lx = x - left, ly = y - top;
    if (lx < 0 || ly < 0 || lx >= nw || ly >= nh) {
        o[0] = o[plane] = o[2 * plane] = PADDING;
        return;
    }
    const unsigned char* src = (const unsigned char*)sources[n];
    int x0, x1, a0, a1, y0, y1, b0, b1;
    source_taps(lx, (float)w / nw, w, &x0, &x1, &a0, &a1);
    source_taps(ly, (float)h / nh, h, &y0, &y1, &b0, &b1);
    if (nw == w) { x0 = x1 = lx; a0 = 2048; a1 = 0; }  // not resized (LetterBox skips cv2.resize)
    if (nh == h) { y0 = y1 = ly; b0 = 2048; b1 = 0; }
    const unsigned char* r0 = src + (size_t)y0 * pitch;
    const unsigned char* r1 = src + (size_t)y1 * pitch;
    for (int c = 0; c < 3; ++c) {
        const int top_row = r0[x0 * 3 + c] * a0 + r0[x1 * 3 + c] * a1;
        const int bottom_row = r1[x0 * 3 + c] * a0 + r1[x1 * 3 + c] * a1;
        const int v = (top_row * b0 + bottom_row * b1 + (1 << 21)) >> 22;
        o[c * plane] = (unsigned char)min(max(v, 0), 255);
    }
}
"""


DECODERS = ("HW_GPU_ONLY", "GPU_ONLY", "HYBRID_CPU_GPU")  # nvImageCodec's backends, in the order they are tried


class GpuPreprocessor:
    """Decoder and kernel made once (initialize), then `__call__` per batch."""

    def __init__(self, imgsz: int, device_id: int = 0, backends: tuple[str, ...] | None = None, rect: bool = False):
        from nvidia import nvimgcodec

        self.imgsz, self.rect = imgsz, rect
        self.device = cp.cuda.Device(device_id)
        with self.device:
            self.kernel = cp.RawKernel(_LETTERBOX_SOURCE.replace("PADDING", str(PADDING_VALUE)), "letterbox")
            self.backends = kinds = backends or DECODERS
            # fancy upsampling: chroma upsampled as libjpeg (OpenCV) does, so pixels match Ultralytics' decode
            self.decoder = nvimgcodec.Decoder(
                device_id=device_id,
                options=":fancy_upsampling=1",
                backends=[nvimgcodec.Backend(getattr(nvimgcodec.BackendKind, k)) for k in kinds],
            )
            self.params = nvimgcodec.DecodeParams(
                apply_exif_orientation=True, color_spec=nvimgcodec.ColorSpec.SRGB, allow_any_depth=False
            )
            self.code_stream = nvimgcodec.CodeStream

    def decode(self, rows: list[bytes], stream: cp.cuda.Stream) -> list:
        """Every row decoded to an RGB HxWx3 uint8 GPU image (nvImageCodec, or OpenCV for the rows
        it cannot do), or the ImageError of that row."""
        images: list = [None] * len(rows)
        streams, where = [], []
        for i, data in enumerate(rows):
            try:
                check(data)  # size and pixel limits before the GPU sees a byte
            except ImageError as e:
                # without its traceback, which holds this frame and so this list of GPU images: a
                # reference cycle that kept every batch with a bad row until a full garbage collection
                images[i] = e.with_traceback(None)
                continue
            try:
                streams.append(self.code_stream(data))
                where.append(i)
            except Exception:  # not a format nvImageCodec parses: OpenCV tries below
                pass
        if streams:
            for i, image in zip(where, self.decoder.decode(streams, params=self.params, cuda_stream=stream.ptr)):
                images[i] = image
        for i, data in enumerate(rows):
            if images[i] is None:
                try:  # per-image fallback, as Ultralytics' loading: OpenCV, BGR -> RGB
                    images[i] = cp.asarray(np.ascontiguousarray(decode(data)[..., ::-1]))
                except ImageError as e:
                    images[i] = e.with_traceback(None)
        return images

    def letterbox(self, images: list, stream: cp.cuda.Stream) -> tuple[cp.ndarray, np.ndarray]:
        """Decoded GPU images of one batch -> (N, 3, H, W) uint8 GPU batch (preprocessing.letterbox_boxes),
        and their LETTERBOX_PARAMS rows."""
        views = [cp.asarray(im) for im in images]  # zero-copy views (__cuda_array_interface__)
        for i, v in enumerate(views):
            if v.ndim != 3 or v.shape[2] != 3 or v.dtype != cp.uint8 or v.strides[1:] != (3, 1):
                raise ValueError(f"decoded image {i} is {v.shape} {v.dtype} {v.strides}, expected HxWx3 uint8 rows")
        boxes = letterbox_boxes([v.shape[:2] for v in views], self.imgsz, self.rect)
        n = len(views)
        height, width = (boxes[0].out_height, boxes[0].out_width) if boxes else (self.imgsz, self.imgsz)
        out = cp.empty((n, 3, height, width), cp.uint8)
        params = np.empty((n, *LETTERBOX_PARAMS.dims), LETTERBOX_PARAMS.numpy_dtype)
        if n == 0:
            return out, params
        geometry = np.empty((n, 7), np.int32)
        for i, (v, box) in enumerate(zip(views, boxes)):
            geometry[i] = (box.height, box.width, box.new_height, box.new_width, box.top, box.left, v.strides[0])
            params[i] = box.params()
        pointers = cp.asarray(np.array([v.data.ptr for v in views], np.uint64))
        block = (32, 8, 1)
        grid = ((width + block[0] - 1) // block[0], (height + block[1] - 1) // block[1], n)
        self.kernel(
            grid, block, (pointers, cp.asarray(geometry), out, np.int32(height), np.int32(width)), stream=stream
        )
        return out, params
