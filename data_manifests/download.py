"""`csvr download ucf101|hmdb51 --dest DIR`: fetch the official archives, resume, verify, extract.

Downloads go to `DEST/archives/<dataset>/` (partial files end in `.part` and are resumed with HTTP
Range requests), are checked against the size the server announced and a sha256 (a pinned value when
one is known, else the value recorded at the first complete download in `<archive>.sha256`), then are
extracted into `DEST/<dataset>/`, the root `csvr manifest` expects. RAR (and zip/tar) archives are
read with libarchive through the `libarchive-c` binding (libarchive is BSD-licensed, reads RAR 4 and
RAR 5, and is on Debian as `libarchive13`); when that binding is unavailable (or `--extractor tool`),
`unrar` (for .rar), `bsdtar` or `7z` on PATH is used. HMDB51's archive holds one RAR per class:
those are extracted in turn.
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import click

from csvr.contracts import sha256_file

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download or extraction failed (network, size, checksum or archive problem)."""


@dataclass(frozen=True)
class Source:
    """One file to fetch: URL, local name, and what it must be (None = not known in advance)."""

    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None


# The official sites publish no checksums; sizes and sha256 are therefore checked against the server's
# Content-Length and against the sha256 recorded at the first complete download (see module doc).
SOURCES: dict[str, list[Source]] = {
    "ucf101": [
        Source("https://www.crcv.ucf.edu/data/UCF101/UCF101.rar", "UCF101.rar"),
        Source(
            "https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip",
            "UCF101TrainTestSplits-RecognitionTask.zip",
        ),
    ],
    "hmdb51": [
        Source("http://serre-lab.clps.brown.edu/wp-content/uploads/2013/10/hmdb51_org.rar", "hmdb51_org.rar"),
        Source(
            "http://serre-lab.clps.brown.edu/wp-content/uploads/2013/10/test_train_splits.rar",
            "test_train_splits.rar",
        ),
    ],
}


# ---- download -------------------------------------------------------------------------------------
def _total_from_headers(status: int, headers, offset: int) -> int | None:
    """Full file size from Content-Range (206) or Content-Length (200), if the server said."""
    if status == 206:
        cr = headers.get("Content-Range", "")
        if "/" in cr and cr.rsplit("/", 1)[1].strip().isdigit():
            return int(cr.rsplit("/", 1)[1])
        length = headers.get("Content-Length")
        return offset + int(length) if length and length.isdigit() else None
    length = headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


class _Retryable(DownloadError):
    """A transient failure (connection dropped early): resume with another Range request."""


