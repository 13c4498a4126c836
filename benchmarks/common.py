"""Helpers shared by the benchmark scripts; they live in patchscale.bench, which `patchscale bench` uses too."""

from patchscale.bench import environment, memory, save, time_calls

__all__ = ["environment", "memory", "save", "time_calls"]
