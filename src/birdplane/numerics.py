"""Pinned numerics: the same bits on every x86-64 CPU with AVX2, Intel or AMD, at any thread count.

A float32 result depends on the order in which numbers are added. Left alone, that order depends on
the machine: MKL (PyTorch's BLAS) picks its kernels by CPU vendor and model, and on AMD it ignores
its own reproducibility switch (`MKL_CBWR=AVX2` falls back to automatic choice on non-Intel CPUs;
measured on an AMD EPYC: branch 2, AUTO); ATen's elementwise kernels and reductions pick AVX-512 or
AVX2 code by CPU; full reductions and the slow convolution split their sums by thread count. So:

- `pin()`, before numpy or torch is imported, sets
  - ATEN_CPU_CAPABILITY=avx2: every elementwise op, reduction, tanh, softmax and log-softmax runs
    ATen's AVX2 code (Sleef's AVX2 functions), the same instructions on every AVX2 CPU;
  - OPENBLAS_CORETYPE=Haswell: matrix products run numpy's OpenBLAS, whose kernels are chosen by
    this name and not by vendor; always with BLAS_THREADS threads (OpenBLAS' threaded products split
    their sums by thread count, so the count is fixed, whatever torch uses and however many CPUs the
    process may use);
  - MKL_CBWR=COMPATIBLE,STRICT and ONEDNN_MAX_CPU_ISA=AVX2: anything that still reaches MKL or
    oneDNN takes their vendor-neutral paths.
- `install()`, once torch is imported, routes torch's CPU matrix products (mm, addmm, bmm, baddbmm and
  their in-place forms: nn.Linear, autograd's backward, the fused step) and the convolution (forward
  and backward, as im2col plus products) to the kernels below, and turns oneDNN off. The bits of a
  product then depend on its shapes only.

Not pinned: ATen's full reductions of more than 32,768 elements (a sum to one number) split by
thread count. The pipeline has none (its largest, a loss over 10,000 images of 2 classes, is one
block); a selection of many classes with MSE over all 50,000 images would have one.

BIRDPLANE_NUMERICS=fast turns all of it off (the machine's fastest kernels; results then differ
between machines and thread counts, and say so in their provenance). Off x86-64 (Apple Silicon,
ARM Linux) nothing is pinned: those CPUs cannot give x86 bits. docs/reproducing.md has the details
and the measurements; `python -m birdplane.fingerprint` checks a machine.
"""

from __future__ import annotations

import os
import platform
import sys

from birdplane.errors import BirdplaneError

MODE_VARIABLE = "BIRDPLANE_NUMERICS"
PINNED, FAST, NATIVE = "pinned", "fast", "native"
# OpenBLAS splits a product's sums by its thread count, so the count is fixed, whatever torch uses:
# two threads, as on the 2-core machines this was built on (docs/performance.md, "Pinned
# numerics"). OpenBLAS starts no more threads than the CPUs the process may use, so install() sets
# the count again at run time (threadpoolctl), which it honours: on one CPU the two threads take
# turns.
BLAS_THREADS = 2
# set before numpy and torch load; each is read once, when its library starts
ENVIRONMENT = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_NUM_THREADS": str(BLAS_THREADS),
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
# Speed only, never the bits (a user's own values win): OpenBLAS' threads and torch's OpenMP threads
# both spin while they wait for work, and on 2 cores each pool's spinning starved the other: an
# epoch took about five times as long as with both told to sleep soon (docs/performance.md).
SPEED_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}


class NumericsError(BirdplaneError):
    """Pinned numerics were asked for but cannot hold in this process."""


def requested_mode() -> str:
    """pinned (the default on x86-64), fast (BIRDPLANE_NUMERICS=fast), or native (not x86-64)."""
    value = os.environ.get(MODE_VARIABLE, PINNED).strip().lower() or PINNED
    if value not in (PINNED, FAST):
        raise NumericsError(
            f"{MODE_VARIABLE}={value!r} is not a mode; use 'pinned' (default) or 'fast'"
        )
    if value == FAST:
        return FAST
    return PINNED if platform.machine().lower() in ("x86_64", "amd64") else NATIVE


