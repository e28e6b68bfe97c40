"""A whole training epoch captured once as a CUDA graph and replayed.

On a GPU the lecture's MLP is far too small to keep the device busy: launching a dozen kernels per
minibatch from Python costs more than running them. An epoch has fixed shapes (the data set, the
batch size and hence the short last batch never change), so its ~1,900 kernels are recorded once
and replayed with one call; only the permutation changes, copied into the graph's input buffer.

The captured code is the ordinary epoch body (fast.epochs.train_epoch with the fused step), the same
Python that runs and is tested on CPU; this module adds only the capture.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

import torch

T = TypeVar("T")


class GraphedEpoch(Generic[T]):
    """(inputs) -> body(inputs), replayed from a CUDA graph captured at construction.

    `inputs` are the epoch's changing tensors (the permutation, the augmentation shifts): the graph
    reads them from static buffers, initialised from the given tensors (zeros are valid indices).
    `warmup` (default: `inputs`) are shorter ones of the same kind for the one eager run before the
    capture, which must only meet every operation and shape once (cuBLAS handles, workspaces): a
    whole eager epoch there made the first graph epoch about three times slower (docs/performance.md).
    """

    def __init__(
        self,
        body: Callable[..., T],
        params: list[torch.Tensor],
        inputs: list[torch.Tensor],
        warmup: list[torch.Tensor] | None = None,
    ):
        device = inputs[0].device
        if device.type != "cuda":
            raise ValueError("a CUDA graph needs a CUDA device")
        self.inputs = [t.clone() for t in inputs]
        # Warm-up outside the graph (cuBLAS handles, workspaces, the allocator) trains on the
        # warm-up inputs; the weights are put back afterwards, so the graph starts from the untouched model.
        saved = [p.detach().clone() for p in params]
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            body(*(self.inputs if warmup is None else warmup))
        torch.cuda.current_stream(device).wait_stream(side)
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = body(*self.inputs)

    def __call__(self, *inputs: torch.Tensor) -> T:
        for buffer, t in zip(self.inputs, inputs):
            buffer.copy_(t)
        self.graph.replay()
        return self.out
