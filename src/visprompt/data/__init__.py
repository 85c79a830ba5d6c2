"""Datasets: the procedural mini world, the paper-profile loaders, and few-shot splits."""
