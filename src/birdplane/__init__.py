"""birdplane: birds vs airplanes (CIFAR-10), lecture 7 and its homework as a DVC + MLflow pipeline.

The library behind the stage scripts in pipeline/. Stages depend on what they use:
config (typed params), data (archives, the prepared data, normalization), stats, download,
losses and activations (one registry each), models, inference (predictions and final metrics),
train/ (the engine, fused and batched SGD, CUDA graphs, augmentation), shift (the shift test),
metrics, summary (mean ± std, the small-net rule), report/ (findings, document, catalogs,
figures). Around them: cli (arguments), process (signals, heap, error lines), io (all-or-nothing
outputs), tracking and serving (MLflow), provenance, reproduce. Importing this package imports
nothing heavy.
"""

__version__ = "0.1.0"
