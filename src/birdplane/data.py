"""Reading the official CIFAR-10 python archive safely, and selecting classes.

The archive is a tar.gz of pickled batches. Pickle can run arbitrary code, so
batches are read with `SafeUnpickler`, which admits only what the format needs
(numpy array reconstruction and builtin containers). Members are read straight
from the tar, never extracted; an archive with an absolute path, a `..`
component, a link or a device member is refused as a whole, and so is one whose members are larger
than a CIFAR-10 batch can be, checked on the tar headers before anything is read into memory.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

from birdplane.cifar import CIFAR10_CLASSES
from birdplane.errors import BirdplaneError, DamagedFile

BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"


class ArchiveError(BirdplaneError):
    """The archive is corrupt, truncated, unsafe or not CIFAR-10; the message says why and what to do."""


class DamagedArchive(ArchiveError, DamagedFile):
    """The project's own copy of the archive (a DVC output) cannot be read."""


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


# Sizes a genuine archive can have, with a margin. A batch is a pickle of 10,000 images x 3,072
# bytes plus labels and file names, about 31 MB (30,949,436 bytes for data_batch_1 of the archive
# ../shared/data builds); the archive holds a folder and 8 files, 186 MB (177 MiB) unpacked.
# Anything larger is refused from the tar headers alone, before its bytes are read or skipped:
# a 5 MB download can unpack to gigabytes.
MAX_MEMBER_BYTES = 40 << 20
MAX_MEMBERS = 32
MAX_TOTAL_BYTES = 256 << 20
READ_CHUNK = 1 << 20


def _not_cifar(shown: str, why: str) -> ArchiveError:
    return ArchiveError(
        f"{shown}: {why}; this is not the CIFAR-10 python archive, refusing it before "
        "reading it: point data.url and data.md5 at the official archive"
    )


class _BoundedStream:
    """The unpacked tar stream as tarfile reads it, refusing any one read larger than a member can
    be and any position past what a whole archive can unpack to.

    tarfile reads a pax or GNU long-name header whole, before the member it describes is yielded,
    so a header that declares a gigabyte is only caught here; skipping an unwanted member seeks,
    which decompresses everything up to the target, so the total is bounded here as well.
    """

    def __init__(self, raw: gzip.GzipFile, shown: str):
        self._raw, self._shown = raw, shown

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > MAX_MEMBER_BYTES:
            raise _not_cifar(
                self._shown,
                f"a tar entry needs a read of {size} bytes, more than any "
                f"CIFAR-10 member ({MAX_MEMBER_BYTES >> 20} MiB at most)",
            )
        data = self._raw.read(min(size, MAX_TOTAL_BYTES + 1 - self._raw.tell()))
        self._check(self._raw.tell())
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check(offset if whence == io.SEEK_SET else self._raw.tell() + offset)
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def _check(self, position: int) -> None:
        if position > MAX_TOTAL_BYTES:
            raise _not_cifar(
                self._shown,
                f"it unpacks to more than {MAX_TOTAL_BYTES >> 20} MiB "
                "(the CIFAR-10 archive: 177 MiB)",
            )


def _outside(text: str, limit: int = 100) -> str:
    """Text the archive chose (a member's name, up to megabytes in a pax header; tarfile's message
    about a header) for a message: control characters and escape sequences escaped, cut."""
    from birdplane.text import printable  # messages only: no stage output depends on it

    return printable(text, limit)


def _check_member(m: tarfile.TarInfo, shown: str) -> None:
    p = PurePosixPath(m.name)
    name = f"'{_outside(m.name)}'"
    if p.is_absolute() or ".." in p.parts:
        raise ArchiveError(
            f"{shown}: unsafe archive member {name}: its path escapes the archive's folder"
        )
    if not (m.isfile() or m.isdir()):
        raise ArchiveError(
            f"{shown}: unsafe archive member {name}: links and special files are not allowed"
        )
    if m.size > MAX_MEMBER_BYTES:
        raise _not_cifar(
            shown,
            f"member {name} is {m.size:,} bytes, more than a CIFAR-10 batch can be "
            f"({MAX_MEMBER_BYTES >> 20} MiB at most)",
        )