def pin() -> str:
    """Set the environment for pinned numerics (a no-op in fast or native mode); returns the mode.

    Must run before numpy or torch is imported: their libraries read these variables when they load.
    """
    mode = requested_mode()
    if mode != PINNED:
        return mode
    loaded = [m for m in ("torch", "numpy") if m in sys.modules]
    wrong = {k: os.environ.get(k) for k, v in ENVIRONMENT.items() if os.environ.get(k) != v}
    if loaded and wrong:
        raise NumericsError(
            f"pinned numerics must be set before {' and '.join(loaded)} is imported "
            f"(call birdplane.numerics.pin() first; {', '.join(wrong)} not set)"
        )
    os.environ.update(ENVIRONMENT)
    for k, v in SPEED_ENVIRONMENT.items():
        os.environ.setdefault(k, v)
    return mode


_installed: str | None = None
_limits = None


def install() -> str:
    """pin(), then route torch's CPU products and convolutions through the pinned kernels (once per
    process); returns the mode. Raises NumericsError where the pinned libraries did not load."""
    global _installed
    if _installed is not None:
        return _installed
    mode = pin()
    if mode == PINNED:
        from threadpoolctl import threadpool_limits

        global _limits
        _limits = threadpool_limits(
            BLAS_THREADS, user_api="blas"
        )  # kept: the limit lasts while it lives
        _check_libraries()
        import torch

        torch.backends.mkldnn.enabled = False
        _register(torch)
    _installed = mode
    return mode


def _check_libraries() -> None:
    import torch
    from threadpoolctl import threadpool_info

    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX2":
        raise NumericsError(
            f"pinned numerics need AVX2, and ATen runs {capability} code here (a CPU without AVX2 "
            f"and FMA, or torch imported before birdplane.numerics.pin()); set "
            f"{MODE_VARIABLE}=fast to run anyway, without bit-exact results"
        )
    blas = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    if not blas or any(
        str(i.get("architecture")).lower() != "haswell" or i.get("num_threads") != BLAS_THREADS
        for i in blas
    ):
        found = (
            ", ".join(
                f"{i.get('filepath')}: {i.get('architecture')}, {i.get('num_threads')} threads"
                for i in blas
            )
            or "none"
        )
        raise NumericsError(
            f"pinned numerics need numpy's OpenBLAS with the Haswell kernels and {BLAS_THREADS} "
            f"threads, found {found} "
            f"(numpy imported before birdplane.numerics.pin()?)"
        )


def gemm(a, b, out) -> None:
    """out = a @ b for 2-D CPU tensors (out contiguous, not overlapping a or b) through OpenBLAS with
    BLAS_THREADS threads: the same bits for the same shapes on every machine and torch thread count."""
    import numpy as np

    np.matmul(_array(a), _array(b), out=out.numpy())


def _array(t):
    """A numpy view of t that OpenBLAS takes as it is (row- or column-major), else a copy."""
    t = t.detach()
    s, n = t.stride(), t.shape
    if not (s[-1] == 1 or n[-1] == 1) and not (s[-2] == 1 or n[-2] == 1):
        t = t.contiguous()
    return t.numpy()


def _check(*tensors) -> None:
    import torch

    for t in tensors:
        if t.dtype not in (torch.float32, torch.float64) or t.dtype != tensors[0].dtype:
            raise NumericsError(
                f"pinned numerics implement float32 and float64 products only, got "
                f"{', '.join(str(x.dtype) for x in tensors)} (set {MODE_VARIABLE}=fast for others)"
            )


def _mm(a, b):
    import torch

    _check(a, b)
    out = torch.empty(a.shape[0], b.shape[1], dtype=a.dtype)
    if a.shape[1] == 0:
        return out.zero_()
    gemm(a, b, out)
    return out


def _bmm(a, b):
    import numpy as np
    import torch

    _check(a, b)
    out = torch.empty(a.shape[0], a.shape[1], b.shape[2], dtype=a.dtype)
    if a.shape[2] == 0:
        return out.zero_()
    np.matmul(_array(a), _array(b), out=out.numpy())  # one OpenBLAS product per matrix, as gemm's
    return out


def _mv(mat, vec):
    return _mm(mat, vec.unsqueeze(1)).squeeze(1)


