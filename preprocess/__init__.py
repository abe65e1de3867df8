"""csvr stage: preprocess."""
