"""Pinned numerics (birdplane.numerics): set before the libraries load, refused where they cannot
hold, and the pinned kernels compute the products and convolutions torch would, to float tolerance.
That they give the same bits at every thread count and on every machine is tests/test_fingerprint.py."""

import os
import platform
import subprocess
import sys

import pytest
import torch

from birdplane import numerics

X86 = platform.machine().lower() in ("x86_64", "amd64")
pinned = pytest.mark.skipif(
    not X86 or numerics.requested_mode() != numerics.PINNED,
    reason="pinned numerics are for x86-64 (BIRDPLANE_NUMERICS=fast or another CPU here)",
)


def python(code: str, **env_changes) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in numerics.ENVIRONMENT and k != numerics.MODE_VARIABLE
    }
    env.update(env_changes)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


@pinned
def test_pin_after_numpy_is_refused_with_the_fix():
    r = python("import numpy\nfrom birdplane import numerics\nnumerics.pin()")
    assert r.returncode != 0
    assert (
        "must be set before numpy is imported" in r.stderr
        and "birdplane.numerics.pin() first" in r.stderr
    )


@pinned
def test_a_stage_pins_before_its_libraries_load(tmp_path):
    r = python(
        "from birdplane import numerics\nnumerics.install()\nimport torch, json\n"
        "print(json.dumps([torch.backends.cpu.get_cpu_capability(), torch.backends.mkldnn.enabled,"
        " numerics.describe()]))"
    )
    assert r.returncode == 0, r.stderr
    capability, mkldnn, described = __import__("json").loads(r.stdout)
    assert capability == "AVX2" and mkldnn is False
    assert (
        described["mode"] == "pinned" and described["environment"]["OPENBLAS_CORETYPE"] == "Haswell"
    )


def test_fast_mode_and_a_typo():
    r = python(
        "from birdplane import numerics\nprint(numerics.install())\nimport torch\n"
        "print(torch.backends.mkldnn.enabled, numerics.describe()['mode'])",
        BIRDPLANE_NUMERICS="fast",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["fast", "True", "fast"]
    r = python("from birdplane import numerics\nnumerics.pin()", BIRDPLANE_NUMERICS="fsat")
    assert r.returncode != 0 and "BIRDPLANE_NUMERICS='fsat' is not a mode" in r.stderr


@pinned
def test_pinned_products_compute_what_torch_computes():
    numerics.install()
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(70, 300, generator=g), torch.randn(300, 40, generator=g)
    c = torch.randn(70, 40, generator=g)
    ref = a.double() @ b.double()
    assert torch.allclose(a @ b, ref.float(), atol=1e-4)
    assert torch.allclose(
        a.t().contiguous().t() @ b, ref.float(), atol=1e-4
    )  # a column-major operand
    assert torch.allclose(
        torch.addmm(c, a, b, beta=0.5, alpha=-2), (0.5 * c.double() - 2 * ref).float(), atol=1e-3
    )
    w = c.clone()
    w.addmm_(a, b, alpha=0.1)
    assert torch.allclose(w, (c.double() + 0.1 * ref).float(), atol=1e-4)
    k = torch.randn(3, 5, 7, generator=g), torch.randn(3, 7, 2, generator=g)
    assert torch.allclose(
        torch.bmm(*k), torch.einsum("kij,kjl->kil", k[0].double(), k[1].double()).float(), atol=1e-5
    )
    bias = torch.randn(3, 5, 1, generator=g)
    assert torch.allclose(
        torch.baddbmm(bias, *k), (bias.double() + k[0].double() @ k[1].double()).float(), atol=1e-5
    )
    nan = torch.full((70, 40), float("nan"))
    assert torch.allclose(
        torch.addmm(nan, a, b, beta=0), ref.float(), atol=1e-4
    )  # beta 0: self not read
    assert torch.equal(
        torch.addmm(c, nan[:, :1].expand(70, 300), b, alpha=0), c
    )  # alpha 0: product not read
    out = torch.empty(0)
    torch.mm(a, b, out=out)
    assert out.shape == (70, 40) and torch.allclose(out, ref.float(), atol=1e-4)
    q = bias.clone()
    q = q.expand(3, 5, 2).contiguous()
    q.baddbmm_(*k, alpha=2)
    assert torch.allclose(
        q, (bias.double() + 2 * (k[0].double() @ k[1].double())).float(), atol=1e-5
    )
    v = torch.randn(300, generator=g)
    assert torch.allclose(a @ v, (a.double() @ v.double()).float(), atol=1e-4)
    assert torch.allclose(v @ v, (v.double() @ v.double()).float(), atol=1e-3)
    with pytest.raises(numerics.NumericsError, match="float32 and float64 products only"):
        torch.ones(2, 2, dtype=torch.int64) @ torch.ones(2, 2, dtype=torch.int64)


@pinned
@pytest.mark.parametrize("beta, alpha", [(1, -0.01), (1, 1), (1, 0), (0.98, -0.01)])
def test_in_place_products_are_the_bits_of_the_plain_ones(beta, alpha):
    """addmm_ and baddbmm_ (the fused SGD step's weight updates) add into the weights without a
    copy where they can: the same bits as addmm and baddbmm, -0.0 and all, for a transposed self
    and for a self that is also an operand; a self torch would refuse is still refused."""
    numerics.install()
    g = torch.Generator().manual_seed(2)
    w = torch.randn(3, 40, 70, generator=g)
    a, b = torch.randn(3, 40, 9, generator=g), torch.randn(3, 9, 70, generator=g)
    w[0, 0, :3] = -0.0
    expected = torch.baddbmm(w, a, b, beta=beta, alpha=alpha)
    got = w.clone().baddbmm_(a, b, beta=beta, alpha=alpha)
    assert torch.equal(got, expected) and torch.equal(got.signbit(), expected.signbit())
    expected = torch.addmm(w[0], a[0], b[0], beta=beta, alpha=alpha)
    got = w[0].clone().addmm_(a[0], b[0], beta=beta, alpha=alpha)
    assert torch.equal(got, expected) and torch.equal(got.signbit(), expected.signbit())
    square = torch.randn(40, 40, generator=g)
    wt = square.t().contiguous().t()  # a column-major self
    assert torch.equal(
        wt.clone().addmm_(a[0], a[0].t(), beta=beta, alpha=alpha),
        torch.addmm(wt, a[0], a[0].t(), beta=beta, alpha=alpha),
    )
    itself = square.clone()  # self as the first operand: the product is taken before self changes
    assert torch.equal(
        itself.addmm_(itself, square, beta=beta, alpha=alpha),
        torch.addmm(square, square, square, beta=beta, alpha=alpha),
    )
    with pytest.raises(RuntimeError):
        torch.zeros(3, 40, 70).baddbmm_(a[:1], b[:1], beta=beta, alpha=alpha)  # no broadcast


@pinned
@pytest.mark.parametrize(
    "kernel, stride, padding",
    [(3, 1, 1), (3, 1, 0), (3, 2, 1), ((2, 3), (2, 1), (0, 1))],
    ids=["3x3-pad1", "3x3-pad0", "stride2", "2x3-stride2x1-pad0x1"],
)
def test_pinned_convolution_and_its_gradients(kernel, stride, padding):
    numerics.install()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 9, 8, generator=g, requires_grad=True)
    conv = torch.nn.Conv2d(3, 5, kernel, stride=stride, padding=padding)
    out = conv(x)
    out.pow(2).sum().backward()
    # the same convolution in float64 as unfold + einsum, differentiated by autograd
    x64 = x.detach().double().requires_grad_()
    w64, b64 = (
        conv.weight.detach().double().requires_grad_(),
        conv.bias.detach().double().requires_grad_(),
    )
    cols = torch.nn.functional.unfold(
        x64, conv.kernel_size, padding=conv.padding, stride=conv.stride
    )
    ref = (torch.einsum("ok,nkl->nol", w64.reshape(5, -1), cols) + b64[:, None]).reshape(out.shape)
    ref.pow(2).sum().backward()
    assert torch.allclose(out.double(), ref, atol=1e-4)
    assert torch.allclose(x.grad.double(), x64.grad, atol=1e-3)
    assert torch.allclose(conv.weight.grad.double(), w64.grad, rtol=1e-4, atol=1e-3)
    assert torch.allclose(conv.bias.grad.double(), b64.grad, rtol=1e-4, atol=1e-3)


