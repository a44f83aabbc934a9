from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
sys.path.insert(0, str(Path(__file__).parent))

needs_fixtures = pytest.mark.skipif(
    not (FIXTURES / "Megamind.avi").is_file(),
    reason=f"real media fixtures not found at {FIXTURES} (they ship with the project's shared folder, not with a clone)",
)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """The demo corpus, generated once per test session."""
    from pipeline.sources import demo

    root = tmp_path_factory.mktemp("demo")
    demo.ensure_corpus(root)
    return root


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python cli.py ARGS` in a fresh process, as a user would run it."""
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="session")
def demo_store(demo_root, tmp_path_factory) -> Path:
    """The whole demo corpus through `features` on a local cluster, once per session."""
    store = tmp_path_factory.mktemp("stores") / "demo.zarr"
    result = run_cli("features", "--dataset", "demo", "--root", str(demo_root), "--store", str(store), "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    store.with_suffix(".log").write_text(result.stdout + result.stderr)
    return store


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory) -> Path:
    """One 6-frame 32x32 video, made once; dataset trees hard-link it to every path they need."""
    import videos

    return videos.write(tmp_path_factory.mktemp("tiny") / "tiny.mp4", videos.texture(32, 32)[None].repeat(6, 0).astype("uint8"))
