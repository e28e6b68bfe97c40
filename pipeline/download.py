"""Stage `download`: fetch the CIFAR-10 python archive and verify its md5.

Reads params `data.url`, `data.md5`, `data.retries`, `data.timeout_s`; the environment variables
BIRDPLANE_DATA_URL and BIRDPLANE_DATA_MD5 replace url and md5 (a local mirror).
"""
from pathlib import Path

from birdplane.cli import parser, run_stage


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--out", type=Path, default=Path("data/raw/cifar-10-python.tar.gz"))
    ap.add_argument("--source", type=Path, default=Path("data/raw/source.json"),
                    help="where to record the URL and md5 actually used")
    args = ap.parse_args()

    from birdplane.config import load_params
    from birdplane.download import download
    from birdplane.io import outputs

    cfg = load_params(args.params).data
    url, md5 = cfg.source()
    with outputs() as out:
        archive = download(url, md5, out.path(args.out), retries=cfg.retries, timeout_s=cfg.timeout_s)
        out.write_json(args.source, {"url": url, "md5": md5, "bytes": archive.stat().st_size})
    print(f"downloaded {url} -> {args.out} (md5 {md5} verified)")


if __name__ == "__main__":
    run_stage("download", main)
