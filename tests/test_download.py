"""Downloads against a real HTTP server on 127.0.0.1: mirrors fall through on every kind of
failure, checksums are enforced, and the cache never holds a partial file."""
import hashlib
import http.server
import os
import threading
from pathlib import Path

import pytest

from conftest import fake_mnist
from fastbp import datasets
from fastbp.datasets import FILES, DownloadError, download, load_idx_folder, load_mnist

NAMES = [n for pair in FILES.values() for n in pair]


class Handler(http.server.BaseHTTPRequestHandler):
    files = {}  # name -> bytes, set per test
    hits = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        kind, _, name = self.path.strip("/").partition("/")
        self.hits.append(self.path)
        body = self.files.get(name)
        if kind == "missing" or body is None:
            self.send_error(404)
        elif kind == "reset":
            self.connection.shutdown(2)  # drop the connection without answering
        elif kind == "truncated":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
        else:
            if kind == "corrupt":
                body = body[:-1] + bytes([body[-1] ^ 0xFF])
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture
def server(tmp_path, monkeypatch):
    src = tmp_path / "origin"
    src.mkdir()
    fake_mnist(src, n_train=6, n_test=4)
    Handler.files = {n: (src / n).read_bytes() for n in NAMES}
    Handler.hits = []
    sums = {n: hashlib.md5(b).hexdigest() for n, b in Handler.files.items()}
    monkeypatch.setitem(datasets.DATASETS["mnist"], "md5", sums)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".fastbp-")]


@pytest.mark.parametrize("bad", ["missing", "reset", "truncated", "corrupt"])
def test_falls_through_to_next_mirror(server, tmp_path, bad):
    dest = tmp_path / "cache"
    log = []
    download("mnist", dest, mirrors=[f"{server}/{bad}/", f"{server}/good/"], timeout=5, log=log.append)
    assert sorted(p.name for p in dest.iterdir()) == sorted(NAMES)
    for n in NAMES:
        assert (dest / n).read_bytes() == Handler.files[n]
    (x, t), (xt, tt) = load_idx_folder(dest)
    assert x.shape == (6, 784) and xt.shape == (4, 784)
    assert len(log) == 8  # each file: the bad mirror, then the good one


@pytest.mark.parametrize("bad", ["missing", "reset", "truncated", "corrupt"])
def test_all_mirrors_failing_is_a_clear_error_and_leaves_nothing(server, tmp_path, bad):
    dest = tmp_path / "cache"
    with pytest.raises(DownloadError) as e:
        download("mnist", dest, mirrors=[f"{server}/{bad}/", f"{server}/missing/"], timeout=5,
                 log=lambda m: None)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and f"{server}/{bad}/" in msg
    reason = {"missing": "404", "reset": "closed connection", "truncated": "truncated",
              "corrupt": "is not the official"}[bad]
    assert reason in msg, msg
    assert list(dest.iterdir()) == []  # no partial file, no temp file


def test_only_missing_files_are_fetched(server, tmp_path):
    dest = tmp_path / "cache"
    dest.mkdir()
    (dest / NAMES[0]).write_bytes(Handler.files[NAMES[0]])
    download("mnist", dest, mirrors=[f"{server}/good/"], log=lambda m: None)
    assert Handler.hits == [f"/good/{n}" for n in NAMES[1:]]


def test_load_mnist_downloads_into_the_cache(server, monkeypatch, tmp_path):
    monkeypatch.setitem(datasets.DATASETS["mnist"], "mirrors", [f"{server}/missing/", f"{server}/good/"])
    (x, t), _ = load_mnist()
    assert x.shape == (6, 784)
    cached = tmp_path.parent / "cache"  # not used; the cache is XDG_CACHE_HOME/fastbp/mnist
    assert not cached.exists()
    folder = os.path.join(datasets.cache_dir(), "mnist")
    assert sorted(os.listdir(folder)) == sorted(NAMES)
    hits = len(Handler.hits)
    load_mnist()  # a second call finds the cache and asks nothing
    assert len(Handler.hits) == hits


def test_unreachable_mirrors_without_data_say_how_to_get_the_files():
    # the autouse fixture points every mirror at a closed local port
    with pytest.raises(DownloadError, match="could not download") as e:
        load_mnist()
    cache = os.path.join(datasets.cache_dir(), "mnist")
    assert f"Offline? put the four IDX files in {cache}" in str(e.value)
    assert "fastbp.datasets.load_mnist_sample()" in str(e.value)
    assert leftovers(Path(cache)) == []
    with pytest.raises(FileNotFoundError, match="load_mnist_sample"):
        load_mnist(download=False)


def test_an_explicit_root_is_downloaded_into_only_when_asked(server, monkeypatch, tmp_path):
    monkeypatch.setitem(datasets.DATASETS["mnist"], "mirrors", [f"{server}/good/"])
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / NAMES[0]).write_bytes(Handler.files[NAMES[0]])
    with pytest.raises(FileNotFoundError, match=r"missing mnist files .*download=True"):
        load_mnist(root=dest)
    assert Handler.hits == [] and sorted(os.listdir(dest)) == [NAMES[0]]
    (x, t), _ = load_mnist(root=dest, download=True)
    assert x.shape == (6, 784) and sorted(os.listdir(dest)) == sorted(NAMES)
    assert Handler.hits == [f"/good/{n}" for n in NAMES[1:]]
