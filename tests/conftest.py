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
def tiny_store(tmp_path_factory) -> Path:
    """A store written directly (tests/stores.py): 2 train and 2 val videos of one 16-frame
    clip of 32x32 crops with flow, made as the `ofcnn` profile at 32 px would make them."""
    from pipeline.profiles import get_profile
    from stores import write_tiny_store

    path = tmp_path_factory.mktemp("tiny") / "tiny.zarr"
    return write_tiny_store(path, get_profile("ofcnn", ["crop.size=32x32"]), frames=16, size=(32, 32), splits={"train": 1, "val": 1})