def _addmv(self, mat, vec, *, beta=1, alpha=1):
    return _combine(_mv(mat, vec), self, beta, alpha)


def _dot(a, b):
    return _mm(a.unsqueeze(0), b.unsqueeze(1)).reshape(())


def _combine(product, self, beta, alpha):
    """beta * self + alpha * product, in place in product (BLAS's convention: beta == 0 ignores self)."""
    if alpha == 0:
        product.zero_()  # BLAS's convention too: the product is not read (NaN or not)
    elif alpha != 1:
        product.mul_(alpha)
    if beta != 0:
        product.add_(self, alpha=beta)
    return product


def _combine_into(self, product, beta, alpha):
    """_combine's bits, written into self (the in-place forms: the fused SGD step's weights). With
    beta == 1 the sum goes straight into self, one pass over the weights fewer than a copy of the
    result (a + b and b + a are the same float); otherwise (and for a self that torch's in-place
    product would refuse or round through another dtype) _combine, then a copy."""
    if beta != 1 or self.shape != product.shape or self.dtype != product.dtype:
        return self.copy_(_combine(product, self, beta, alpha))
    if alpha == 0:
        product.zero_()  # as _combine: +0 added, so -0.0 in self becomes +0.0 there too
    elif alpha != 1:
        product.mul_(alpha)
    return self.add_(product)


def _addmm(self, mat1, mat2, *, beta=1, alpha=1):
    return _combine(_mm(mat1, mat2), self, beta, alpha)


def _addmm_(self, mat1, mat2, *, beta=1, alpha=1):
    return _combine_into(self, _mm(mat1, mat2), beta, alpha)


def _baddbmm(self, batch1, batch2, *, beta=1, alpha=1):
    return _combine(_bmm(batch1, batch2), self, beta, alpha)


def _baddbmm_(self, batch1, batch2, *, beta=1, alpha=1):
    return _combine_into(self, _bmm(batch1, batch2), beta, alpha)


def _out(fn):
    def kernel(*args, out, **kwargs):
        result = fn(*args, **kwargs)
        out.resize_(result.shape)
        return out.copy_(result)

    return kernel


def _conv_args(stride, padding, dilation, transposed, groups):
    if transposed or groups != 1 or any(d != 1 for d in dilation) or len(stride) != 2:
        raise NumericsError(
            "pinned numerics implement plain 2-D convolutions only (no groups, dilation or "
            f"transposed convolutions); set {MODE_VARIABLE}=fast for others"
        )
    return list(stride), list(padding)


def _columns(x, kernel, stride, padding):
    """im2col, channels-last: one row per output position (N * out_h * out_w rows) holding its input
    window in (kh, kw, C) order, each pixel's channels side by side (so the copy moves whole pixels,
    and channels-last weights need no copy); and the output's (out_h, out_w). The rows live in this
    process's column workspace (_workspace): use them before the next call."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    xp = x.new_zeros(n, h + 2 * ph, w + 2 * pw, c)  # N x H+2ph x W+2pw x C, the border zero
    xp[:, ph : ph + h, pw : pw + w, :] = x.permute(0, 2, 3, 1)
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    s_n, s_h, s_w, _ = xp.stride()
    windows = xp.as_strided((n, oh, ow, kh, kw, c), (s_n, s_h * sh, s_w * sw, s_h, s_w, 1))
    rows = _workspace(n * oh * ow * kh * kw * c, x.dtype).view(n, oh, ow, kh, kw, c)
    rows.copy_(windows)
    return rows.view(n * oh * ow, kh * kw * c), (oh, ow)


_columns_memory = None


def _workspace(numel, dtype):
    """numel elements of memory for _columns, the same each call while it is large enough (and of
    the same dtype). The columns of a 256-image chunk of the convnet's second layer are 38 MB, over
    glibc's 32 MB ceiling for reusing freed memory (process.keep_freed_memory), so a fresh tensor for
    each came from the kernel as zeroed pages: 9.3 million page faults and 21 s of system time in the
    convnet's shift test (docs/performance.md). One buffer per process: convolutions run on one
    thread at a time here (no DataLoader threads; CPU autograd runs on the calling thread)."""
    global _columns_memory
    import torch

    if _columns_memory is None or _columns_memory.dtype != dtype or _columns_memory.numel() < numel:
        _columns_memory = None  # the old one freed before the new one is taken
        _columns_memory = torch.empty(numel, dtype=dtype, device="cpu")
    return _columns_memory[:numel]


def _weight_rows(weight):
    """The weights as out_channels x (kh * kw * C), the order of _columns (a view for channels-last weights)."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def _convolution(
    input, weight, bias, stride, padding, dilation, transposed, output_padding, groups
):
    stride, padding = _conv_args(stride, padding, dilation, transposed, groups)
    n, o = input.shape[0], weight.shape[0]
    rows, (oh, ow) = _columns(input, tuple(weight.shape[2:]), stride, padding)
    out = _mm(rows, _weight_rows(weight).t())  # (N*L) x O: channels-last
    if bias is not None:
        out.add_(bias)
    return out.view(n, oh, ow, o).permute(0, 3, 1, 2)


