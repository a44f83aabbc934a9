"""A store on object storage (issue 8): `features --store s3://...` against moto's S3 server on
127.0.0.1 through s3fs, the endpoint and credentials given to client and workers alike in the
environment, as on a real cluster; the arrays read back with plain zarr."""

import shutil

import numpy as np
import pytest
import zarr

from conftest import CHEAP, run_cli, set_options, status_by_id

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

VIDEOS = ("real/v00.mp4", "fake/v01.mp4", "real/v02.mp4", "fake/v03.mp4")


def test_a_store_on_s3_is_written_by_the_workers_and_read_back_with_plain_zarr(s3_endpoint, face_corpus, reference_store,
                                                                             tmp_path, monkeypatch):
    import s3fs

    # What botocore (under s3fs) reads in every process: workers inherit it from the client.
    for name, value in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir("dfprep-test")
    root, url = tmp_path / "root", "s3://dfprep-test/stores/demo.zarr"
    for name in VIDEOS:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(face_corpus / name, root / name)

    result = run_cli("features", "--dataset", "folder", "--root", str(root), "--store", url, *set_options(CHEAP), "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "\ndashboard: http://127.0.0.1:" in result.stdout, result.stdout
    rows = status_by_id(url)
    assert {row["status"] for row in rows.values()} == {"done"} and len(rows) == len(VIDEOS)
    assert not list(tmp_path.glob("**/*.zarr")), "the store was written to local disk"

    # Plain zarr with explicit storage options, as a reader elsewhere would open it.
    options = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}
    remote = zarr.open_group(url, mode="r", storage_options=options)
    local = zarr.open_group(str(reference_store), mode="r")
    for row in rows.values():
        group, expected = remote[f"videos/{row['key']}"], local[f"videos/{row['key']}"]
        assert group.attrs["status"] == "done" and set(group.attrs["dfprep_complete"]["arrays"]) == set(group.array_keys())
        assert sorted(group.array_keys()) == sorted(expected.array_keys())
        for name in expected.array_keys():
            assert (group[name].shape, group[name].dtype) == (expected[name].shape, expected[name].dtype), name
            np.testing.assert_array_equal(group[name][...], expected[name][...], err_msg=f"{row['key']}/{name}")
    assert remote["videos"][rows["real/v00"]["key"]]["frames"].dtype == np.uint8
    assert len([path for path in s3fs.S3FileSystem(skip_instance_cache=True).find(url) if f"/{rows['real/v00']['key']}/" in path]) == 7

    rerun = run_cli("features", "--dataset", "folder", "--root", str(root), "--store", url, *set_options(CHEAP))
    assert rerun.returncode == 0 and f"\nskipped {len(VIDEOS):>9}  unchanged" in rerun.stdout, rerun.stdout
    summary = run_cli("status", "--store", url)
    assert summary.returncode == 0 and "done" in summary.stdout, summary.stderr

    # The loader reads `frames` chunks itself by range, not through zarr: from object storage too.
    from feature_store import FeatureStore
    from trainer.dataset import ClipSpec, StoreClipDataset

    dataset = StoreClipDataset(url, ClipSpec(clip_length=2), splits=None)
    assert len(dataset) > 0
    batch = dataset[list(range(len(dataset)))]
    reference = FeatureStore(reference_store, mode="r")
    for frames, frame_index, video_id in zip(batch["frames"], batch["frame_index"], batch["video_id"], strict=True):
        expected = reference.open_video(rows[video_id]["key"])
        positions = np.flatnonzero(np.isin(expected.track()["frame_index"][0], frame_index.numpy()))
        np.testing.assert_array_equal(frames.numpy(), expected["frames"][0, positions].transpose(0, 3, 1, 2))


def test_a_half_write_on_s3_is_refused_by_readers(s3_endpoint, monkeypatch):
    """A writes a video, B starts the same video and dies, A completes: on object storage,
    where a group's delete and its puts are separate requests, readers refuse the group."""
    import s3fs

    from feature_store import FeatureStore, manifest, schema
    from stages.errors import StoreError
    from test_store import arrays, entry, random_frames

    for name, value in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir("dfprep-half")
    url = "s3://dfprep-half/store.zarr"
    first, second = FeatureStore(url), FeatureStore(url)
    first.write_video("k", entry(), arrays(random_frames()), chunk_frames=16)
    [row] = manifest.rebuild(first)
    group = first.root.create_group("videos/k", overwrite=True)
    written = first._write_arrays(group, arrays(random_frames(seed=1)), 16)
    dying = second.root.create_group("videos/k", overwrite=True)
    second._write_arrays(dying, {schema.FRAMES: arrays(random_frames(seed=2))[schema.FRAMES]}, 16)
    first._commit(group, "k", entry(), written)
    reader = FeatureStore(url, mode="r")
    with pytest.raises(StoreError, match=r"video v \(k\) is incomplete: array (frames is from another write|flow is missing)"):
        reader.open_video("k")
    with pytest.raises(StoreError, match="rewritten after the index was read"):
        reader.open_video("k", row.generation)


def test_a_second_run_on_an_s3_store_is_refused_while_the_first_holds_its_lease(s3_endpoint, face_corpus, tmp_path, monkeypatch):
    import s3fs

    from feature_store import FeatureStore

    for name, value in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir("dfprep-second-run")
    url = "s3://dfprep-second-run/store.zarr"
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    shutil.copy2(face_corpus / "real" / "v00.mp4", root / "real" / "v00.mp4")
    args = ["features", "--dataset", "folder", "--root", str(root), "--store", url, *set_options(CHEAP), "--workers", "1"]
    with FeatureStore(url).lock():
        refused = run_cli(*args)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
        assert f"store {url} is in use by dfprep run " in refused.stderr and "its lease expires at" in refused.stderr
    allowed = run_cli(*args)
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert {row["status"] for row in status_by_id(url).values()} == {"done"}
