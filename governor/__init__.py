"""dnn-governor: DVFS-aware runtime scheduler for dynamic DNN inference on embedded boards."""

__version__ = "0.1.0"
