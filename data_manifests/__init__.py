"""csvr stage: data_manifests."""
