"""`bench.flow_signal`: the inner face's flow less the head's, the measure BENCHMARKS.md quotes."""

import numpy as np

from bench.flow_signal import relative_motion


def test_relative_motion_is_the_inner_faces_flow_less_the_heads():
    flow = np.zeros((2, 100, 100, 2), np.float32)
    flow[:, 20:80, 20:80] = (3.0, 0.0)  # the head moves right
    flow[0, 40:60, 40:60] = (3.0, 1.0)  # in the first flow the inner face also moves down 1 px
    boxes = np.array([[30.0, 30.0, 70.0, 70.0]] * 2)
    assert np.isclose(relative_motion(flow, boxes), 0.5)  # (1 + 0) / 2
