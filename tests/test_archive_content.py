"""Archives that pass the checksum: their content is the only defence (issue 16, point 5).

Bombs are real gzip'ed tars written with a file object that yields zeros, so a 1 GB member costs
the test 4.7 MB on disk and about 1.5 s, and never 1 GB of memory. Whether reading them stays
small is measured in a fresh process (its peak resident memory, VmHWM), as a stage would run.
"""

import io
import json
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from birdplane.data import (
    MAX_MEMBER_BYTES,
    MAX_MEMBERS,
    TEST_BATCH,
    TRAIN_BATCHES,
    ArchiveError,
    Split,
    check_selection,
    load_cifar10,
    read_members,
)
from birdplane.stats import StatsError, channel_stats
from cifar_fixture import make_archive, py2_pickle
from conftest import dvc, files_under, make_project, project_env

GB = 1 << 30
WANTED = TRAIN_BATCHES + (TEST_BATCH,)


class _Zeros(io.RawIOBase):
    def __init__(self, n: int):
        self.left = n

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


def zeros_archive(path, entries):
    """A tar.gz of (name, size, tar type) entries full of zeros, streamed: nothing is held in memory."""
    with tarfile.open(path, "w:gz", compresslevel=1, format=tarfile.USTAR_FORMAT) as tar:
        for name, size, kind in entries:
            info = tarfile.TarInfo(name)
            info.size, info.type = size, kind
            tar.addfile(info, io.BufferedReader(_Zeros(size), 1 << 20))
    return path


READ_AND_MEASURE = """
import json, sys, time
from pathlib import Path
from birdplane.data import ArchiveError, read_members, TRAIN_BATCHES, TEST_BATCH
t = time.perf_counter()
try:
    read_members(Path(sys.argv[1]), TRAIN_BATCHES + (TEST_BATCH,), name="https://example.org/c.tar.gz")
    error = None
except ArchiveError as e:
    error = str(e)
seconds = time.perf_counter() - t
# VmHWM: this process's own peak. ru_maxrss would also count the parent's memory at the fork
# (Linux keeps it across exec), i.e. the test runner's torch.
try:
    with open("/proc/self/status") as f:
        peak_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
except OSError:  # macOS: ru_maxrss in bytes; Windows: no resource module, no figure
    try:
        import resource
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
    except ImportError:
        peak_kb = 0
print(json.dumps({"error": error, "seconds": seconds, "max_rss_mb": peak_kb / 1024}))
"""


