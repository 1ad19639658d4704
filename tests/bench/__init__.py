"""Benchmark suite checks: every scenario runs and reports (no timed assertions)."""
