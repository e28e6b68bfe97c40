"""Training. Start with loop.py: the book's loop (model, loss, torch.optim.SGD, minibatches), what
`train.engine: autograd` runs. sgd.py holds what every path shares (the SGD recipe, the batch
order, early stopping, the per-epoch record); engine.py picks a path by `train.engine`; fast/ is
the default path, the same SGD computed faster; augment.py shifts training images; variant.py
trains a variant's seeds. The training and sweep stages depend on this folder; nothing else does."""