def read_members(
    archive: Path, wanted: tuple[str, ...], name: str | None = None
) -> dict[str, bytes]:
    """Return the bytes of `wanted` members (names under BATCH_DIR) after checking every member.

    `name` is what messages call the archive (default: its path): the download passes the URL,
    because it checks a temporary file the user never sees. Member sizes are checked on the tar
    headers, before a member is read or skipped, and the gzip trailer (CRC-32 and length) at the
    end, so a flipped bit is reported as corruption rather than as a missing member.
    """
    shown = name or str(archive)
    out: dict[str, bytes] = {}
    try:
        with gzip.open(archive, "rb") as gz:
            stream = _BoundedStream(gz, shown)
            with tarfile.open(fileobj=stream, mode="r:") as tar:
                for i, m in enumerate(
                    tar
                ):  # streams through the archive once; every member checked
                    if i >= MAX_MEMBERS:
                        raise _not_cifar(
                            shown, f"it has more than {MAX_MEMBERS} members (CIFAR-10: 9)"
                        )
                    _check_member(m, shown)
                    member = PurePosixPath(m.name)
                    if m.isfile() and member.parent.name == BATCH_DIR and member.name in wanted:
                        f = tar.extractfile(m)
                        assert f is not None
                        with f:
                            out[member.name] = f.read()
            while stream.read(READ_CHUNK):  # the rest of the tar record, then the gzip trailer
                pass
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        problem = (
            f"{shown} is not a readable tar.gz ({type(e).__name__}: {_outside(str(e), 200)}); it is probably "
            "truncated or corrupt"
        )
        if name is None:  # the project's own copy: the stages' error line names the DVC commands
            raise DamagedArchive(
                archive, problem, "delete it and run the download stage again"
            ) from None
        raise ArchiveError(f"{problem}: point data.url and data.md5 at a good copy") from None
    missing = [w for w in wanted if w not in out]
    if missing:
        raise ArchiveError(
            f"{shown} lacks {BATCH_DIR}/{', '.join(missing)}: not the CIFAR-10 python archive"
        )
    return out


