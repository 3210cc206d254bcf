"""Benchmarks of the reliability core, each against a raw baseline measured in the same run."""
