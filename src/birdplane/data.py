"""Reading the official CIFAR-10 python archive safely, and selecting classes.

The archive is a tar.gz of pickled batches. Pickle can run arbitrary code, so
batches are read with `SafeUnpickler`, which admits only what the format needs
(numpy array reconstruction and builtin containers). Members are read straight
from the tar, never extracted; an archive with an absolute path, a `..`
component, a link or a device member is refused as a whole.
"""
from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from birdplane.errors import BirdplaneError

BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
# the official label order (batches.meta); a label is its index here
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)


class ArchiveError(BirdplaneError):
    """The archive is corrupt, truncated, unsafe or not CIFAR-10; the message says why and what to do."""


class SafeUnpickler(pickle.Unpickler):
    """Admits only the globals a pickled numpy uint8 array needs; everything else is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        # Resolve through numpy itself: `numpy.core` is a deprecated alias in numpy 2.
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def safe_loads(payload: bytes) -> object:
    """Unpickle Python 2 era CIFAR batches (str as latin1) with only the allowed globals."""
    return SafeUnpickler(io.BytesIO(payload), encoding="latin1").load()


def _check_member(m: tarfile.TarInfo) -> None:
    p = PurePosixPath(m.name)
    if p.is_absolute() or ".." in p.parts:
        raise ArchiveError(f"unsafe archive member {m.name!r}: its path escapes the archive's folder")
    if not (m.isfile() or m.isdir()):
        raise ArchiveError(f"unsafe archive member {m.name!r}: links and special files are not allowed")


def read_members(archive: Path, wanted: tuple[str, ...]) -> dict[str, bytes]:
    """Return the bytes of `wanted` members (names under BATCH_DIR) after checking every member."""
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for m in tar:  # streams through the archive once; every member checked
                _check_member(m)
                name = PurePosixPath(m.name)
                if m.isfile() and name.parent.name == BATCH_DIR and name.name in wanted:
                    f = tar.extractfile(m)
                    assert f is not None
                    with f:
                        out[name.name] = f.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise ArchiveError(
            f"{archive} is not a readable tar.gz ({type(e).__name__}: {e}); it is probably truncated "
            "or corrupt: delete it and run the download stage again") from None
    missing = [w for w in wanted if w not in out]
    if missing:
        raise ArchiveError(f"{archive} lacks {BATCH_DIR}/{', '.join(missing)}: not the CIFAR-10 python archive")
    return out


def _parse_batch(name: str, payload: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = safe_loads(payload)
    except pickle.UnpicklingError as e:
        raise ArchiveError(f"{name}: {e}; the archive is not a genuine CIFAR-10 batch, refusing it") from None
    except Exception as e:  # malformed pickles raise anything from EOFError to TypeError
        raise ArchiveError(f"{name}: unreadable pickle ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict):
        raise ArchiveError(f"{name}: expected a dict, found {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ArchiveError(f"{name}: 'data' must be a uint8 array of N x 3072 pixels")
    if not isinstance(labels, list) or len(labels) != len(data) or not all(type(x) is int for x in labels):
        raise ArchiveError(f"{name}: 'labels' must be a list of {len(data)} integers")
    labels_arr = np.asarray(labels, dtype=np.int64)
    if len(labels_arr) and (labels_arr.min() < 0 or labels_arr.max() > 9):
        raise ArchiveError(f"{name}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels_arr


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8, N x 3 x 32 x 32 (channels R, G, B)
    labels: np.ndarray  # int64, N, the official label (0..9) or a renumbered one


def load_cifar10(archive: Path) -> tuple[Split, Split]:
    """All train and test images of the official archive, in file order."""
    raw = read_members(archive, TRAIN_BATCHES + (TEST_BATCH,))
    train = [_parse_batch(n, raw[n]) for n in TRAIN_BATCHES]
    test_x, test_y = _parse_batch(TEST_BATCH, raw[TEST_BATCH])
    return (Split(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
            Split(test_x, test_y))


def select_classes(split: Split, classes: list[str]) -> Split:
    """Keep only `classes` and renumber their labels 0..len(classes)-1 in the given order."""
    official = np.array([CIFAR10_CLASSES.index(c) for c in classes])
    remap = np.full(10, -1, dtype=np.int64)
    remap[official] = np.arange(len(classes))
    keep = np.isin(split.labels, official)
    return Split(np.ascontiguousarray(split.images[keep]), remap[split.labels[keep]])


def save_dataset(path: Path, train: Split, val: Split, classes: list[str]) -> None:
    """Store the selected images compactly (uint8) in an .npz that loads without pickle."""
    with Path(path).open("wb") as f:
        np.savez(f, train_images=train.images, train_labels=train.labels,
                 val_images=val.images, val_labels=val.labels, classes=np.array(classes))


def load_dataset(path: Path) -> tuple[Split, Split, list[str]]:
    with np.load(path, allow_pickle=False) as z:
        return (Split(z["train_images"], z["train_labels"]), Split(z["val_images"], z["val_labels"]),
                [str(c) for c in z["classes"]])
