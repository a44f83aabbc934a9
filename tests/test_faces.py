import re

import cv2
import numpy as np
import pytest

import videos
from stages import faces
from stages.decode import DecodeConfig, SamplingConfig, decode_clips
from stages.errors import ConfigError, NoFace

CONFIG = faces.FacesConfig()


@pytest.fixture(scope="module")
def smooth_face(tmp_path_factory):
    """A face moving on a known smooth path, encoded as H.264 and decoded back."""
    centres = videos.smooth_path(96)
    path = videos.write(tmp_path_factory.mktemp("faces") / "smooth.mp4", videos.moving_face(centres))
    decoded = decode_clips(path, SamplingConfig(clips=2, clip_length=48), DecodeConfig())
    return decoded, centres[decoded.frame_index]


def test_box_track_is_smooth_and_follows_the_face(smooth_face):
    decoded, true_centres = smooth_face
    track = faces.track(decoded.frames_thw3, decoded.frame_index, decoded.clip_index, CONFIG)
    assert track.face_found.all()
    centres = (track.boxes_xyxy[:, :2] + track.boxes_xyxy[:, 2:]) / 2
    for clip in (0, 1):
        c = centres[decoded.clip_index == clip]
        jitter = np.sqrt(np.mean(np.sum(np.diff(c, n=2, axis=0) ** 2, axis=1)))
        assert jitter < 0.5, f"clip {clip}: centre jitter {jitter:.2f} px RMS"
    # The box sits at a constant offset from the true face centre, up to detector noise.
    error = centres - true_centres
    assert np.sqrt(np.mean(np.sum((error - error.mean(axis=0)) ** 2, axis=1))) < 3.0
    assert np.abs(error.mean(axis=0)).max() < 15


def test_frames_without_a_face_keep_their_slot_and_are_flagged(tmp_path):
    centres = videos.smooth_path(64)
    frames = videos.moving_face(centres)
    frames[24:40] = videos.moving_face(centres[:1] + 1000)[0]  # face out of the picture
    path = videos.write(tmp_path / "gap.mp4", frames)
    decoded = decode_clips(path, SamplingConfig(clips=1, clip_length=64), DecodeConfig())
    track = faces.track(decoded.frames_thw3, decoded.frame_index, decoded.clip_index, CONFIG)
    assert len(track.boxes_xyxy) == 64 and np.isfinite(track.boxes_xyxy).all()
    assert not track.face_found[24:40].any()
    assert track.face_found[:21].all() and track.face_found[44:].all()
    assert np.isfinite(track.landmarks_xy).all()


def test_a_video_without_a_face_raises_no_face(tmp_path):
    frames = np.repeat(videos.texture(144, 192)[None].astype(np.uint8), 12, axis=0)
    path = videos.write(tmp_path / "noface.mp4", frames)
    decoded = decode_clips(path, SamplingConfig(clips=1, clip_length=12), DecodeConfig())
    with pytest.raises(NoFace):
        faces.track(decoded.frames_thw3, decoded.frame_index, decoded.clip_index, CONFIG)


def test_crop_modes(smooth_face):
    decoded, _ = smooth_face
    track = faces.track(decoded.frames_thw3, decoded.frame_index, decoded.clip_index, CONFIG)
    for mode, size in [("box", (256, 256)), ("fixed", (224, 224)), ("align", (256, 256)), ("frame", (108, 192))]:
        crops = faces.crop(decoded.frames_thw3, track, decoded.clip_index, faces.CropConfig(mode, size))
        assert crops.frames.shape == (96, *size, 3) and crops.frames.dtype == np.uint8
    fixed = faces.crop(decoded.frames_thw3, track, decoded.clip_index, faces.CropConfig("fixed", (224, 224)))
    for clip in (0, 1):
        affines = fixed.affine_t23[decoded.clip_index == clip]
        assert np.all(affines == affines[0]), "a fixed crop keeps one square for the whole clip"
    # Side 2*sqrt(w*h) of the clip's first box.
    first = track.boxes_xyxy[0]
    assert fixed.affine_t23[0, 0, 0] == pytest.approx(224 / (2 * np.sqrt(np.prod(first[2:] - first[:2]))), rel=1e-5)


