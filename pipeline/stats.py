"""Stage `stats`: select `data.classes`, keep their images as uint8, and compute per-channel
mean and std over the selected training images only (the normalization of the lecture).

Reads params `data.classes`, `stats.ddof`. The official test batch is the validation set,
as in the book. Records the archive's md5 and size (what the data is), not its URL (where it came
from: the download stage's log), so that a mirror with the same bytes changes nothing here.
"""

from birdplane.cli import parser
from birdplane.process import run_stage


def main() -> None:
    args = parser(
        __doc__,
        {
            "archive": "the CIFAR-10 python archive",
            "out": "the selected images (.npz)",
            "metrics": "mean, std, counts and the archive's md5 (.json)",
        },
    ).parse_args()

    from birdplane.config import load_params
    from birdplane.data import check_selection, load_cifar10, save_dataset, select_classes
    from birdplane.download import md5_of
    from birdplane.io import outputs
    from birdplane.stats import channel_stats

    params = load_params(args.params)
    classes = params.data.classes
    train, val = (select_classes(s, classes) for s in load_cifar10(args.archive))
    check_selection(train, val, classes)  # an empty split fails here, not in training
    mean, std = channel_stats(train.images, ddof=params.stats.ddof)
    with outputs() as out:
        out.write_with(args.out, lambda p: save_dataset(p, train, val, classes))
        out.write_json(
            args.metrics,
            {
                "mean": mean,
                "std": std,
                "classes": classes,
                "n_train": int(len(train.labels)),
                "n_val": int(len(val.labels)),
                "train_per_class": {
                    c: int((train.labels == i).sum()) for i, c in enumerate(classes)
                },
                "val_per_class": {c: int((val.labels == i).sum()) for i, c in enumerate(classes)},
                "source": {"md5": md5_of(args.archive), "bytes": args.archive.stat().st_size},
            },
        )
    print(
        f"{len(train.labels)} train / {len(val.labels)} val images of {classes}; "
        f"mean {[round(m, 4) for m in mean]} std {[round(s, 4) for s in std]}"
    )


if __name__ == "__main__":
    run_stage("stats", main)
