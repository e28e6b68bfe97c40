import io
import pickle
import tarfile

import numpy as np
import pytest

from birdplane.data import (
    ArchiveError,
    DatasetError,
    Split,
    load_cifar10,
    load_dataset,
    safe_loads,
    save_dataset,
    select_classes,
)
from birdplane.process import explain
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
    with pytest.raises(pickle.UnpicklingError, match="posix.system|nt.system|os.system"):
        safe_loads(payload)
    path, _ = make_archive(tmp_path / "c.tar.gz", batch_overrides={"data_batch_3": payload})
    with pytest.raises(ArchiveError, match="data_batch_3.*refusing"):
        load_cifar10(path)


@pytest.mark.parametrize(
    "name, kind",
    [
        ("../escape.txt", tarfile.REGTYPE),
        ("/etc/evil", tarfile.REGTYPE),
        ("cifar-10-batches-py/link", tarfile.SYMTYPE),
    ],
)
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
    np.testing.assert_allclose(
        std, x.transpose(1, 0, 2, 3).reshape(3, -1).std(axis=1, ddof=ddof), rtol=1e-12
    )


def saved_dataset(path, **replace):
    """A small dataset as save_dataset writes it, or with arrays replaced (None drops one)."""
    rng = np.random.default_rng(0)
    train = Split(
        rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8), np.array([0, 1, 0, 1, 0, 1])
    )
    val = Split(rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8), np.array([1, 0]))
    save_dataset(path, train, val, ["airplane", "bird"])
    if replace:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays.update(replace)
        np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def flip_middle(data: bytes) -> bytes:
    b = bytearray(data)
    b[len(b) // 2] ^= 0xFF
    return bytes(b)


@pytest.mark.parametrize(
    "damage, why",
    [
        (
            lambda p: p.write_bytes(flip_middle(p.read_bytes())),
            r"BadZipFile: Bad CRC-32 for file 'train_images.npy'",
        ),
        (lambda p: p.write_bytes(p.read_bytes()[:5000]), r"BadZipFile: File is not a zip file"),
        (lambda p: p.write_bytes(b""), r"not an .npz file: no zip header at its start"),
        (
            lambda p: p.write_bytes(b"\x80\x04garbage" * 100),
            r"not an .npz file: no zip header at its start",
        ),
        (
            lambda p: p.write_bytes(p.read_bytes().replace(b"'descr'", b"'d\xa7scr'", 1)),
            r"ValueError: ",
        ),
        (
            lambda p: saved_dataset(p, classes=None),
            r"KeyError: .*classes is not a file in the archive",
        ),
        (
            lambda p: saved_dataset(p, train_images=np.zeros((6, 3, 32, 32), np.float32)),
            r"train_images is float32 \(6, 3, 32, 32\), not uint8 N x 3 x 32 x 32",
        ),
        (
            lambda p: saved_dataset(p, val_labels=np.array([0, 1, 1])),
            r"val_labels is int64 \(3,\), not int64 \(2,\)",
        ),
        (lambda p: saved_dataset(p, val_labels=np.array([0, 2])), r"val_labels outside 0..1"),
        (
            lambda p: saved_dataset(p, classes=np.array([1, 2])),
            r"classes is int64 \(2,\), not a list of names",
        ),
    ],
    ids=[
        "flipped-byte",
        "truncated",
        "empty",
        "not-npz",
        "npy-header",
        "missing-array",
        "dtype",
        "length",
        "labels",
        "classes",
    ],
)
def test_damaged_dataset_is_one_clear_error(tmp_path, monkeypatch, damage, why):
    monkeypatch.chdir(tmp_path)  # no dvc.lock here: the generic recovery
    path = saved_dataset(tmp_path / "dataset.npz")
    load_dataset(path)
    damage(path)
    with pytest.raises(
        DatasetError,
        match=rf"^{path} is corrupt \({why}.*\): delete it and run `dvc repro -f stats`$",
    ) as e:
        load_dataset(path)
    assert "\n" not in str(e.value)


def test_damaged_dvc_output_names_its_cache_object(tmp_path, monkeypatch):
    """In a DVC project the error gives the exact commands: the cache holds the damaged copy too."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/prepared").mkdir(parents=True)
    h = "63110063d95d485f24581a19cc174edd"
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  stats:\n    cmd: python pipeline/stats.py\n    outs:\n"
        f"    - path: data/prepared/dataset.npz\n      hash: md5\n      md5: {h}\n      size: 1\n"
    )
    path = saved_dataset(tmp_path / "data/prepared/dataset.npz")
    path.write_bytes(flip_middle(path.read_bytes()))
    with pytest.raises(DatasetError) as e:
        load_dataset(path)
    assert str(e.value).endswith("delete it and run `dvc repro -f stats`")  # the core knows no DVC
    assert explain(
        e.value
    ).endswith(  # the stages' error line does
        f'run `rm -f data/prepared/dataset.npz "$(dvc cache dir)/files/md5/63/{h[2:]}" && dvc repro -f stats` '
        "(the DVC cache holds the damaged copy too: `dvc repro` alone would put it back)"
    )


def test_missing_dataset(tmp_path):
    with pytest.raises(DatasetError, match="does not exist: run `dvc repro stats`"):
        load_dataset(tmp_path / "nope.npz")
