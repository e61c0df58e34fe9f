"""The models the whole-model benchmarks run (bench_models.py)."""
