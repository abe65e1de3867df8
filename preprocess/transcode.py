"""`csvr shards transcode SRC DST --codec C`: a complete store's frame images re-encoded in another format.

No video is decoded and no pose model runs: the poses, I-frame positions and the per-video table are copied
byte for byte, and only the two image arrays (`frames`, `iframes/images`) are rewritten, shard by shard, with
the new codec (`preprocess.store.frame_codecs`), their shard checksums and sizes recorded as the writer
records them. The destination is marked complete last, after it verifies, so an interrupted transcode leaves
a store every reader refuses; rerunning starts it again.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from csvr.preprocess import store as st
from csvr.preprocess.space import disk_usage
from csvr.preprocess.schema import StoreError, open_store

log = logging.getLogger(__name__)

IMAGE_ARRAYS = ("frames", "iframes/images")


def transcode_store(src: str | Path, dst: str | Path, codec: str, jpeg_quality: int = 90, *,
                    overwrite: bool = False, progress: bool = True) -> dict:
    """Write `dst`, a copy of the complete local store `src` whose image arrays use `codec`; returns a summary
    (bytes before and after). Raises StoreError naming the problem when `src` is not complete or `dst` exists."""
    import zarr

    from csvr.preprocess.verify import verify_store

    src, dst = Path(src), Path(dst)
    st.frame_codecs(codec, jpeg_quality)  # an unknown codec fails before anything is written
    source = open_store(src)  # complete and of this schema, else StoreError
    if dst.exists():
        if not overwrite:
            raise StoreError(f"{dst}: exists; pass --overwrite to replace it")
        shutil.rmtree(dst)
    skip = {src / name for name in IMAGE_ARRAYS}
    shutil.copytree(src, dst, ignore=lambda d, names: [n for n in names if Path(d) / n in skip])
    group = zarr.open_group(str(dst), mode="r+")
    group.attrs.update({"complete": False})  # until every image shard is written and the store verifies
    fs = st.FS(str(dst))
    for name in IMAGE_ARRAYS:
        _transcode_array(source[name], group, fs, name, codec, jpeg_quality, progress)
    options = dict(group.attrs["options"])
    options["codec"] = codec
    if codec == "jpeg":
        options["jpeg_quality"] = int(jpeg_quality)
    else:
        options.pop("jpeg_quality", None)
    group.attrs.update({"options": options, "transcoded_from": {"store": str(src), "codec": source.attrs["options"]
                                                                .get("codec", "none")}})
    problems = [p for p in verify_store(str(dst))[0] if p != "store is not marked complete"]  # it is not, yet
    if problems:
        raise StoreError(f"{dst}: the transcoded store does not verify: " + "; ".join(problems[:5]))
    group.attrs.update({"complete": True})
    before = sum(disk_usage(src / n) for n in IMAGE_ARRAYS)
    after = sum(disk_usage(dst / n) for n in IMAGE_ARRAYS)
    summary = {"src": str(src), "dst": str(dst), "codec": codec, "jpeg_quality": jpeg_quality if codec == "jpeg" else None,
               "image_bytes_before": before, "image_bytes_after": after, "store_bytes": disk_usage(dst)}
    log.info("%s -> %s: image arrays %.1f MB -> %.1f MB", src, dst, before / 1e6, after / 1e6)
    return summary


def _transcode_array(a, group, fs: st.FS, name: str, codec: str, jpeg_quality: int, progress: bool) -> None:
    """Create `name` in `group` with the source array's layout and the new codec, and copy it shard by shard."""
    from tqdm import tqdm

    rows = (a.shards or a.chunks)[0]
    new = group.create_array(name, shape=a.shape, dtype=a.dtype, chunks=a.chunks, shards=a.shards,
                             fill_value=a.fill_value, overwrite=True, **st.frame_codecs(codec, jpeg_quality))
    keep = {k: v for k, v in a.attrs.items() if k not in ("shard_sha256", "shard_bytes")}
    sums, sizes = {}, {}
    for k in tqdm(range(st.num_shards(a.shape[0], rows)), desc=f"transcode {name}", unit="shard",
                  disable=not progress or None, leave=False):
        lo, hi = k * rows, min(a.shape[0], (k + 1) * rows)
        sums[str(k)] = st.write_shard(group, fs, name, k, lo, a[lo:hi])
        sizes[str(k)] = fs.size(st.shard_key(name, k, new.ndim)) if sums[str(k)] != "absent" else 0
    new.attrs.update({**keep, "shard_sha256": sums, "shard_bytes": sizes})
