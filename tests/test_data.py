import io
import pickle
import tarfile

import numpy as np
import pytest

from birdplane.data import ArchiveError, Split, load_cifar10, safe_loads, select_classes
from birdplane.stats import channel_stats
from cifar_fixture import arrays, make_archive, py2_pickle


def test_reads_official_layout(tmp_path):
    path, _ = make_archive(tmp_path / "c.tar.gz")
    train, test = load_cifar10(path)
    tx, ty, vx, vy = arrays()
    assert train.images.shape == (100, 3, 32, 32) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(train.images.reshape(100, -1), tx)
    np.testing.assert_array_equal(train.labels, ty)
    np.testing.assert_array_equal(test.images.reshape(40, -1), vx)
    np.testing.assert_array_equal(test.labels, vy)


def test_py2_pickle_loads_with_latin1_keys():
    batch = safe_loads(py2_pickle({"labels": [1, 2], "data": np.zeros((2, 3072), np.uint8)}))
    assert set(batch) == {"labels", "data"} and batch["data"].shape == (2, 3072)


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_hostile_pickle_is_refused(tmp_path):
    payload = pickle.dumps({"data": _Evil(), "labels": [0]}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        safe_loads(payload)
    path, _ = make_archive(tmp_path / "c.tar.gz", batch_overrides={"data_batch_3": payload})
    with pytest.raises(ArchiveError, match="data_batch_3.*refusing"):
        load_cifar10(path)


@pytest.mark.parametrize("name, kind", [("../escape.txt", tarfile.REGTYPE), ("/etc/evil", tarfile.REGTYPE),
                                        ("cifar-10-batches-py/link", tarfile.SYMTYPE)])
def test_unsafe_members_are_refused(tmp_path, name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = 3 if kind == tarfile.REGTYPE else 0
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    path, _ = make_archive(tmp_path / "c.tar.gz", extra_members=[info])
    with pytest.raises(ArchiveError, match="unsafe archive member"):
        load_cifar10(path)
    assert not (tmp_path / "escape.txt").exists()


def test_truncated_archive(tmp_path):
    path, _ = make_archive(tmp_path / "c.tar.gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        load_cifar10(path)


def test_not_cifar(tmp_path):
    path = tmp_path / "other.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(ArchiveError, match="lacks cifar-10-batches-py/data_batch_1"):
        load_cifar10(path)


def test_wrong_shapes_are_refused(tmp_path):
    bad = py2_pickle({"labels": [0, 1], "data": np.zeros((2, 100), np.uint8)})
    path, _ = make_archive(tmp_path / "c.tar.gz", batch_overrides={"test_batch": bad})
    with pytest.raises(ArchiveError, match="N x 3072"):
        load_cifar10(path)


def test_select_classes_renumbers_in_given_order():
    images = np.arange(6 * 3 * 32 * 32, dtype=np.int64).astype(np.uint8).reshape(6, 3, 32, 32)
    split = Split(images, np.array([0, 2, 5, 2, 0, 9]))
    out = select_classes(split, ["bird", "airplane"])  # bird=2 -> 0, airplane=0 -> 1
    np.testing.assert_array_equal(out.labels, [1, 0, 0, 1])
    np.testing.assert_array_equal(out.images, images[[0, 1, 3, 4]])


@pytest.mark.parametrize("ddof", [0, 1])
def test_channel_stats_match_numpy(ddof):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(17, 3, 8, 8), dtype=np.uint8)
    mean, std = channel_stats(images, ddof=ddof)
    x = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, x.transpose(1, 0, 2, 3).reshape(3, -1).std(axis=1, ddof=ddof), rtol=1e-12)
