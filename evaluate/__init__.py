"""Evaluation (`csvr evaluate`, `csvr ablate`): recognition, retrieval, pretext metrics, reports and ablation tables."""
