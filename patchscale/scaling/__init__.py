"""Compute accounting and scaling-law fits."""
