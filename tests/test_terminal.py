"""Names and reasons reach the terminal with their control characters escaped (issue 19): a
file named with `ESC[2J` must not clear the screen of whoever runs `status`."""

import os

from conftest import run_cli
from pipeline.terminal import printable

HOSTILE = "\x1b[2J\u202eevil\x9b6n"
ESCAPED = "\\x1b[2J\\u202eevil\\x9b6n"


def test_control_characters_print_as_their_escapes_and_other_text_is_untouched():
    assert printable(f"fake/{HOSTILE}\nnext\tline\u2028") == f"fake/{ESCAPED}\\nnext\\tline\\u2028"
    assert printable("vidéo 日本 👩\u200d💻 -rf $(x).mp4") == "vidéo 日本 👩\u200d💻 -rf $(x).mp4"


def test_features_status_and_show_print_a_hostile_name_escaped(tiny_video, tmp_path):
    root, store = tmp_path / "root", tmp_path / "store.zarr"
    for name in ("real", "fake"):
        (root / name).mkdir(parents=True)
    os.link(tiny_video, root / "real" / "good.mp4")
    (root / "fake" / f"{HOSTILE}.mp4").write_text("not a video\n")
    outputs = {}
    features = run_cli("features", "--dataset", "folder", "--root", str(root), "--store", str(store), "--workers", "1",
                       "--set", "crop.mode=frame", "--set", "crop.size=16x16")
    assert features.returncode == 0, features.stderr[-2000:]
    outputs["features"] = features
    outputs["status"] = run_cli("status", "--store", str(store))
    outputs["show"] = run_cli("show", "--store", str(store), f"fake/{HOSTILE}", "--out", str(tmp_path / "sheet.png"))
    for command, result in outputs.items():
        for stream in (result.stdout, result.stderr):
            assert "\x1b" not in stream and "\u202e" not in stream and "\x9b" not in stream, (command, stream)
    assert f"failed  fake/{ESCAPED}: unreadable" in outputs["features"].stdout
    assert f"failed   fake/{ESCAPED}: unreadable" in outputs["status"].stdout
    assert outputs["show"].returncode == 2 and f"VIDEO_ID fake/{ESCAPED}: status failed" in outputs["show"].stderr
