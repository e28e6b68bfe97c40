"""Tiny CIFAR-10 archives in the exact official layout, for tests.

`cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta,readme.html}` inside a tar.gz, each
batch a protocol-2 pickle with Python 2 `str` opcodes and `numpy.core.multiarray._reconstruct`, as
the real files have them.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class Py2Pickler(pickle._Pickler):
    """Writes bytes/str as Python 2 str opcodes and numpy's old module path, like cPickle did."""

    def save_bytes(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    def save_str(self, obj):
        self.save_bytes(obj.encode("latin1"))

    def save_global(self, obj, name=None):
        if getattr(obj, "__name__", "") == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch = pickle._Pickler.dispatch.copy()
    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def images_for(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """N x 3072 planar uint8 images whose colour depends on the class, so a net can learn something."""
    base = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.int64)
    tint = (labels[:, None] * 25) % 256
    return ((base + tint) // 2).astype(np.uint8)


def add(tar: tarfile.TarFile, name: str, payload: bytes, **info_fields) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(payload), 1262304000, 0o644
    for k, v in info_fields.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(payload) if info.isfile() else None)


def make_archive(
    path: Path,
    *,
    per_class_train: int = 10,
    per_class_test: int = 4,
    seed: int = 0,
    batch_overrides: dict[str, bytes] | None = None,
    extra_members: list[tarfile.TarInfo] | None = None,
) -> tuple[Path, str]:
    """Write a tiny official-layout archive; return (path, md5).

    batch_overrides replaces a member's payload (e.g. a hostile pickle); extra_members adds raw
    TarInfo entries (e.g. '../escape' or a symlink).
    """
    rng = np.random.default_rng(seed)
    train_labels = np.repeat(np.arange(10), per_class_train)
    rng.shuffle(train_labels)
    test_labels = np.repeat(np.arange(10), per_class_test)
    rng.shuffle(test_labels)
    train, test = images_for(train_labels, rng), images_for(test_labels, rng)
    members: dict[str, bytes] = {}
    for i, chunk in enumerate(np.array_split(np.arange(len(train_labels)), 5), 1):
        members[f"data_batch_{i}"] = py2_pickle(
            {
                "batch_label": f"training batch {i} of 5",
                "labels": train_labels[chunk].tolist(),
                "data": train[chunk],
                "filenames": [f"img_{j}.png" for j in chunk],
            }
        )
    members["test_batch"] = py2_pickle(
        {
            "batch_label": "testing batch 1 of 1",
            "labels": test_labels.tolist(),
            "data": test,
            "filenames": [f"t_{j}.png" for j in range(len(test))],
        }
    )
    members["batches.meta"] = py2_pickle(
        {"num_cases_per_batch": len(train_labels) // 5, "label_names": LABELS, "num_vis": 3072}
    )
    members["readme.html"] = b"<html>tiny test archive</html>"
    members.update(batch_overrides or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz", format=tarfile.USTAR_FORMAT) as tar:
        for name, payload in members.items():
            add(tar, f"cifar-10-batches-py/{name}", payload)
        for info in extra_members or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path, hashlib.md5(path.read_bytes()).hexdigest()


def arrays(per_class_train: int = 10, per_class_test: int = 4, seed: int = 0):
    """The pixels and labels make_archive writes, for checking parsed results."""
    rng = np.random.default_rng(seed)
    train_labels = np.repeat(np.arange(10), per_class_train)
    rng.shuffle(train_labels)
    test_labels = np.repeat(np.arange(10), per_class_test)
    rng.shuffle(test_labels)
    return images_for(train_labels, rng), train_labels, images_for(test_labels, rng), test_labels