def test_align_puts_eyes_nose_and_mouth_on_the_template(smooth_face):
    decoded, _ = smooth_face
    track = faces.track(decoded.frames_thw3, decoded.frame_index, decoded.clip_index, CONFIG)
    crops = faces.crop(decoded.frames_thw3, track, decoded.clip_index, faces.CropConfig("align", (256, 256), margin=1.3))
    in_crop = faces.landmarks_in_crop(track.landmarks_xy, crops.affine_t23)
    five = np.stack([faces._five_points(points) for points in in_crop])
    template = ((faces.ALIGN_TEMPLATE_112 / 112 - 0.5) / 1.3 + 0.5) * 256
    # A least-squares similarity puts the points' centroid on the template's; a real face's
    # proportions differ from the template, so single points land within a few pixels.
    np.testing.assert_allclose(five.mean(axis=1), np.broadcast_to(template.mean(axis=0), (96, 2)), atol=0.05)
    assert np.abs(five - template).mean() < 6.0
    assert np.abs(five[:, :2] - template[:2]).max() < 8.0


def test_box_crop_is_centred_on_the_track_with_the_margin(smooth_face):
    decoded, _ = smooth_face
    track = faces.track(decoded.frames_thw3, decoded.frame_index, decoded.clip_index, CONFIG)
    crops = faces.crop(decoded.frames_thw3, track, decoded.clip_index, faces.CropConfig("box", (256, 256), margin=1.3))
    box = track.boxes_xyxy[10]
    corners = np.array([[box[0], box[1]], [box[2], box[3]]])
    mapped = corners @ crops.affine_t23[10, :, :2].T + crops.affine_t23[10, :, 2]
    np.testing.assert_allclose(mapped.mean(axis=0), [128, 128], atol=1e-3)
    assert (mapped[1] - mapped[0]).max() == pytest.approx(256 / 1.3, rel=1e-4)


def test_searching_around_a_known_face_finds_the_same_face(smooth_face):
    decoded, _ = smooth_face
    frame = decoded.frames_thw3[30]
    whole, _ = faces.detect(frame, CONFIG)
    assert len(whole) == 1
    region = faces._search_region(whole[0] + np.array([6, -4, 6, -4], np.float32))
    near, _ = faces.detect(frame, CONFIG, region)
    assert len(near) == 1
    centre = lambda b: (b[:2] + b[2:]) / 2  # noqa: E731
    side = np.sqrt(np.prod(whole[0][2:] - whole[0][:2]))
    assert np.linalg.norm(centre(near[0]) - centre(whole[0])) < 0.1 * side
    assert 0.8 < np.sqrt(np.prod(near[0][2:] - near[0][:2])) / side < 1.25
    empty_corner = np.array([0, 0, 90, 90], np.float32)
    assert len(faces.detect(frame, CONFIG, empty_corner)[0]) == 0


def test_similarity_fit_matches_scikit_image():
    from skimage.transform import SimilarityTransform

    rng = np.random.default_rng(4)
    source = rng.uniform(0, 200, (5, 2))
    target = rng.uniform(0, 100, (5, 2))
    expected = SimilarityTransform.from_estimate(source, target).params[:2]
    np.testing.assert_allclose(faces._similarity(source, target), expected, atol=1e-9)
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -2.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    np.testing.assert_allclose(faces._similarity(source, source @ rotation.T + shift), np.c_[rotation, shift], atol=1e-9)


def test_the_cached_detector_finds_what_dlibs_own_finds(smooth_face, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached = faces.model_cache_dir() / f"frontal_face_detector-dlib-{faces.dlib.__version__}.svm"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"cut short")  # a file left by a run that died while writing it
    frames = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in smooth_face[0].frames_thw3[::12]]
    builtin = faces.dlib.get_frontal_face_detector()
    faces._hog_detector.cache_clear()
    try:
        rebuilt = faces._hog_detector()
        assert cached.stat().st_size > 100_000, "the cut-short file was not replaced"
        faces._hog_detector.cache_clear()
        loaded = faces._hog_detector()
    finally:
        faces._hog_detector.cache_clear()
    assert loaded is not rebuilt
    for frame in frames:
        expected = builtin.run(frame, 0, 0.0)
        assert expected[0], "the test frames must hold a face"
        for detector in (rebuilt, loaded):
            rects, scores, kinds = detector.run(frame, 0, 0.0)
            assert list(rects) == list(expected[0]) and scores == pytest.approx(expected[1]) and list(kinds) == list(expected[2])


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    """The two-face video (large face left, small face right) encoded, decoded as 4 clips of
    12, with the true inner-face boxes of the decoded frames."""
    frames, true_boxes = videos.two_faces(48)
    path = videos.write(tmp_path_factory.mktemp("faces") / "two.mp4", frames)
    decoded = decode_clips(path, SamplingConfig(clips=4, clip_length=12), DecodeConfig())
    return decoded, frames, true_boxes[:, decoded.frame_index]


