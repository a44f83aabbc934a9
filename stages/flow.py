"""Flow: dense Farneback optical flow between consecutive crops of each clip."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from stages.config import StageConfig, check

VERSION = 1
BACKENDS = ("auto", "cpu", "cuda", "torch")


@dataclass(frozen=True)
class FlowConfig(StageConfig):
    # OpenCV's documented Farneback defaults, as the flow papers use them.
    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2
    flags: int = 0
    # float16 keeps flow within 0.03 px for half the bytes of float32.
    dtype: str = "float16"
    backend: str = "auto"
    # A video's pairs are independent, and OpenCV's CPU Farneback is one thread that releases
    # the GIL: on two threads, the last videos of a run use the cores the finished workers
    # left idle (the bench corpus, 2 workers, four alternating runs: `default` wall 6% lower),
    # with the same numbers.
    threads: int = 2

    def __post_init__(self):
        check(0 < self.pyr_scale < 1, "flow.pyr_scale", self.pyr_scale, "must be in (0, 1)")
        check(1 <= self.levels <= 10, "flow.levels", self.levels, "allowed: 1 to 10")
        check(3 <= self.winsize <= 101, "flow.winsize", self.winsize, "allowed: 3 to 101")
        check(1 <= self.iterations <= 100, "flow.iterations", self.iterations, "allowed: 1 to 100")
        check(self.poly_n in (5, 7), "flow.poly_n", self.poly_n, "allowed: 5, 7")
        check(0 < self.poly_sigma <= 10, "flow.poly_sigma", self.poly_sigma, "allowed: over 0, up to 10")
        check(self.flags in (0, cv2.OPTFLOW_FARNEBACK_GAUSSIAN), "flow.flags", self.flags,
              f"allowed: 0, {cv2.OPTFLOW_FARNEBACK_GAUSSIAN} (OPTFLOW_FARNEBACK_GAUSSIAN)")
        check(self.dtype in ("float16", "float32"), "flow.dtype", self.dtype, "allowed: float16, float32")
        check(self.backend in BACKENDS, "flow.backend", self.backend, f"allowed: {', '.join(BACKENDS)}")
        check(1 <= self.threads <= 64, "flow.threads", self.threads, "allowed: 1 to 64")

    def hashed(self) -> dict:
        """The fields that change the numbers; the backend and threads are recorded, not hashed."""
        fields = self.to_dict()
        del fields["backend"], fields["threads"]
        return fields


@dataclass(frozen=True)
class FlowResult:
    """`flow_fhw2` (F, H, W, 2) displacement in crop pixels, x then y; `backend` that made it."""

    flow_fhw2: np.ndarray
    backend: str


def consecutive_pairs(clip_index: np.ndarray) -> np.ndarray:
    """(F, 2) int32 positions (t, t+1) of neighbouring frames within the same clip."""
    t = np.flatnonzero(clip_index[1:] == clip_index[:-1])
    return np.stack([t, t + 1], axis=1).astype(np.int32).reshape(-1, 2)


def cuda_available() -> bool:
    try:
        return cv2.cuda.getCudaEnabledDeviceCount() > 0
    except (AttributeError, cv2.error):
        return False


def compute(frames_thw3: np.ndarray, pairs_f2: np.ndarray, config: FlowConfig) -> FlowResult:
    """Flow from frame pairs[i, 0] to pairs[i, 1], on grayscale."""
    backend = config.backend
    if backend == "auto":
        backend = "cuda" if cuda_available() else "cpu"
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames_thw3]
    if backend == "torch":
        from stages import flow_torch  # only here, so workers on the other backends never import torch

        gray_thw = np.asarray(gray, np.uint8).reshape(frames_thw3.shape[:3])
        flow = flow_torch.farneback(gray_thw, pairs_f2, config).astype(config.dtype, copy=False)
        return FlowResult(flow, f"torch-{flow_torch.device().type}")
    estimate = _cuda_farneback(config) if backend == "cuda" else _cpu_farneback(config)
    height, width = frames_thw3.shape[1:3]
    flow = np.empty((len(pairs_f2), height, width, 2), config.dtype)
    # OpenCV casts to float16 with the CPU's conversion instructions, numpy in software: 0.07
    # ms a 256 px field instead of 0.3 ms (2% of the stage), with the same bits.
    depth = cv2.CV_16F if config.dtype == "float16" else cv2.CV_32F

    def estimate_into(i: int) -> None:
        a, b = pairs_f2[i]
        cv2.add(estimate(gray[a], gray[b]), 0.0, dst=flow[i], dtype=depth)

    # One CUDA Farneback object serves the video, and it is not for sharing between threads.
    with ThreadPoolExecutor(config.threads if backend == "cpu" else 1) as pool:
        list(pool.map(estimate_into, range(len(pairs_f2))))
    return FlowResult(flow, f"opencv-{backend}")


def _cpu_farneback(config: FlowConfig):
    def estimate(previous, current):
        return cv2.calcOpticalFlowFarneback(
            previous, current, None, config.pyr_scale, config.levels, config.winsize,
            config.iterations, config.poly_n, config.poly_sigma, config.flags,
        )

    return estimate


def _cuda_farneback(config: FlowConfig):
    farneback = cv2.cuda.FarnebackOpticalFlow.create(
        config.levels, config.pyr_scale, False, config.winsize, config.iterations,
        config.poly_n, config.poly_sigma, config.flags,
    )

    def estimate(previous, current):
        flow = farneback.calc(cv2.cuda_GpuMat(previous), cv2.cuda_GpuMat(current), None)
        return flow.download()

    return estimate


def hsv_image(flow_hw2: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code one flow field as RGB uint8 (H, W, 3): hue is direction, value magnitude."""
    flow = flow_hw2.astype(np.float32)
    magnitude, angle = cv2.cartToPolar(flow[..., 0], flow[..., 1], angleInDegrees=True)
    top = max_magnitude if max_magnitude else max(float(magnitude.max()), 1e-6)
    hsv = np.empty(flow.shape[:2] + (3,), np.uint8)
    hsv[..., 0] = (angle / 2).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(magnitude / top * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
