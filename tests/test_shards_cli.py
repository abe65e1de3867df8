"""`csvr shards info|ls|show|verify|preview` on a tiny store, including corruption detection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from csvr.preprocess.pipeline import preprocess_dataset
from csvr.preprocess.shards_cli import shards
from preprocess_testdata import add_bad_files, make_dataset


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sh_data")
    m = make_dataset(root, per_class=2)
    _, m2 = add_bad_files(root, m)
    out = tmp_path_factory.mktemp("sh_store") / "s.zarr"
    preprocess_dataset(m2, out, pose="groundtruth", workers=0, shard_frames=32, progress=False)
    return out


def run(*args: str, code: int = 0):
    res = CliRunner().invoke(shards, list(args), catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res


def test_info(store):
    data = json.loads(run("info", str(store), "--json", "-").stdout)
    assert data["schema"] == "csvr-store/1" and data["complete"] is True
    assert data["summary"]["ok"] == 4 and data["summary"]["failed"] == 5
    assert data["arrays"]["frames"]["shape"] == [126, 128, 171, 3]
    from csvr.preprocess.store import FRAME_CHUNK

    assert data["arrays"]["frames"]["shards"][0] == 32 and data["arrays"]["frames"]["chunks"][0] == FRAME_CHUNK
    # frames are stored uncompressed by default (docs/store.md); the zstd pose arrays compress
    assert data["bytes_on_disk"] > 0 and data["arrays"]["frames"]["ratio"] == pytest.approx(1.0, abs=0.02)
    assert data["arrays"]["poses/keypoints"]["ratio"] > 1
    text = run("info", str(store)).output
    assert "4 ok, 0 degraded, 5 failed" in text and "v_bad_zero.avi: zero-byte file" in text


def test_ls_filters(store):
    rows = json.loads(run("ls", str(store), "--json", "-").stdout)
    assert len(rows) == 9
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(r["pose_coverage"] == 1.0 for r in ok)
    assert [r["num_iframes"] for r in ok] == [3, 3, 3, 3]
    beta = json.loads(run("ls", str(store), "--label", "Beta", "--json", "-").stdout)
    assert {r["id"] for r in beta} == {"v_Beta_g01_c01", "v_Beta_g02_c01"}
    test = json.loads(run("ls", str(store), "--subset", "test", "--json", "-").stdout)
    assert {r["id"] for r in test} == {"v_Alpha_g01_c01", "v_Beta_g01_c01"}
    failed = json.loads(run("ls", str(store), "--status", "failed", "--json", "-").stdout)
    assert len(failed) == 5 and all(r["reason"] for r in failed)
    assert "9 videos" in run("ls", str(store)).output


def test_show(store):
    rec = json.loads(run("show", str(store), "v_Beta_g02_c01", "--json", "-").stdout)
    assert rec["num_frames"] == 33 and rec["label_name"] == "Beta" and rec["status"] == "ok"
    assert rec["iframe_source_index"] == [0, 12, 24] and rec["pose_coverage"] == 1.0
    same = json.loads(run("show", str(store), "UCF-101/Beta/v_Beta_g02_c01.avi", "--json", "-").stdout)
    assert same == rec
    res = CliRunner().invoke(shards, ["show", str(store), "nosuchvideo"])
    assert res.exit_code != 0 and "no video 'nosuchvideo'" in res.output


def test_preview(store, tmp_path):
    png, gif = tmp_path / "p.png", tmp_path / "p.gif"
    run("preview", str(store), "v_Alpha_g01_c01", "--out", str(png), "--frames", "8")
    im = np.asarray(Image.open(png).convert("RGB"))
    assert im.shape == (2 * 128, 4 * 171, 3)
    # frame 0 is an I-frame: outlined in red
    assert tuple(im[0, 50]) == (255, 0, 0)
    run("preview", str(store), "v_Alpha_g01_c01", "--out", str(gif))
    assert Image.open(gif).n_frames == 30
    res = CliRunner().invoke(shards, ["preview", str(store), "v_bad_zero", "--out", str(png)])
    assert res.exit_code != 0 and "no frames" in res.output


def test_verify_ok_and_detects_corruption(store, tmp_path):
    out = json.loads(run("verify", str(store), "--json", "-").stdout)
    assert out["ok"] is True and out["problems"] == [] and out["rows_read"] > 0
    bad = tmp_path / "corrupt.zarr"
    shutil.copytree(store, bad)
    shard = bad / "frames" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    for k in range(200, 220):  # flip bytes inside the compressed chunk data
        data[k] ^= 0xFF
    shard.write_bytes(bytes(data))
    res = CliRunner().invoke(shards, ["verify", str(bad)])
    assert res.exit_code == 1
    assert "frames: shard 1 (frames/c/1/0/0/0) checksum mismatch" in res.output


def test_verify_detects_table_inconsistency(store, tmp_path):
    import zarr

    bad = tmp_path / "table.zarr"
    shutil.copytree(store, bad)
    g = zarr.open_group(str(bad), mode="r+")
    nf = g["videos/num_frames"][:]
    nf[0] += 1
    g["videos/num_frames"][:] = nf
    res = CliRunner().invoke(shards, ["verify", str(bad), "--json", "-"])
    assert res.exit_code == 1
    problems = json.loads(res.stdout)["problems"]
    assert any("frame_start" in p for p in problems) and any("table counts 127 frames" in p for p in problems)


def test_incomplete_store_refused(store, tmp_path):
    import zarr

    bad = tmp_path / "inc.zarr"
    shutil.copytree(store, bad)
    zarr.open_group(str(bad), mode="r+").attrs["complete"] = False
    res = CliRunner().invoke(shards, ["verify", str(bad)])
    assert res.exit_code == 1 and "not marked complete" in res.output
    res = CliRunner().invoke(shards, ["ls", str(bad)])
    assert res.exit_code == 0  # inspection works on incomplete stores


def test_verify_unmodified_store_checks_table_checksum(store):
    import zarr

    assert len(zarr.open_group(str(store), mode="r").attrs["table_sha256"]) == 64
    out = json.loads(run("verify", str(store), "--json", "-").stdout)
    assert out["ok"] is True and out["problems"] == [] and out["notes"] == []
    assert run("verify", str(store)).output.strip().endswith("rows read)")


def test_verify_reports_undecodable_shard(store, tmp_path):
    bad = tmp_path / "undecodable.zarr"
    shutil.copytree(store, bad)
    shard = bad / "poses" / "keypoints" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    for k in range(4, 16):  # the first chunk's blosc header: the shard no longer decodes
        data[k] ^= 0xFF
    shard.write_bytes(bytes(data))
    # catch_exceptions=False: a traceback would fail the test instead of exiting 1
    res = run("verify", str(bad), "--json", "-", code=1)
    out = json.loads(res.stdout)
    assert out["ok"] is False
    dec = [p for p in out["problems"] if "cannot be decoded" in p]
    assert dec and all(p.startswith("poses/keypoints: shard 1 (poses/keypoints/c/1/0/0/0) cannot be decoded: rows 32")
                       for p in dec)
    assert "v_Alpha_g02_c01" in dec[0]  # rows 32.. belong to the second stored video
    assert any("poses/keypoints: shard 1" in p and "checksum mismatch" in p for p in out["problems"])
    text = run("verify", str(bad), code=1).output
    assert "PROBLEM: poses/keypoints: shard 1 (poses/keypoints/c/1/0/0/0) cannot be decoded" in text
    assert "Traceback" not in text


def test_verify_detects_changed_label(store, tmp_path):
    import zarr

    bad = tmp_path / "label.zarr"
    shutil.copytree(store, bad)
    g = zarr.open_group(str(bad), mode="r+")
    lab = g["videos/label"][:]
    lab[0] = 1 - lab[0]
    g["videos/label"][:] = lab
    out = json.loads(run("verify", str(bad), "--json", "-", code=1).stdout)
    assert out["problems"] and all(p.startswith("per-video table: checksum mismatch") for p in out["problems"])
    # a store written before the table checksum existed: a note, not a failure
    del g.attrs["table_sha256"]
    out = json.loads(run("verify", str(bad), "--json", "-").stdout)
    assert out["ok"] is True and out["notes"] == [
        "per-video table: no table checksum recorded (store predates it); not checked"]
    assert "note: per-video table: no table checksum recorded (store predates it)" in run("verify", str(bad)).output


def test_verify_progress_bar_and_quiet(store):
    from csvr.cli import main

    res = CliRunner().invoke(main, ["shards", "verify", str(store)])
    assert res.exit_code == 0 and "verify" in res.stderr and "shard" in res.stderr  # the tqdm bar, on stderr
    res = CliRunner().invoke(main, ["-q", "shards", "verify", str(store), "--json", "-"])
    assert res.exit_code == 0 and res.stderr == "" and json.loads(res.stdout)["ok"] is True
