"""Numerical kernels in pure JAX."""
