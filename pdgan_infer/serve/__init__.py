"""pdgan-serve: the bundled model on NVIDIA Triton Inference Server."""
