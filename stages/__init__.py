"""One thin CLI module per dvc.yaml stage: ``python -m stages.<name>``."""