def _fetch_once(url: str, part: Path, offset: int, total: int | None, timeout: float) -> int | None:
    """One request from byte `offset` into `part`; returns the file's total size if known."""
    req = urllib.request.Request(url, headers={"User-Agent": "csvr-download/1"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        status = resp.status
        announced = _total_from_headers(status, resp.headers, offset)
        if status == 200 and offset:
            log.warning("%s ignored the Range request; downloading from the start", url)
            offset = 0
        elif status == 206:
            start = resp.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0].strip()
            if not start.isdigit() or int(start) != offset:
                raise DownloadError(f"{url}: asked for bytes from {offset}, server sent range {start!r}")
        if announced is not None:
            if total is not None and announced != total:
                raise DownloadError(f"{url}: server announces {announced} bytes, expected {total}")
            total = announced
        bar = _progress(total, offset, part.name.removesuffix(".part"))
        with open(part, "r+b" if offset else "wb") as f:
            f.seek(offset)
            f.truncate()
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                f.write(block)
                if bar is not None:
                    bar.update(len(block))
        if bar is not None:
            bar.close()
    done = part.stat().st_size
    if total is not None and done != total:
        raise _Retryable(f"connection closed at {done} of {total} bytes")
    return total


def _progress(total: int | None, initial: int, name: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name, disable=None, leave=False)


def fetch(
    url: str,
    path: str | Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = 5,
    timeout: float = 60.0,
    backoff: float = 2.0,
) -> Path:
    """Download `url` to `path`, resuming `path.part` with a Range request, and verify it.

    The size is checked against `size` and the server's announced total; the sha256 against `sha256`
    or, when that is None, against `path.sha256` if an earlier run recorded one (else it is recorded).
    An already complete `path` is only verified. Returns `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = path.with_name(path.name + ".sha256")
    if path.exists():
        _verify(path, sha256, size, record)
        log.info("%s already downloaded and verified", path)
        return path
    part = path.with_name(path.name + ".part")
    total: int | None = size
    attempt = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if total is not None and offset == total:
            break
        if total is not None and offset > total:
            log.warning("%s is longer than the file (%d > %d bytes); starting again", part, offset, total)
            part.unlink()
            offset = 0
        try:
            total = _fetch_once(url, part, offset, total, timeout)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # Range past the end: complete if the server says so
                cr = exc.headers.get("Content-Range", "") if exc.headers else ""
                if "/" in cr and cr.rsplit("/", 1)[1].strip() == str(offset):
                    total = offset
                    break
                part.unlink()
            elif 400 <= exc.code < 500:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            err: Exception = exc
        except (urllib.error.URLError, OSError, http.client.HTTPException, _Retryable) as exc:
            err = exc
        attempt += 1
        if attempt > retries:
            raise DownloadError(f"{url}: giving up after {retries} retries: {err}") from err
        wait = backoff * attempt
        log.warning("%s: %s; resuming in %.1f s (retry %d/%d)", path.name, err, wait, attempt, retries)
        time.sleep(wait)
    try:
        _verify(part, sha256, size if size is not None else total, record)
    except DownloadError:
        bad = part.with_name(path.name + ".bad")
        part.replace(bad)
        raise
    part.replace(path)
    return path


def _verify(path: Path, sha256: str | None, size: int | None, record: Path) -> None:
    """Check size and sha256 of `path`; record the sha256 when nothing is known yet."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise DownloadError(f"{path}: {actual_size} bytes, expected {size}")
    digest = sha256_file(path)
    expected, origin = sha256, "the pinned value"
    if expected is None and record.is_file():
        expected, origin = (
            record.read_text().split()[0],
            f"{record} (recorded by an earlier download; delete it if the file changed upstream)",
        )
    if expected is not None and digest.lower() != expected.lower():
        raise DownloadError(f"{path}: sha256 {digest} does not match the expected {expected} from {origin}")
    if expected is None:
        record.write_text(f"{digest}  {path.name.removesuffix('.part')}\n")
        log.info("%s: no published checksum; recorded sha256 %s in %s", record.name[:-7], digest, record)


# ---- extraction -----------------------------------------------------------------------------------
def _safe_target(dest: Path, name: str) -> Path | None:
    """dest/name if `name` is a relative path without '..'; None for names to skip."""
    name = name.replace("\\", "/")
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise DownloadError(f"archive entry {name!r} points outside the extraction folder")
    parts = [x for x in p.parts if x not in ("", ".")]
    return dest.joinpath(*parts) if parts else None


def _extract_libarchive(archive: Path, dest: Path) -> list[Path]:
    import libarchive  # libarchive-c

    written: list[Path] = []
    with libarchive.file_reader(str(archive)) as entries:
        for entry in entries:
            target = _safe_target(dest, entry.pathname)
            if target is None:
                continue
            if entry.isdir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            if not entry.isfile:
                log.warning("%s: skipping %s (not a regular file)", archive.name, entry.pathname)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as f:
                for block in entry.get_blocks():
                    f.write(block)
            if entry.mtime:
                os.utime(target, (entry.mtime, entry.mtime))
            written.append(target)
    return written


def _tool_command(archive: Path, dest: Path) -> list[str] | None:
    if archive.suffix.lower() == ".rar" and shutil.which("unrar"):  # RARLAB's reference extractor
        return ["unrar", "x", "-o+", "-idq", str(archive), str(dest) + os.sep]
    if shutil.which("bsdtar"):
        return ["bsdtar", "-xf", str(archive), "-C", str(dest)]
    for tool in ("7z", "7zz", "7za"):
        if shutil.which(tool):
            return [tool, "x", "-y", f"-o{dest}", str(archive)]
    return None


def _libarchive_available() -> bool:
    try:
        import libarchive  # noqa: F401
    except Exception:  # ImportError, or OSError/AttributeError when libarchive.so cannot be loaded
        return False
    return True


def extract_archive(archive: str | Path, dest: str | Path, *, backend: str = "auto") -> None:
    """Extract a RAR/zip/tar archive into `dest` (libarchive-c, else unrar/bsdtar/7z on PATH).

    A marker `dest/.extracted-<archive name>` is written at the end, so a completed extraction is
    skipped on the next run and an interrupted one is redone.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    marker = dest / f".extracted-{archive.name}"
    if marker.is_file():
        log.info("%s already extracted into %s", archive.name, dest)
        return
    if backend not in ("auto", "libarchive", "tool"):
        raise ValueError(f"backend must be auto, libarchive or tool, got {backend!r}")
    use_lib = backend == "libarchive" or (backend == "auto" and _libarchive_available())
    log.info("extracting %s into %s", archive, dest)
    if use_lib:
        try:
            _extract_libarchive(archive, dest)
        except DownloadError:
            raise
        except Exception as exc:  # libarchive.ArchiveError and OSError: name the archive
            raise DownloadError(f"cannot extract {archive}: {exc}") from exc
    else:
        cmd = _tool_command(archive, dest)
        if cmd is None:
            raise DownloadError(
                f"cannot extract {archive}: install the Python package libarchive-c (with the system "
                "libarchive, Debian: libarchive13), or put unrar, bsdtar (libarchive-tools) or 7z on PATH"
            )
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise DownloadError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    marker.write_text(f"{archive.name}\n")


# ---- the two datasets -----------------------------------------------------------------------------
def _extract_nested_rars(outer: Path, dest: Path, work: Path, *, backend: str = "auto") -> None:
    """Extract `outer` into `work`, then every RAR inside it into `dest` (HMDB51's per-class archives).

    Each inner RAR is deleted once extracted and `work` at the end: they are intermediate copies of
    data the outer archive still holds, and an interrupted run resumes with the ones left.
    """
    extract_archive(outer, work, backend=backend)
    inner = sorted(
        p for p in work.rglob("*") if p.is_file() and p.suffix.lower() == ".rar" and not p.name.startswith(".")
    )
    if not inner and not any(dest.glob(".extracted-*.rar")):
        raise DownloadError(f"{outer}: expected per-class .rar files inside, found none")
    for rar in inner:
        extract_archive(rar, dest, backend=backend)
        rar.unlink()
    shutil.rmtree(work)


def download_dataset(
    dataset: str,
    dest: str | Path,
    *,
    sources: list[Source] | None = None,
    extract: bool = True,
    keep_archives: bool = True,
    backend: str = "auto",
    fetcher: Callable[..., Path] = fetch,
) -> Path:
    """Fetch and extract `dataset` ("ucf101" | "hmdb51"); returns the dataset root `dest/<dataset>`.

    `sources` overrides the official list (a mirror, or a test server); archives stay in
    `dest/archives/<dataset>/` unless keep_archives=False (then they are deleted after extraction);
    `backend` picks the extractor (see extract_archive).
    """
    if dataset not in SOURCES:
        raise DownloadError(f"download supports {', '.join(SOURCES)}, not {dataset!r}")
    dest = Path(dest)
    srcs = sources if sources is not None else SOURCES[dataset]
    archive_dir = dest / "archives" / dataset
    root = dest / dataset
    todo = [s for s in srcs if not (extract and (root / f".extracted-{s.filename}").is_file())]
    for s in srcs:
        if s not in todo:
            log.info("%s already extracted into %s; skipping", s.filename, root)
    files = [fetcher(s.url, archive_dir / s.filename, sha256=s.sha256, size=s.size) for s in todo]
    if not extract:
        return root
    for f in files:
        if dataset == "hmdb51" and (f.name == "hmdb51_org.rar" or _holds_rars(f)):
            _extract_nested_rars(f, root, root / ".hmdb51_org", backend=backend)
            (root / f".extracted-{f.name}").write_text(f"{f.name}\n")
        else:
            extract_archive(f, root, backend=backend)
        if not keep_archives:
            f.unlink()
    return root


def _holds_rars(archive: Path) -> bool:
    """True when an archive's entries are themselves RAR files (HMDB51's video archive, any name)."""
    if not _libarchive_available():
        return False
    import libarchive

    with libarchive.file_reader(str(archive)) as entries:
        names = [e.pathname for e in entries if e.isfile]
    return bool(names) and all(n.lower().endswith(".rar") for n in names)


def mirror_sources(dataset: str, base_url: str) -> list[Source]:
    """The official file list with every URL replaced by `base_url/<filename>` (a local mirror)."""
    return [Source(f"{base_url.rstrip('/')}/{s.filename}", s.filename, s.sha256, s.size) for s in SOURCES[dataset]]


@click.command("download")
@click.argument("dataset", type=click.Choice(sorted(SOURCES)))
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data"),
    show_default=True,
    help="Archives go to DEST/archives/DATASET, the dataset to DEST/DATASET.",
)
@click.option("--mirror", default=None, help="Base URL of a mirror holding the same file names.")
@click.option("--no-extract", is_flag=True, help="Only download and verify the archives.")
@click.option("--delete-archives", is_flag=True, help="Delete the archives after a successful extraction.")
@click.option(
    "--extractor",
    type=click.Choice(["auto", "libarchive", "tool"]),
    default="auto",
    show_default=True,
    help="libarchive: the libarchive-c binding; tool: unrar (for .rar), bsdtar or 7z on PATH; "
    "auto: the binding when it loads, else a tool.",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Build the manifest afterwards and check the official counts.",
)
def download(
    dataset: str, dest: Path, mirror: str | None, no_extract: bool, delete_archives: bool, extractor: str, verify: bool
) -> None:
    """Download DATASET (ucf101 | hmdb51) from the official site, resuming, verifying and extracting it."""
    from csvr.data_manifests import ManifestError, build_manifest
    from csvr.data_manifests.cli import default_out, format_counts

    sources = mirror_sources(dataset, mirror) if mirror else None
    try:
        root = download_dataset(
            dataset, dest, sources=sources, extract=not no_extract, keep_archives=not delete_archives, backend=extractor
        )
    except DownloadError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{dataset}: archives in {dest / 'archives' / dataset}")
    if no_extract:
        return
    click.echo(f"{dataset}: extracted into {root}")
    if verify:
        try:
            m = build_manifest(dataset, root)
        except ManifestError as exc:
            raise click.ClickException(f"extracted, but the check failed: {exc}") from exc
        out = m.to_csv(default_out(dataset, root))
        click.echo(format_counts(m))
        click.echo(f"wrote {out}")
