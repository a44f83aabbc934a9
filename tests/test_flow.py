import numpy as np
import pytest

import videos
from stages import faces, flow
from stages.decode import DecodeConfig, SamplingConfig, decode_clips

SHIFT = np.array([0.4, -0.25])  # px per frame, x then y


def end_point_error(field: np.ndarray, truth: np.ndarray, border: int = 16) -> float:
    inner = field[border:-border, border:-border].astype(np.float64)
    return float(np.mean(np.linalg.norm(inner - truth, axis=-1)))


def test_farneback_measures_a_known_sub_pixel_translation():
    base = videos.texture(160, 160, seed=3)
    frames = np.stack([np.repeat(videos.translated(base, *(SHIFT * t))[..., :1], 3, axis=2) for t in range(4)])
    result = flow.compute(frames, flow.consecutive_pairs(np.zeros(4, np.int32)), flow.FlowConfig())
    assert result.flow_fhw2.shape == (3, 160, 160, 2) and result.flow_fhw2.dtype == np.float16
    assert result.backend == "opencv-cpu"
    for field in result.flow_fhw2:
        assert end_point_error(field, SHIFT) < 0.1


def test_flow_inside_a_crop_of_a_decoded_video_matches_the_true_motion(tmp_path):
    """Through the whole chain: lossless video -> decode -> box crop -> flow."""
    base = videos.texture(288, 384, seed=5)
    frames = np.stack([videos.translated(base, *(SHIFT * t)) for t in range(12)])
    path = videos.lossless(tmp_path / "moving.mp4", frames)
    decoded = decode_clips(path, SamplingConfig(clips=1, clip_length=12), DecodeConfig())
    # A still box of side 200 cut to 200 px: crop pixels are frame pixels.
    box = np.tile(np.array([92, 44, 292, 244], np.float32), (12, 1))
    track = faces.FaceTrack(box, np.ones(12, bool), np.full((12, 68, 2), np.nan, np.float32))
    crops = faces.crop(decoded.frames_thw3, track, decoded.clip_index, faces.CropConfig("box", (200, 200), margin=1.0))
    result = flow.compute(crops.frames, flow.consecutive_pairs(decoded.clip_index), flow.FlowConfig())
    errors = [end_point_error(field, SHIFT) for field in result.flow_fhw2]
    assert max(errors) < 0.1, errors


def test_threads_give_the_same_fields_in_pair_order_and_keep_the_stage_key():
    frames = np.stack([np.repeat(videos.texture(96, 96, seed=s)[..., :1], 3, axis=2) for s in range(9)])
    pairs = flow.consecutive_pairs(np.array([0] * 5 + [1] * 4))
    one = flow.compute(frames, pairs, flow.FlowConfig(threads=1)).flow_fhw2
    four = flow.compute(frames, pairs, flow.FlowConfig(threads=4)).flow_fhw2
    # Unrelated textures: each pair's field differs, so a pair written to another's slot shows.
    assert np.array_equal(one, four) and not np.array_equal(one[0], one[1])
    assert flow.FlowConfig(threads=1).hashed() == flow.FlowConfig(threads=4).hashed()


def test_pairs_stay_inside_clips():
    pairs = flow.consecutive_pairs(np.array([0, 0, 0, 1, 1, 2]))
    assert pairs.tolist() == [[0, 1], [1, 2], [3, 4]]


def test_hsv_coding_maps_direction_to_hue_and_magnitude_to_value():
    field = np.zeros((8, 16, 2), np.float32)
    field[:, :8, 0] = 2.0  # rightwards
    field[:, 8:, 0] = -1.0  # leftwards, half as fast
    image = flow.hsv_image(field)
    assert image.shape == (8, 16, 3) and image.dtype == np.uint8
    assert image[:, :8].max(axis=2).min() == 255
    assert abs(int(image[0, 12].max()) - 128) <= 2
    assert not np.array_equal(image[0, 0], image[0, 12])


def test_bad_flow_parameters_are_refused():
    from stages.errors import ConfigError

    with pytest.raises(ConfigError, match="flow.poly_n=6: allowed: 5, 7"):
        flow.FlowConfig(poly_n=6)
    with pytest.raises(ConfigError, match="flow.threads=0: allowed: 1 to 64"):
        flow.FlowConfig(threads=0)
