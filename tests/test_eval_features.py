"""HDF5 feature files: round trip, errors, and per-video feature extraction from clip batches."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from csvr.evaluate.features import FeatureSet, extract_video_features, read_attrs, read_features, write_features

torch.set_num_threads(1)


def _sets():
    rng = np.random.default_rng(0)
    train = FeatureSet(rng.normal(size=(5, 8)), np.array([0, 1, 2, 1, 0]), [f"v{i}" for i in range(5)], "train",
                       {"clips_per_video_min": 10})
    test = FeatureSet(rng.normal(size=(3, 8)), np.array([2, 0, 1]), ["t(1)!", "t+2&", "t 3"], "test")
    return train, test


def test_round_trip(tmp_path):
    train, test = _sets()
    attrs = {"model": "r2plus1d_18", "checkpoint": "runs/x/ckpt.pt", "clips_per_video": 10,
             "config": {"lr": 0.008, "stages": ["pose", "joint"]}}
    path = write_features(tmp_path / "sub" / "features.h5", [train, test], attrs)
    import h5py
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == ["test", "train"]
    a = read_attrs(path)
    assert a["schema"] == "csvr-features/1" and a["model"] == "r2plus1d_18" and a["clips_per_video"] == 10
    assert a["config"] == {"lr": 0.008, "stages": ["pose", "joint"]}
    for orig in (train, test):
        back = read_features(path, orig.split)
        np.testing.assert_array_equal(back.features, orig.features.astype(np.float32))
        assert back.features.dtype == np.float32 and back.labels.dtype == np.int64
        np.testing.assert_array_equal(back.labels, orig.labels)
        assert back.video_ids == orig.video_ids
    assert read_features(path, "train").attrs == {"clips_per_video_min": 10}
    assert not list(tmp_path.glob("sub/.features.h5.tmp-*"))  # no temp file left behind


def test_errors(tmp_path):
    train, test = _sets()
    path = write_features(tmp_path / "f.h5", [train])
    with pytest.raises(KeyError, match="no split 'test'"):
        read_features(path, "test")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_features(tmp_path / "missing.h5", "train")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["schema"] = "something-else"
    with pytest.raises(ValueError, match="unknown features schema"):
        read_features(tmp_path / "other.h5", "train")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        read_features(tmp_path / "text.h5", "train")
    with pytest.raises(ValueError, match="must align"):
        FeatureSet(np.zeros((3, 2)), np.zeros(2), ["a", "b", "c"], "train")
    with pytest.raises(ValueError, match="duplicate video ids"):
        FeatureSet(np.zeros((2, 2)), np.zeros(2), ["a", "a"], "train")
    with pytest.raises(ValueError, match="repeat"):
        write_features(tmp_path / "g.h5", [train, train])
    bad = FeatureSet(np.zeros((1, 3)), np.zeros(1), ["x"], "test")
    with pytest.raises(ValueError, match="different feature sizes"):
        write_features(tmp_path / "g.h5", [train, bad])


def test_extract_video_features_averages_clips():
    # 3 videos (indices 4, 9, 2), 2 clips each, shuffled across two batches; feature_fn = mean over
    # the clip tensor's last dim so expected features are hand-computable.
    clips = torch.tensor([[1.0, 3.0], [10.0, 10.0], [5.0, 7.0], [0.0, 2.0], [20.0, 20.0], [2.0, 2.0]])
    vidx = torch.tensor([4, 9, 2, 4, 9, 2])
    labels = torch.tensor([1, 0, 2, 1, 0, 2])
    batches = [{"clip": clips[:4], "label": labels[:4], "video_index": vidx[:4]},
               {"clip": clips[4:], "label": labels[4:], "video_index": vidx[4:]}]
    fs = extract_video_features(lambda x: torch.stack([x.mean(1), x.max(1).values], 1), batches, "test",
                                video_ids={4: "a", 9: "b", 2: "c"})
    assert fs.video_ids == ["a", "b", "c"]
    np.testing.assert_allclose(fs.features, [[1.5, 2.5], [15.0, 15.0], [4.0, 4.5]])
    assert fs.labels.tolist() == [1, 0, 2]
    assert fs.attrs == {"clips_per_video_min": 2, "clips_per_video_max": 2}
    with pytest.raises(KeyError, match="video_index"):
        extract_video_features(lambda x: x, [{"clip": clips, "label": labels}], "test")
    with pytest.raises(ValueError, match="no batches"):
        extract_video_features(lambda x: x, [], "test")
