"""Offline evaluation, baselines, benchmarks and the prompt lab."""
