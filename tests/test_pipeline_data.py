"""The download and stats stages through real DVC in a temporary git repo, against a real HTTP server."""

import json
import tarfile

import numpy as np
import pytest
import yaml

from birdplane.data import load_dataset
from cifar_fixture import arrays, make_archive
from conftest import dvc, files_under, make_project, project_env, stage

pytestmark = pytest.mark.e2e


def test_dvc_repro_stats(tmp_path, tiny_archive, http_server):
    url, md5, _ = tiny_archive
    proj = make_project(tmp_path / "proj")
    env = project_env(url, md5)
    r = dvc(proj, env, "repro", "stats")
    assert r.returncode == 0, r.stderr
    stats = json.loads((proj / "metrics/stats.json").read_text())
    # the same pixels through numpy: airplanes (0) and birds (2) of the training batches
    tx, ty, _, vy = arrays()
    sel = tx[np.isin(ty, [0, 2])].reshape(-1, 3, 1024).astype(np.float64) / 255
    np.testing.assert_allclose(stats["mean"], sel.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(
        stats["std"], sel.transpose(1, 0, 2).reshape(3, -1).std(axis=1, ddof=1), rtol=1e-12
    )
    size = (http_server[1] / "cifar-10-python.tar.gz").stat().st_size
    # what the data is goes into the metrics, where it came from into the download log only
    assert (
        stats["n_train"] == 20
        and stats["n_val"] == 8
        and stats["source"] == {"md5": md5, "bytes": size}
    )
    log = json.loads((proj / "logs/download.json").read_text())
    assert (log["url"], log["md5"], log["bytes"]) == (url, md5, size)
    train, val, classes = load_dataset(proj / "data/prepared/dataset.npz")
    assert classes == ["airplane", "bird"] and train.images.dtype == np.uint8
    assert set(train.labels.tolist()) == {0, 1}

    # nothing to do the second time; changing the classes re-runs stats only, no download
    requests = http_server[2]["requests"]
    assert "didn't change" in dvc(proj, env, "repro", "stats").stdout
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["data"]["classes"] = ["bird", "ship", "airplane"]
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = dvc(proj, env, "repro", "stats")
    assert r.returncode == 0, r.stderr
    assert "Stage 'download' didn't change" in r.stdout and http_server[2]["requests"] == requests
    stats = json.loads((proj / "metrics/stats.json").read_text())
    assert stats["classes"] == ["bird", "ship", "airplane"] and stats["n_val"] == 12


def test_the_same_bytes_from_another_url_change_nothing_downstream(tmp_path, tiny_archive):
    """The URL is provenance: it goes to logs/download.json (read by the report only), so a mirror
    serving the same archive leaves stats, and with it every training stage, up to date."""
    url, md5, path = tiny_archive
    proj = make_project(tmp_path / "proj")
    dvc(proj, project_env(url, md5), "repro", "stats", check=True)
    stats_before = (proj / "metrics/stats.json").read_bytes()
    other = path.as_uri()  # the same file, now through file://
    env = project_env(other, md5)
    r = dvc(proj, env, "repro", "-f", "download")
    assert r.returncode == 0, r.stderr
    assert json.loads((proj / "logs/download.json").read_text())["url"] == other
    r = dvc(proj, env, "status", "stats", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {}, (
        r.stdout
    )  # stats and everything after it: up to date
    assert (proj / "metrics/stats.json").read_bytes() == stats_before


def failing_stage(proj, env, script, *args):
    r = stage(proj, env, script, *args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    return r.stderr


@pytest.fixture
def proj(tmp_path):
    return make_project(tmp_path / "proj")


def test_download_md5_mismatch(proj, tiny_archive):
    url, md5, _ = tiny_archive
    err = failing_stage(proj, project_env(url, "f" * 32), "download.py")
    assert "checksum mismatch" in err and url in err
    assert files_under(proj / "data") == []


def test_download_unreachable(proj):
    url = "http://127.0.0.1:9/cifar-10-python.tar.gz"
    err = failing_stage(proj, project_env(url, "f" * 32), "download.py")
    assert url in err and "BIRDPLANE_DATA_URL" in err
    assert files_under(proj / "data") == []


def test_download_truncated(proj, http_server):
    base, www, _ = http_server
    path, _ = make_archive(www / "c.tar.gz")
    path.write_bytes(path.read_bytes()[:-500])
    import hashlib

    err = failing_stage(
        proj,
        project_env(f"{base}/c.tar.gz", hashlib.md5(path.read_bytes()).hexdigest()),
        "download.py",
    )
    assert "truncated or corrupt" in err
    assert files_under(proj / "data") == []


def _stats_from(proj, http_server, **archive_kwargs):
    base, www, _ = http_server
    path, md5 = make_archive(www / "c.tar.gz", **archive_kwargs)
    env = project_env(f"{base}/c.tar.gz", md5)
    return env, stage(proj, env, "download.py")


def test_stats_refuses_hostile_pickle(proj, http_server):
    import pickle

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("touch pwned",))

    bad = pickle.dumps({"data": Evil(), "labels": [0]}, protocol=2)
    env, r = _stats_from(proj, http_server, batch_overrides={"data_batch_1": bad})
    assert r.returncode == 0, r.stderr  # a well-formed tar: the download stage does not unpickle
    err = failing_stage(proj, env, "stats.py")
    assert "data_batch_1" in err and "refusing to load global" in err
    assert not (proj / "pwned").exists()
    assert files_under(proj / "data/prepared") == [] and not (proj / "metrics").exists()


def test_escaping_member_is_refused(proj, http_server):
    info = tarfile.TarInfo("cifar-10-batches-py/../../escape.sh")
    info.size = 3
    env, r = _stats_from(proj, http_server, extra_members=[info])
    assert r.returncode != 0 and "unsafe archive member" in r.stderr and "Traceback" not in r.stderr
    assert files_under(proj / "data") == [] and not (proj.parent / "escape.sh").exists()


def test_unknown_class_and_typo_stop_before_work(proj, tiny_archive):
    url, md5, _ = tiny_archive
    env = project_env(url, md5)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["data"]["classes"] = ["airplane", "birb"]
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    err = failing_stage(proj, env, "download.py")
    assert "data.classes" in err and "birb" in err and "truck" in err
    params["data"]["classes"] = ["airplane", "bird"]
    params["data"]["retires"] = 3
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    err = failing_stage(proj, env, "download.py")
    assert "data.retires" in err and "did you mean 'retries'" in err
    assert files_under(proj / "data") == []