def _convolution_backward(
    grad_output,
    input,
    weight,
    bias_sizes,
    stride,
    padding,
    dilation,
    transposed,
    output_padding,
    groups,
    output_mask,
):
    import torch

    (sh, sw), (ph, pw) = _conv_args(stride, padding, dilation, transposed, groups)
    n, c, h, w = input.shape
    o, kh, kw = weight.shape[0], weight.shape[2], weight.shape[3]
    oh, ow = grad_output.shape[2:]
    go = grad_output.permute(0, 2, 3, 1).reshape(-1, o)  # (N*L) x O
    grad_input = grad_weight = grad_bias = None
    if output_mask[0]:
        cols = _mm(go, _weight_rows(weight)).view(n, oh, ow, kh, kw, c)
        # col2im: each kernel offset's contribution added in turn, a fixed order at any thread count
        padded = torch.zeros(n, h + 2 * ph, w + 2 * pw, c, dtype=cols.dtype)
        for i in range(kh):
            for j in range(kw):
                padded[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw, :] += (
                    cols[:, :, :, i, j, :]
                )
        grad_input = padded[:, ph : ph + h, pw : pw + w, :].permute(0, 3, 1, 2)
    if output_mask[1]:
        rows, _ = _columns(input, (kh, kw), (sh, sw), (ph, pw))
        grad_weight = _mm(go.t(), rows).view(o, kh, kw, c).permute(0, 3, 1, 2)
    if output_mask[2]:
        # a sum over every position as a product with ones: ATen's reduction would split it by thread count
        grad_bias = _mm(torch.ones(1, go.shape[0], dtype=go.dtype), go).view(o)
    return grad_input, grad_weight, grad_bias


_library = None


def _register(torch) -> None:
    global _library
    import warnings

    lib = torch.library.Library("aten", "IMPL")
    kernels = {
        "mm": _mm,
        "mm.out": _out(_mm),
        "bmm": _bmm,
        "bmm.out": _out(_bmm),
        "addmm": _addmm,
        "addmm_": _addmm_,
        "addmm.out": _out(_addmm),
        "baddbmm": _baddbmm,
        "baddbmm_": _baddbmm_,
        "baddbmm.out": _out(_baddbmm),
        "mv": _mv,
        "addmv": _addmv,
        "dot": _dot,
        "convolution": _convolution,
        "convolution_backward": _convolution_backward,
    }
    with warnings.catch_warnings():
        # "Overriding a previously registered kernel": that is the point
        warnings.simplefilter("ignore", UserWarning)
        for name, fn in kernels.items():
            lib.impl(name, fn, "CPU")
    _library = lib  # registrations last as long as the Library object


def mode() -> str:
    """This process's mode: the one install() set, else the one it would set (requested_mode)."""
    return _installed or requested_mode()


def describe() -> dict[str, object]:
    """What decides the bits in this process, for provenance (logs/, never a stage's dependency)."""
    info: dict[str, object] = {
        "mode": mode(),
        "machine": platform.machine(),
    }
    if info["mode"] == PINNED:
        info["environment"] = {k: os.environ.get(k) for k in ENVIRONMENT}
    return info
