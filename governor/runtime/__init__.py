"""The only package that imports torch: dynamic networks, training, the executor."""