@pinned
def test_convolutions_the_pinned_kernels_do_not_implement_are_refused():
    numerics.install()
    with pytest.raises(numerics.NumericsError, match="plain 2-D convolutions only"):
        torch.nn.Conv2d(4, 4, 3, groups=2)(torch.randn(1, 4, 8, 8))


@pinned
def test_convolutions_share_column_memory_without_sharing_results():
    # im2col's columns live in one workspace (numerics._workspace): a later convolution, with more
    # columns or float64 ones, must leave an earlier output as it was and get its own result
    numerics.install()
    g = torch.Generator().manual_seed(2)
    conv, other = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(3, 6, 3, padding=1)
    x, bigger = torch.randn(2, 3, 8, 8, generator=g), torch.randn(8, 3, 16, 16, generator=g)
    with torch.no_grad():
        first = conv(x)
        kept = first.clone()
        alone = other(bigger).clone()
        other.double()(bigger.double())
        assert torch.equal(first, kept)
        assert torch.equal(conv(x), kept)
        assert torch.equal(other.float()(bigger), alone)


FAULTS = """
import resource
from birdplane import numerics, process
numerics.install()
process.keep_freed_memory()
import torch

def faults(work):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        work()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

# the convnet's second layer on a 256-image chunk (the shift test's): 38 MB of columns, over
# glibc's 32 MB ceiling for keeping freed blocks
conv, x = torch.nn.Conv2d(16, 8, 3, padding=1), torch.randn(256, 16, 16, 16)
with torch.no_grad():
    conv(x)
    print(faults(lambda: conv(x)), faults(lambda: torch.empty(256 * 256 * 144).fill_(1.0)))
"""


@pinned
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="getrusage's page faults")
def test_large_convolutions_reuse_their_column_memory():
    # without the workspace every call took its 38 MB of columns fresh from the kernel: zeroed
    # pages, 9.3 million faults and 21 s of system time in the convnet's shift test
    r = python(FAULTS)
    assert r.returncode == 0, r.stderr
    convolutions, fresh = map(int, r.stdout.split())
    if fresh < 2_000:
        pytest.skip(f"a fresh 38 MB block cost only {fresh} page faults here: nothing to measure")
    assert convolutions < fresh / 4, (convolutions, fresh)
