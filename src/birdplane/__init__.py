"""birdplane: birds vs airplanes (CIFAR-10), lecture 7 and its homework as a DVC + MLflow pipeline.

The library behind the stage scripts in pipeline/: config, data, download, stats, models, losses,
engine, fused, metrics, shift, report, tracking. Importing this package imports nothing heavy.
"""

__version__ = "0.1.0"