def assert_same_track(a: faces.FaceTrack, b: faces.FaceTrack) -> None:
    for name in ("boxes_xyxy", "face_found", "landmarks_xy"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name


def test_every_face_gets_its_own_track_largest_first(two_faces):
    decoded, _, true_boxes = two_faces
    found = faces.tracks(decoded.frames_thw3, decoded.frame_index, decoded.clip_index, CONFIG)
    assert len(found) == 2
    for face, (track, truth) in enumerate(zip(found, true_boxes)):
        assert track.face_found.all(), f"face {face}"
        assert np.isfinite(track.landmarks_xy).all()
        side = np.sqrt(np.prod(truth[:, 2:] - truth[:, :2], axis=1))
        miss = np.linalg.norm((track.boxes_xyxy[:, :2] + track.boxes_xyxy[:, 2:]) / 2 - (truth[:, :2] + truth[:, 2:]) / 2, axis=1)
        assert (miss < 0.15 * side).all(), f"face {face}: box centre up to {miss.max():.1f} px from the pasted face"
        ratio = np.sqrt(np.prod(track.boxes_xyxy[:, 2:] - track.boxes_xyxy[:, :2], axis=1)) / side
        assert (0.7 < ratio).all() and (ratio < 1.1).all(), f"face {face}: box side {ratio.min():.2f}-{ratio.max():.2f} of the pasted face"
    # The main track, alone, is track 0.
    assert_same_track(found[0], faces.track(decoded.frames_thw3, decoded.frame_index, decoded.clip_index, CONFIG))


def test_the_jittered_inner_face_shows_in_its_own_tracks_flow_only(two_faces):
    """Face 1 carries the demo's manipulation: its crops' flow, inner face against the crop's
    corner, changes from pair to pair many times more than face 0's."""
    from stages import flow

    decoded = two_faces[0]
    pairs = flow.consecutive_pairs(decoded.clip_index)
    jerk = []
    for track in faces.tracks(decoded.frames_thw3, decoded.frame_index, decoded.clip_index, CONFIG):
        crops = faces.crop(decoded.frames_thw3, track, decoded.clip_index, faces.CropConfig("box", (128, 128))).frames
        fields = flow.compute(crops, pairs, flow.FlowConfig()).flow_fhw2.astype(np.float32)
        inner = fields[:, 40:90, 40:90].mean(axis=(1, 2)) - fields[:, 5:20, 5:20].mean(axis=(1, 2))
        same_clip = decoded.clip_index[pairs[1:, 0]] == decoded.clip_index[pairs[:-1, 0]]
        jerk.append(np.abs(np.diff(inner, axis=0))[same_clip].mean())
    assert jerk[1] > 4 * jerk[0], f"inner-face flow change per pair: {jerk[0]:.2f} px (face 0), {jerk[1]:.2f} px (face 1)"


def test_a_single_face_gives_one_track_that_is_the_main_track(smooth_face):
    decoded, _ = smooth_face
    (only,) = faces.tracks(decoded.frames_thw3, decoded.frame_index, decoded.clip_index, CONFIG)
    assert_same_track(only, faces.track(decoded.frames_thw3, decoded.frame_index, decoded.clip_index, CONFIG))


def test_max_faces_and_min_presence_choose_the_tracks(two_faces):
    decoded, frames, _ = two_faces
    rows = (decoded.frame_index, decoded.clip_index)
    assert len(faces.tracks(decoded.frames_thw3, *rows, faces.FacesConfig(max_faces=1))) == 1
    # The small face only in the last clip: a quarter of the searched frames.
    late = decoded.frames_thw3.copy()
    late[decoded.clip_index < 3, :, 256:] = 128
    assert len(faces.tracks(late, *rows, CONFIG)) == 1
    kept = faces.tracks(late, *rows, faces.FacesConfig(min_presence=0.2))
    assert len(kept) == 2 and kept[1].face_found[decoded.clip_index == 3].all() and not kept[1].face_found[decoded.clip_index < 3].any()
    # Without the large face the small one is the main track, however rarely it is seen.
    alone = late.copy()
    alone[:, :, :256] = 128
    (main,) = faces.tracks(alone, *rows, CONFIG)
    assert main.face_found.sum() == (decoded.clip_index == 3).sum()


@pytest.mark.parametrize(
    "field, value, message",
    [("max_faces", -1, "faces.max_faces=-1: allowed: 0 (no limit) to 64"), ("min_presence", 1.5, "faces.min_presence=1.5: allowed: 0 to 1")],
)
def test_bad_multi_face_settings_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        faces.FacesConfig(**{field: value})
