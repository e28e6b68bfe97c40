"""Training: the epoch loop and SGD steps (engine), the fused one-pass step for the MLPs (fused), K
models at once (batched), CUDA-graph epochs (graphs) and random-shift augmentation (augment).
The training and sweep stages depend on this folder; nothing else does."""
