"""csvr stage: evaluate."""