def measure(path):
    out = subprocess.run(
        [sys.executable, "-c", READ_AND_MEASURE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return json.loads(out)


@pytest.mark.parametrize(
    "name, kind, expect",
    [
        # the case: a 5 MB download whose batch member unpacks to 1 GB
        (
            "cifar-10-batches-py/data_batch_1",
            tarfile.REGTYPE,
            "'cifar-10-batches-py/data_batch_1' is 1,073,741,824 bytes",
        ),
        # a member the loop skips: skipping would decompress all of it
        (
            "cifar-10-batches-py/readme.html",
            tarfile.REGTYPE,
            "'cifar-10-batches-py/readme.html' is 1,073,741,824 bytes",
        ),
        # headers tarfile itself reads whole, before any member is yielded
        ("././@PaxHeader", tarfile.XHDTYPE, "a tar entry needs a read of 1073741824 bytes"),
        ("././@LongLink", tarfile.GNUTYPE_LONGNAME, "a tar entry needs a read of 1073741824 bytes"),
    ],
    ids=["batch", "skipped-member", "pax-header", "gnu-longname"],
)
def test_gigabyte_member_is_refused_from_its_header(tmp_path, name, kind, expect):
    path = zeros_archive(tmp_path / "bomb.tar.gz", [(name, GB, kind)])
    assert path.stat().st_size < 6_000_000
    got = measure(path)
    assert got["error"] and expect in got["error"], got
    assert got["error"].startswith("https://example.org/c.tar.gz: ") and "bomb" not in got["error"]
    assert got["max_rss_mb"] < 200, (
        got
    )  # a Python with numpy: about 35 MB; before the fix, 1,062 MB
    assert got["seconds"] < 1, got  # refused from the header: nothing decompressed


def test_total_unpacked_size_is_bounded(tmp_path):
    """Members each under the cap, never wanted, together more than a whole archive can unpack to."""
    n = 7
    path = zeros_archive(
        tmp_path / "wide.tar.gz",
        [
            (f"cifar-10-batches-py/extra_{i}", MAX_MEMBER_BYTES - 4096, tarfile.REGTYPE)
            for i in range(n)
        ],
    )
    got = measure(path)
    assert got["error"] and "unpacks to more than 256 MiB" in got["error"], got
    assert got["max_rss_mb"] < 200 and got["seconds"] < 5, got


def test_member_count_is_bounded(tmp_path):
    extra = []
    for i in range(MAX_MEMBERS + 1):
        info = tarfile.TarInfo(f"cifar-10-batches-py/x{i}")
        info.size = 1
        extra.append(info)
    path, _ = make_archive(tmp_path / "c.tar.gz", extra_members=extra)
    with pytest.raises(ArchiveError, match=f"more than {MAX_MEMBERS} members"):
        read_members(path, WANTED)


class _View:
    """numpy.ndarray called from the pickle: an array of `n` images over a few bytes (zero strides),
    or of uninitialized memory; both pass the dtype and shape checks."""

    def __init__(self, n: int, strided: bool):
        self.n, self.strided = n, strided

    def __reduce__(self):
        if self.strided:
            return np.ndarray, ((self.n, 3072), np.dtype("u1"), b"\0" * 3072, 0, (0, 1))
        return np.ndarray, ((self.n, 3072), np.dtype("u1"))


@pytest.mark.parametrize("strided", [True, False], ids=["zero-strides", "uninitialized"])
def test_array_larger_than_its_pickle_is_refused(tmp_path, strided):
    n = 100_000  # 307 MB of pixels declared in a pickle of 200 KB; the first copy would allocate them
    payload = pickle.dumps({"data": _View(n, strided), "labels": [0] * n}, protocol=4)
    assert len(payload) < 300_000
    path, _ = make_archive(tmp_path / "c.tar.gz", batch_overrides={"data_batch_2": payload})
    with pytest.raises(
        ArchiveError, match=rf"{path}: member data_batch_2: 'data' claims 100,000 images"
    ):
        load_cifar10(path)


def test_flipped_byte_is_reported_as_corruption(tmp_path):
    """A flipped bit in the deflate stream can end the tar walk early without an error; the gzip
    CRC-32 then says what happened, instead of 'lacks data_batch_5: not the CIFAR-10 archive'."""
    path, _ = make_archive(tmp_path / "c.tar.gz", per_class_train=16, per_class_test=8)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="not a readable tar.gz .*truncated or corrupt"):
        load_cifar10(path)


def test_messages_name_the_archive_not_the_file_read(tmp_path):
    part = tmp_path / ".c.tar.gz.1234.part"
    url = "https://example.org/cifar-10-python.tar.gz"
    make_archive(part, batch_overrides={"test_batch": py2_pickle({"data": [], "labels": []})})
    with pytest.raises(ArchiveError, match=rf"^{url}: member test_batch: 'data' must be") as e:
        load_cifar10(part, name=url)
    assert "part" not in str(e.value)
    part.write_bytes(part.read_bytes()[:200])
    with pytest.raises(ArchiveError, match=rf"^{url} is not a readable tar.gz") as e:
        read_members(part, WANTED, name=url)
    assert "part" not in str(e.value)


def test_download_names_the_url(tmp_path):
    """The download checks a temporary .part file; its errors name the URL."""
    from birdplane.download import download

    src, md5 = make_archive(
        tmp_path / "mirror" / "c.tar.gz",
        extra_members=[tarfile.TarInfo("cifar-10-batches-py/../../escape")],
    )
    with pytest.raises(ArchiveError, match="unsafe archive member") as e:
        download(src.as_uri(), md5, tmp_path / "raw" / "c.tar.gz", progress=False)
    assert str(e.value).startswith(src.as_uri()) and ".part" not in str(e.value)


def labelled(labels, images) -> Split:
    return Split(images, np.asarray(labels, dtype=np.int64))


def test_check_selection_names_split_and_classes():
    img = np.zeros((3, 3, 32, 32), np.uint8)
    check_selection(labelled([0, 1, 1], img), labelled([1, 0, 0], img), ["airplane", "bird"])
    with pytest.raises(
        ArchiveError, match=r"validation set .*test_batch.* has no images of 'bird'"
    ):
        check_selection(labelled([0, 1, 1], img), labelled([0, 0, 0], img), ["airplane", "bird"])
    with pytest.raises(
        ArchiveError, match=r"training set .* has no images of 'airplane', 'bird' .*0 images"
    ):
        check_selection(labelled([], img[:0]), labelled([0, 1, 1], img), ["airplane", "bird"])


def test_constant_channel_is_refused():
    images = np.random.default_rng(0).integers(0, 256, size=(4, 3, 8, 8), dtype=np.uint8)
    images[:, 1] = 7
    with pytest.raises(
        StatsError,
        match="channel G has std 0: every pixel of the 4 training images has the "
        "value 7, so the images are constant",
    ):
        channel_stats(images)
    with pytest.raises(StatsError, match="too few"):
        channel_stats(images[:1, :, :1, :1])


def batches_of(images_for_label, n_train=20, n_test=8, test_classes=range(10)):
    """batch_overrides for make_archive: every batch from `images_for_label(label) -> 3072 pixels`."""
    out = {}
    train = np.arange(n_train * 10) % 10
    for i, chunk in enumerate(np.array_split(train, 5), 1):
        out[f"data_batch_{i}"] = py2_pickle(
            {"labels": chunk.tolist(), "data": np.stack([images_for_label(y) for y in chunk])}
        )
    test = np.array([c for c in test_classes for _ in range(n_test)])
    out["test_batch"] = py2_pickle(
        {"labels": test.tolist(), "data": np.stack([images_for_label(y) for y in test])}
    )
    return out


@pytest.mark.e2e
@pytest.mark.parametrize(
    "overrides, expect",
    [
        # the official test batch without birds: stats passed this and train crashed ('cannot
        # reshape tensor of 0 elements')
        (
            batches_of(
                lambda y: np.random.default_rng(y).integers(0, 256, 3072, dtype=np.uint8),
                test_classes=[c for c in range(10) if c != 2],
            ),
            "error in stage stats: the validation set (the archive's test_batch) has no images of 'bird'",
        ),
        # constant images: std 0, and training then blamed the learning rate
        (
            batches_of(lambda y: np.full(3072, 128, np.uint8)),
            "error in stage stats: channel R has std 0: every pixel of the 40 training images has the value 128",
        ),
    ],
    ids=["no-validation-birds", "constant-images"],
)
def test_stats_stage_refuses(tmp_path, overrides, expect):
    """Through the real stage under `dvc repro`, with the archive's own md5 configured."""
    src, md5 = make_archive(
        tmp_path / "mirror" / "cifar-10-python.tar.gz", batch_overrides=overrides
    )
    proj = make_project(tmp_path / "proj")
    r = dvc(proj, project_env(src.as_uri(), md5), "repro", "stats")
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("error in stage")]
    assert len(errors) == 1 and errors[0].startswith(expect), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert (
        files_under(proj / "data" / "prepared") in ([], [".gitignore"])
        and not (proj / "metrics").exists()
    )
