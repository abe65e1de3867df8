"""csvr stage: train."""
