"""Stage `download`: fetch the CIFAR-10 python archive and verify its md5.

Reads params `data.url`, `data.md5`, `data.retries`, `data.timeout_s`; the environment variables
BIRDPLANE_DATA_URL and BIRDPLANE_DATA_MD5 replace url and md5 (a local mirror). The URL actually
used goes to the log (provenance, for the report), never into a file a later stage depends on:
the same bytes from another mirror leave every later stage up to date. The log and the messages
show it redacted (user:password@ and ?query as ***): the log and the report are committed.
"""

from birdplane.cli import parser
from birdplane.process import run_stage


def main() -> None:
    args = parser(
        __doc__, {"out": "the archive", "log": "where to record the URL and md5 actually used"}
    ).parse_args()

    from birdplane.config import load_params
    from birdplane.download import Transfer, download
    from birdplane.io import outputs
    from birdplane.provenance import now
    from birdplane.text import redact_url

    cfg = load_params(args.params).data
    url, md5 = cfg.source()
    shown = redact_url(url)
    with outputs() as out:
        archive = download(
            url,
            md5,
            out.path(args.out),
            transfer=Transfer(retries=cfg.retries, timeout_s=cfg.timeout_s),
        )
        out.write_json(
            args.log, {"url": shown, "md5": md5, "bytes": archive.stat().st_size, "finished": now()}
        )
    print(f"downloaded {shown} -> {args.out} (md5 {md5} verified)")


if __name__ == "__main__":
    run_stage("download", main)
