"""The fusion engine: candidates with per-source evidence, the learned fusion model, the ranked recommendation list."""
