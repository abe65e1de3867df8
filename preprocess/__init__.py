"""Preprocessing (`csvr preprocess`, `csvr shards`): compressed videos to a verified, sharded Zarr v3 store."""
