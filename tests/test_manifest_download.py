"""`csvr download`: HTTP Range resume, size/sha256 checks and RAR extraction, against a loopback server.

RAR archives are built here by a minimal writer of RAR 4 "stored" (uncompressed) archives, following
RARLAB's published format notes, so the real extraction path (libarchive) reads real RAR headers.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from csvr.data_manifests import build_manifest
from csvr.data_manifests.download import (
    DownloadError,
    Source,
    download,
    download_dataset,
    extract_archive,
    fetch,
)

HMDB_ODD = "Fast_&_Furious_(1)!_+_jump_f_cm_np1_ri_med_0.avi"

try:
    import libarchive  # noqa: F401

    HAVE_LIBARCHIVE = True
except Exception:  # not installed, or libarchive.so not loadable
    HAVE_LIBARCHIVE = False
needs_libarchive = pytest.mark.skipif(not HAVE_LIBARCHIVE, reason="libarchive-c (with the system libarchive) reads RAR")


# ---- a tiny RAR 4 writer (stored entries only) -----------------------------------------------------
def _block(htype: int, flags: int, body: bytes) -> bytes:
    rest = struct.pack("<BHH", htype, flags, 7 + len(body)) + body
    return struct.pack("<H", zlib.crc32(rest) & 0xFFFF) + rest


def make_rar(files: dict[str, bytes]) -> bytes:
    """A RAR 4 archive of uncompressed entries (host OS Unix, '/' separators)."""
    out = bytearray(b"Rar!\x1a\x07\x00")
    out += _block(0x73, 0, b"\x00" * 6)  # archive header
    dos_time = (46 << 25) | (1 << 21) | (1 << 16)  # 2026-01-01 00:00
    for name, data in files.items():
        n = name.encode("utf-8")
        body = struct.pack(
            "<IIBIIBBHI", len(data), len(data), 3, zlib.crc32(data), dos_time, 29, 0x30, len(n), 0o100644
        )
        out += _block(0x74, 0x8000, body + n) + data  # file header (LONG_BLOCK) + data
    out += _block(0x7B, 0x4000, b"")  # end of archive
    return bytes(out)


# ---- loopback HTTP server with Range support and fault injection -----------------------------------
class Files:
    def __init__(self) -> None:
        self.content: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: dict[str, int] = {}  # path -> close the connection after this many bytes (once)
        self.ignore_range = False


class Handler(http.server.BaseHTTPRequestHandler):
    files: Files

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        files = self.server.files  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        files.requests.append((self.path, rng))
        data = files.content.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if rng and not files.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = files.cut_after.pop(self.path, None)
        self.wfile.write(body if cut is None else body[:cut])
        if cut is not None:
            self.close_connection = True


@pytest.fixture()
def server() -> Iterator[tuple[str, Files]]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files = Files()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.files  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


PAYLOAD = bytes(range(256)) * 40  # 10 KiB


# ---- fetch ----------------------------------------------------------------------------------------
def test_fetch_resumes_partial_file_with_range(server, tmp_path: Path) -> None:
    url, files = server
    files.content["/a.bin"] = PAYLOAD
    target = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:4000])
    fetch(f"{url}/a.bin", target, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert target.read_bytes() == PAYLOAD
    assert files.requests == [("/a.bin", "bytes=4000-")]
    assert not (tmp_path / "a.bin.part").exists()


def test_fetch_recovers_from_dropped_connection(server, tmp_path: Path) -> None:
    url, files = server
    files.content["/a.bin"] = PAYLOAD
    files.cut_after["/a.bin"] = 3000
    fetch(f"{url}/a.bin", tmp_path / "a.bin", backoff=0.0, timeout=5)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert files.requests == [("/a.bin", None), ("/a.bin", "bytes=3000-")]
    record = (tmp_path / "a.bin.sha256").read_text().split()
    assert record == [hashlib.sha256(PAYLOAD).hexdigest(), "a.bin"]


def test_fetch_restarts_when_server_ignores_range(server, tmp_path: Path) -> None:
    url, files = server
    files.content["/a.bin"] = PAYLOAD
    files.ignore_range = True
    (tmp_path / "a.bin.part").write_bytes(b"garbage that must not survive")
    fetch(f"{url}/a.bin", tmp_path / "a.bin")
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_fetch_already_complete_part_gets_416(server, tmp_path: Path) -> None:
    url, files = server
    files.content["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD)
    fetch(f"{url}/a.bin", tmp_path / "a.bin", backoff=0.0)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_fetch_checksum_and_size_mismatch(server, tmp_path: Path) -> None:
    url, files = server
    files.content["/a.bin"] = PAYLOAD
    with pytest.raises(DownloadError, match="sha256 .* does not match the expected 00ff"):
        fetch(f"{url}/a.bin", tmp_path / "a.bin", sha256="00ff" * 16)
    assert (tmp_path / "a.bin.bad").is_file() and not (tmp_path / "a.bin").exists()
    with pytest.raises(DownloadError, match="announces 10240 bytes, expected 99"):
        fetch(f"{url}/a.bin", tmp_path / "b.bin", size=99)
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{url}/nope.bin", tmp_path / "c.bin")


def test_fetch_detects_a_changed_file_against_recorded_sha256(server, tmp_path: Path) -> None:
    url, files = server
    files.content["/a.bin"] = PAYLOAD
    target = fetch(f"{url}/a.bin", tmp_path / "a.bin")
    fetch(f"{url}/a.bin", target)  # verified against the record, no new request
    assert len(files.requests) == 1
    target.write_bytes(PAYLOAD[:-1] + b"\x00")
    with pytest.raises(DownloadError, match="does not match"):
        fetch(f"{url}/a.bin", target)


# ---- extraction -----------------------------------------------------------------------------------
@needs_libarchive
def test_extract_rar_with_odd_names(tmp_path: Path) -> None:
    rar = tmp_path / "x.rar"
    rar.write_bytes(make_rar({f"jump/{HMDB_ODD}": b"video", "jump/b.avi": b"b"}))
    extract_archive(rar, tmp_path / "out")
    assert (tmp_path / "out" / "jump" / HMDB_ODD).read_bytes() == b"video"
    assert (tmp_path / "out" / ".extracted-x.rar").is_file()


@needs_libarchive
def test_extract_refuses_paths_outside_dest(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil.txt", b"x")
    (tmp_path / "bad.zip").write_bytes(buf.getvalue())
    with pytest.raises(DownloadError, match="outside the extraction folder"):
        extract_archive(tmp_path / "bad.zip", tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


@needs_libarchive
def test_extract_corrupt_archive_names_it(tmp_path: Path) -> None:
    (tmp_path / "broken.rar").write_bytes(b"Rar!\x1a\x07\x00" + b"\x01" * 50)
    with pytest.raises(DownloadError, match="broken.rar"):
        extract_archive(tmp_path / "broken.rar", tmp_path / "out")


# ---- whole datasets from a loopback "official site" ----------------------------------------------
def serve_hmdb51(files: Files) -> None:
    classes = {"brush_hair": ["a_brush_hair_0.avi", "b_brush_hair_1.avi"], "jump": [HMDB_ODD, "z_jump_1.avi"]}
    per_class = {f"{c}.rar": make_rar({f"{c}/{n}": n.encode() for n in names}) for c, names in classes.items()}
    files.content["/hmdb51_org.rar"] = make_rar(per_class)
    splits = {}
    for c, names in classes.items():
        for s in (1, 2, 3):
            splits[f"testTrainMulti_7030_splits/{c}_test_split{s}.txt"] = f"{names[0]} 1 \n{names[1]} 2 \n".encode()
    files.content["/test_train_splits.rar"] = make_rar(splits)


@pytest.mark.parametrize("backend", ["libarchive", "tool"])
def test_download_hmdb51_nested_rars(server, tmp_path: Path, backend: str) -> None:
    if backend == "libarchive" and not HAVE_LIBARCHIVE:
        pytest.skip("libarchive-c not available")
    if backend == "tool" and __import__("shutil").which("bsdtar") is None:
        pytest.skip("bsdtar (libarchive-tools) not on PATH")
    url, files = server
    serve_hmdb51(files)
    sources = [
        Source(f"{url}/hmdb51_org.rar", "hmdb51_org.rar"),
        Source(f"{url}/test_train_splits.rar", "test_train_splits.rar"),
    ]
    root = download_dataset("hmdb51", tmp_path, sources=sources, keep_archives=False, backend=backend)
    assert root == tmp_path / "hmdb51"
    assert (root / "jump" / HMDB_ODD).read_bytes() == HMDB_ODD.encode()
    assert not (root / ".hmdb51_org").exists() and not list((tmp_path / "archives/hmdb51").glob("*.rar"))
    m = build_manifest("hmdb51", root, expected_counts=False)
    assert len(m.videos) == 4 and m.split_counts(1) == {"train": 2, "test": 2, "unused": 0}
    n = len(files.requests)
    download_dataset("hmdb51", tmp_path, sources=sources, backend=backend)  # everything done: no request, no work
    assert len(files.requests) == n


@needs_libarchive
def test_download_ucf101_cli_with_mirror(server, tmp_path: Path) -> None:
    url, files = server
    files.content["/UCF101.rar"] = make_rar(
        {"UCF-101/YoYo/v_YoYo_g01_c01.avi": b"1", "UCF-101/YoYo/v_YoYo_g02_c01.avi": b"2"}
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ucfTrainTestlist/classInd.txt", "1 YoYo\n")
        z.writestr("ucfTrainTestlist/trainlist01.txt", "YoYo/v_YoYo_g02_c01.avi 1\n")
        z.writestr("ucfTrainTestlist/testlist01.txt", "YoYo/v_YoYo_g01_c01.avi\n")
    files.content["/UCF101TrainTestSplits-RecognitionTask.zip"] = buf.getvalue()
    runner = CliRunner()
    res = runner.invoke(download, ["ucf101", "--dest", str(tmp_path), "--mirror", url, "--no-verify"])
    assert res.exit_code == 0, res.output
    m = build_manifest("ucf101", tmp_path / "ucf101", expected_counts=False)
    assert [v.splits[1] for v in m.videos] == ["test", "train"]
    assert (tmp_path / "archives/ucf101/UCF101.rar.sha256").is_file()
    res = runner.invoke(download, ["ucf101", "--dest", str(tmp_path), "--mirror", url])  # strict check fails
    assert res.exit_code == 1 and "expected 13320" in res.output


@pytest.mark.skipif(__import__("shutil").which("bsdtar") is None, reason="bsdtar (libarchive-tools) not on PATH")
def test_extract_with_bsdtar_tool(tmp_path: Path) -> None:
    rar = tmp_path / "x.rar"
    rar.write_bytes(make_rar({f"jump/{HMDB_ODD}": b"video"}))
    extract_archive(rar, tmp_path / "out", backend="tool")
    assert (tmp_path / "out" / "jump" / HMDB_ODD).read_bytes() == b"video"


@needs_libarchive
def test_interrupted_hmdb51_extraction_resumes(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import csvr.data_manifests.download as dl

    url, files = server
    serve_hmdb51(files)
    real = dl.extract_archive

    def failing(archive, dest, **kw):
        if Path(archive).name == "jump.rar":
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the second class
        return real(archive, dest, **kw)

    monkeypatch.setattr(dl, "extract_archive", failing)
    with pytest.raises(KeyboardInterrupt):
        download_dataset("hmdb51", tmp_path, sources=dl.mirror_sources("hmdb51", url))
    assert (tmp_path / "hmdb51/brush_hair/a_brush_hair_0.avi").is_file()
    assert not (tmp_path / "hmdb51/jump").exists()
    monkeypatch.setattr(dl, "extract_archive", real)
    n = len(files.requests)
    root = download_dataset("hmdb51", tmp_path, sources=dl.mirror_sources("hmdb51", url))
    assert len(files.requests) == n  # archives were complete: nothing downloaded again
    assert (root / "jump" / HMDB_ODD).is_file() and not (root / ".hmdb51_org").exists()
    assert len(build_manifest("hmdb51", root, expected_counts=False).videos) == 4
    assert (tmp_path / "archives/hmdb51/hmdb51_org.rar").is_file()  # kept by default
