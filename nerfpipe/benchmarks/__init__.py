"""Benchmarks: scripts that run real stages on real data and print their figures as JSON (``python -m nerfpipe.benchmarks.<name>``)."""
