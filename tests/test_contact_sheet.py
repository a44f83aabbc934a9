import numpy as np

from viz.contact_sheet import FOUND, MISSED, TRACK_COLOURS, contact_sheet

GREY = (128, 128, 128)
SCALE = 0.5  # thumbnail pixels per frame pixel


def track_panel(boxes_xyxy, face_found) -> np.ndarray:
    """The thumbnail part of a sheet of six frames with the given boxes (frame pixels)."""
    frames = np.full((6, 32, 32, 3), 90, np.uint8)
    thumbnail = np.full((120, 200, 3), GREY, np.uint8)
    sheet = contact_sheet(frames, np.zeros(6, np.int32), None, None, boxes_xyxy, face_found, thumbnail, SCALE, "faces")
    return sheet[-120:, :200]


def colour_at(panel, x, y):
    return tuple(int(v) for v in panel[y, x])


def test_every_track_is_drawn_in_its_own_colour():
    # Thumbnail boxes: face 0 at (20, 20, 80, 80); face 1 at (120, 30, 170, 70), then lost
    # for the last two frames at (125, 80, 175, 110).
    boxes = np.empty((2, 6, 4), np.float32)
    boxes[0] = np.array([20, 20, 80, 80]) / SCALE
    boxes[1, :4] = np.array([120, 30, 170, 70]) / SCALE
    boxes[1, 4:] = np.array([125, 80, 175, 110]) / SCALE
    found = np.array([[True] * 6, [True] * 4 + [False] * 2])
    panel = track_panel(boxes, found)
    assert colour_at(panel, 50, 20) == colour_at(panel, 20, 50) == FOUND
    assert colour_at(panel, 145, 30) == colour_at(panel, 170, 50) == TRACK_COLOURS[1]
    assert colour_at(panel, 150, 80) == colour_at(panel, 125, 95) == MISSED
    is_colour = lambda colour: np.all(panel == colour, axis=-1)  # noqa: E731
    ys, xs = np.nonzero(is_colour(FOUND))
    assert xs.min() >= 20 and xs.max() <= 80 and ys.max() <= 80, "the main track's colour outside its box"
    ys, xs = np.nonzero(is_colour(TRACK_COLOURS[1]))
    assert xs.min() >= 120 and xs.max() <= 170 and ys.max() <= 70, "track 1's colour outside its box and label"
    # Each track's index is written above its first box.
    for x0, y0 in [(20, 20), (120, 30)]:
        assert (panel[y0 - 12 : y0 - 2, x0 : x0 + 8] != GREY).any(axis=-1).sum() > 5


def test_a_single_face_keeps_the_green_and_red_boxes_without_a_label():
    boxes = np.tile(np.array([40, 40, 160, 160], np.float32), (6, 1))
    boxes[5] += 20
    found = np.array([True] * 5 + [False])
    panel = track_panel(boxes, found)
    np.testing.assert_array_equal(panel, track_panel(boxes[None], found[None]))
    assert set(map(tuple, panel.reshape(-1, 3).tolist())) == {GREY, FOUND, MISSED}
    assert colour_at(panel, 50, 20) == FOUND and colour_at(panel, 60, 30) == MISSED
