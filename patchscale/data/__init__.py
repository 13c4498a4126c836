"""Datasets: TFDS sources, the offline MNIST importer and the grain input pipeline."""