def _parse_batch(name: str, payload: bytes, archive: str = "") -> tuple[np.ndarray, np.ndarray]:
    where = f"{archive}: member {name}" if archive else name
    try:
        batch = safe_loads(payload)
    except pickle.UnpicklingError as e:
        raise ArchiveError(
            f"{where}: {e}; the archive is not a genuine CIFAR-10 batch, refusing it"
        ) from None
    except Exception as e:  # malformed pickles raise anything from EOFError to TypeError
        raise ArchiveError(f"{where}: unreadable pickle ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict):
        raise ArchiveError(f"{where}: expected a dict, found {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
    ):
        raise ArchiveError(f"{where}: 'data' must be a uint8 array of N x 3072 pixels")
    # A pickle can call numpy.ndarray itself: with zero strides over a few bytes, or uninitialized,
    # an array claims any number of images, and the first copy (concatenate, class selection) would
    # allocate them all. Real pixels are in the payload, so a genuine array is never larger.
    if data.nbytes > len(payload):
        raise ArchiveError(
            f"{where}: 'data' claims {len(data):,} images ({data.nbytes:,} bytes) in a "
            f"{len(payload):,}-byte member; the archive is not a genuine CIFAR-10 batch, refusing it"
        )
    if (
        not isinstance(labels, list)
        or len(labels) != len(data)
        or not all(type(x) is int for x in labels)
    ):
        raise ArchiveError(f"{where}: 'labels' must be a list of {len(data)} integers")
    labels_arr = np.asarray(labels, dtype=np.int64)
    if len(labels_arr) and (labels_arr.min() < 0 or labels_arr.max() > 9):
        raise ArchiveError(f"{where}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels_arr


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8, N x 3 x 32 x 32 (channels R, G, B)
    labels: np.ndarray  # int64, N, the official label (0..9) or a renumbered one


def load_cifar10(archive: Path, name: str | None = None) -> tuple[Split, Split]:
    """All train and test images of the official archive, in file order; `name` as in read_members."""
    shown = name or str(archive)
    raw = read_members(archive, TRAIN_BATCHES + (TEST_BATCH,), name=name)
    train = [_parse_batch(n, raw.pop(n), shown) for n in TRAIN_BATCHES]
    test_x, test_y = _parse_batch(TEST_BATCH, raw.pop(TEST_BATCH), shown)
    return (
        Split(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
        Split(test_x, test_y),
    )


def select_classes(split: Split, classes: list[str]) -> Split:
    """Keep only `classes` and renumber their labels 0..len(classes)-1 in the given order."""
    official = np.array([CIFAR10_CLASSES.index(c) for c in classes])
    remap = np.full(10, -1, dtype=np.int64)
    remap[official] = np.arange(len(classes))
    keep = np.isin(split.labels, official)
    return Split(np.ascontiguousarray(split.images[keep]), remap[split.labels[keep]])


def check_selection(train: Split, val: Split, classes: list[str]) -> None:
    """Refuse a selection where a split lacks a selected class: training on it fails later (an
    empty validation set cannot be reshaped) or, worse, silently learns one class fewer."""
    for what, split in (
        ("training set (the archive's data_batch_1..5)", train),
        ("validation set (the archive's test_batch)", val),
    ):
        counts = np.bincount(split.labels, minlength=len(classes))
        absent = [c for c, n in zip(classes, counts) if n == 0]
        if absent:
            raise ArchiveError(
                f"the {what} has no images of {', '.join(map(repr, absent))} (data.classes {classes}, "
                f"{len(split.labels)} images selected): the archive is not the full CIFAR-10; point "
                "data.url and data.md5 at the official archive"
            )


DATASET_ARRAYS = ("train_images", "train_labels", "val_images", "val_labels", "classes")


class DatasetError(BirdplaneError):
    """The prepared dataset is missing, unreadable or malformed; the message says how to recover."""


def save_dataset(path: Path, train: Split, val: Split, classes: list[str]) -> None:
    """Store the selected images compactly (uint8) in an .npz that loads without pickle."""
    with Path(path).open("wb") as f:
        np.savez(
            f,
            train_images=train.images,
            train_labels=train.labels,
            val_images=val.images,
            val_labels=val.labels,
            classes=np.array(classes),
        )


def load_dataset(path: Path) -> tuple[Split, Split, list[str]]:
    """The train and validation splits and class names that `save_dataset` wrote, checked.

    Every way a damaged file fails (a bad CRC, a cut-off zip, a broken .npy header, a missing
    array, a wrong dtype or shape) ends in one DatasetError naming the file and the recovery.
    """
    if not Path(path).is_file():
        raise DatasetError(
            f"{path} does not exist: run `dvc repro stats` (or `dvc checkout {path}`)"
        )
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # else numpy tries it as a pickle and suggests allow_pickle
            raise _corrupt(path, "not an .npz file: no zip header at its start")
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in DATASET_ARRAYS}
    except (zipfile.BadZipFile, zlib.error, ValueError, KeyError, OSError, EOFError) as e:
        raise _corrupt(path, f"{type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
    n_classes = len(a["classes"])
    for split in ("train", "val"):
        images, labels = a[f"{split}_images"], a[f"{split}_labels"]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, 32, 32):
            raise _corrupt(
                path, f"{split}_images is {images.dtype} {images.shape}, not uint8 N x 3 x 32 x 32"
            )
        if labels.dtype != np.int64 or labels.shape != (len(images),):
            raise _corrupt(
                path, f"{split}_labels is {labels.dtype} {labels.shape}, not int64 ({len(images)},)"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
            raise _corrupt(path, f"{split}_labels outside 0..{n_classes - 1}")
    if a["classes"].dtype.kind != "U" or a["classes"].ndim != 1:
        raise _corrupt(
            path, f"classes is {a['classes'].dtype} {a['classes'].shape}, not a list of names"
        )
    return (
        Split(a["train_images"], a["train_labels"]),
        Split(a["val_images"], a["val_labels"]),
        [str(c) for c in a["classes"]],
    )


class DamagedDataset(DatasetError, DamagedFile):
    """The prepared dataset is there but damaged."""


def _corrupt(path: Path, why: str) -> DatasetError:
    return DamagedDataset(
        path, f"{path} is corrupt ({why})", "delete it and run `dvc repro -f stats`"
    )


# ---- normalization: the prepared uint8 images as the float tensors the nets take


def to_features(images: np.ndarray, mean: list[float], std: list[float], device) -> "torch.Tensor":
    """uint8 N x 3 x 32 x 32 -> normalized float32 N x 3072 on `device` (one copy of the data)."""
    import torch

    x = torch.from_numpy(images).to(device).float().div_(255)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return x.sub_(m).div_(s).reshape(len(images), -1)


def split_tensors(split: Split, stats: dict, device) -> tuple["torch.Tensor", "torch.Tensor"]:
    """A Split as (normalized N x 3072 features, labels) on `device`, with the mean and std of the
    stats stage's output (metrics/stats.json). torch is imported here, not by this module: the
    stats stage reads archives without it."""
    import torch

    return (
        to_features(split.images, stats["mean"], stats["std"], device),
        torch.from_numpy(split.labels).to(device),
    )


def load_tensors(data: Path, stats: dict, device) -> tuple[tuple, tuple, list[str], dict]:
    """The prepared data as the nets take it: ((train features, labels), (val features, labels),
    class names, `stats`), normalized with the stats stage's mean and std (`stats`, its metrics as
    birdplane.inputs.stats read and checked them)."""
    from birdplane import numerics

    numerics.install()  # before the first tensor: every product and convolution on the pinned kernels
    train, val, classes = load_dataset(data)
    return split_tensors(train, stats, device), split_tensors(val, stats, device), classes, stats
