import subprocess
import sys

import cv2
import numpy as np
import pytest

import videos
from conftest import ROOT
from stages import flow

torch = pytest.importorskip("torch", reason="the torch flow backend needs torch, which is not installed")
from stages import flow_torch

SHIFT = np.array([0.4, -0.25])  # px per frame, x then y
CONFIGS = {
    "default": flow.FlowConfig(),
    "gaussian": flow.FlowConfig(flags=cv2.OPTFLOW_FARNEBACK_GAUSSIAN),
    "wide window, two levels": flow.FlowConfig(winsize=21, levels=2),
    "even window, poly_n 7, gaussian": flow.FlowConfig(winsize=10, poly_n=7, poly_sigma=1.5, iterations=4, flags=cv2.OPTFLOW_FARNEBACK_GAUSSIAN),
}


def face_crops() -> np.ndarray:
    """uint8 (4, 256, 256) gray: the astronaut's head, turned, zoomed and moved sub-pixel each
    frame, with sensor grain, so the flow differs from pixel to pixel."""
    from skimage import data

    head = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)[0:400, 60:460], (256, 256), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(7)
    frames = []
    for t in range(4):
        matrix = cv2.getRotationMatrix2D((120.0, 136.0), 1.2 * t, 1 + 0.015 * t)
        matrix[:, 2] += (0.7 * t, -0.45 * t)
        moved = cv2.warpAffine(head.astype(np.float32), matrix, (256, 256), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        frames.append(np.clip(moved + rng.normal(0, 2.0, moved.shape), 0, 255).astype(np.uint8))
    return np.stack(frames)


def moving_face_crops() -> np.ndarray:
    """uint8 (4, 256, 256) gray: box crops around the pasted face of `videos.moving_face`."""
    path = videos.smooth_path(4) + np.array([[0, 0], [1.3, 0.6], [2.1, 1.7], [3.6, 1.1]])
    frames = videos.moving_face(path, seed=2)
    return np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[16:272, 64:320] for frame in frames])


def cv2_farneback(gray_thw: np.ndarray, pairs_f2: np.ndarray, config: flow.FlowConfig) -> np.ndarray:
    return np.stack([
        cv2.calcOpticalFlowFarneback(gray_thw[a], gray_thw[b], None, config.pyr_scale, config.levels, config.winsize,
                                     config.iterations, config.poly_n, config.poly_sigma, config.flags)
        for a, b in pairs_f2
    ])


@pytest.mark.parametrize("crops", [face_crops, moving_face_crops])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_torch_field_matches_cv2_within_five_hundredths_of_a_pixel(crops, name):
    config = CONFIGS[name]
    gray = crops()
    pairs = flow.consecutive_pairs(np.zeros(len(gray), np.int32))
    expected = cv2_farneback(gray, pairs, config)
    field = flow_torch.farneback(gray, pairs, config)
    assert field.shape == expected.shape and field.dtype == np.float32
    assert np.linalg.norm(expected, axis=-1).mean() > 0.5  # a real motion to agree on
    # Every pixel counts, borders included: that is where a port usually drifts.
    epe = np.linalg.norm(field - expected, axis=-1).mean(axis=(1, 2))
    assert epe.max() <= 0.05, epe


def test_torch_backend_measures_a_known_sub_pixel_translation():
    base = videos.texture(160, 160, seed=3)
    frames = np.stack([np.repeat(videos.translated(base, *(SHIFT * t))[..., :1], 3, axis=2) for t in range(4)])
    result = flow.compute(frames, flow.consecutive_pairs(np.zeros(4, np.int32)), flow.FlowConfig(backend="torch"))
    for field in result.flow_fhw2:
        inner = field[16:-16, 16:-16].astype(np.float64)
        assert np.linalg.norm(inner - SHIFT, axis=-1).mean() < 0.1


def test_torch_backend_returns_what_the_cpu_backend_returns():
    frames = np.repeat(face_crops()[:3, :, :, None], 3, axis=3)
    pairs = flow.consecutive_pairs(np.array([0, 0, 1]))
    cpu = flow.compute(frames, pairs, flow.FlowConfig(backend="cpu"))
    result = flow.compute(frames, pairs, flow.FlowConfig(backend="torch"))
    assert result.flow_fhw2.shape == cpu.flow_fhw2.shape == (1, 256, 256, 2)
    assert result.flow_fhw2.dtype == cpu.flow_fhw2.dtype == np.float16
    assert result.backend == ("torch-cuda" if torch.cuda.is_available() else "torch-cpu")
    empty = flow.compute(frames[:1], pairs[:0], flow.FlowConfig(backend="torch"))
    assert empty.flow_fhw2.shape == (0, 256, 256, 2)


def test_the_torch_backend_keeps_its_own_key_and_torch_out_of_other_workers():
    assert flow.FlowConfig(backend="torch").hashed() == flow.FlowConfig().hashed()
    code = "import sys, stages.flow; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_the_bench_check_compares_both_backends_on_a_stores_pairs(tmp_path):
    from bench.torch_flow import torch_flow_check
    from pipeline.profiles import get_profile
    from stores import write_tiny_store

    store = write_tiny_store(tmp_path / "s.zarr", get_profile("ofcnn", ["crop.size=64x64"]), frames=4, splits={"train": 1})
    report = torch_flow_check(store)
    assert report["pairs"] == 6 and report["torch_device"] in ("cpu", "cuda")
    assert report["max_video_mean_epe_px"] <= 0.05 and report["mean_epe_px"] <= report["max_video_mean_epe_px"]
