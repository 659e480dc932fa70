"""Tests for benchmark.commands.fetch against a tiny HTTP server on 127.0.0.1 (no other address is touched).

The archives are built from the real sample files in ../shared/fixtures, served by our own
handler that honours ``Range`` (or, in one mode, ignores it, or breaks off mid-body); the item
rows are the real ones from the tables with only URL and checksum pointed at the local server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchmark import cli
from benchmark.commands import fetch
from benchmark.commands.fetch import (
    COCO_ITEMS,
    DATASET_ITEMS,
    MPII_ITEMS,
    Item,
    fetch_dataset,
    fetch_items,
)

COCO_IMAGES = ("000000000785.jpg", "000000040083.jpg", "000000196141.jpg", "000000197388.jpg")
MPII_IMAGES = ("004645041.jpg", "005808361.jpg", "051423444.jpg", "052475643.jpg", "060754485.jpg")


class LocalServer:
    """Serves ``files`` (URL path -> bytes) and records every request's path and Range header."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.ignore_range = False
        self.break_after: int | None = None  # send a full Content-Length, then only this many bytes
        self.requests: list[tuple[str, str | None]] = []
        self.sent_bytes = 0
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                range_header = self.headers.get("Range")
                state.requests.append((self.path, range_header))
                body = state.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if range_header is not None and not state.ignore_range:
                    start = int(range_header.removeprefix("bytes=").removesuffix("-"))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if state.break_after is not None:
                    payload = payload[: state.break_after]
                # Counted before the write: the client may finish reading, and the test assert, before
                # this thread runs again after write() returns.
                state.sent_bytes += len(payload)
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to open a connection to anything but 127.0.0.1."""
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        assert address[0] == "127.0.0.1", f"test tried to reach {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)


@pytest.fixture
def serve() -> Iterator:
    servers: list[LocalServer] = []

    def start(files: dict[str, bytes]) -> LocalServer:
        servers.append(LocalServer(files))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _item(table: tuple[Item, ...], name: str, url: str, data: bytes, algorithm: str = "md5") -> Item:
    """The real row ``name`` of ``table``, pointed at ``url`` with the checksum of ``data``."""
    row = next(item for item in table if item.name == name)
    digest = hashlib.new(algorithm, data).hexdigest()
    return dataclasses.replace(row, url=url, checksum=f"{algorithm}:{digest}", source="the test")


@pytest.fixture
def val_zip(coco_fixture_dir: Path) -> bytes:
    return _zip({f"val2017/{name}": (coco_fixture_dir / name).read_bytes() for name in COCO_IMAGES})


def test_coco_download_checksum_and_extraction_into_layout(serve, coco_fixture_dir, val_zip, tmp_path, capsys):
    keypoints = (coco_fixture_dir / "test_coco.json").read_bytes()
    annotations_zip = _zip({
        "annotations/person_keypoints_val2017.json": keypoints,
        "annotations/person_keypoints_train2017.json": keypoints,  # a stand-in: same format
        "annotations/instances_val2017.json": b"{}",
    })
    server = serve({"/zips/val2017.zip": val_zip, "/annotations/trainval.zip": annotations_zip})
    items = [
        _item(COCO_ITEMS, "val2017", server.url("/zips/val2017.zip"), val_zip),
        _item(COCO_ITEMS, "annotations", server.url("/annotations/trainval.zip"), annotations_zip),
    ]

    assert fetch_items(items, tmp_path) == 0

    for name in COCO_IMAGES:
        assert (tmp_path / "val2017" / name).read_bytes() == (coco_fixture_dir / name).read_bytes()
    assert (tmp_path / "annotations" / "person_keypoints_val2017.json").read_bytes() == keypoints
    assert not (tmp_path / "annotations" / "instances_val2017.json").exists()  # only keypoint files
    assert (tmp_path / "downloads" / "val2017.zip").read_bytes() == val_zip
    assert (tmp_path / "downloads" / "annotations_trainval2017.zip").read_bytes() == annotations_zip
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == [
        "annotations_trainval2017.zip", "annotations_trainval2017.zip.extracted",
        "val2017.zip", "val2017.zip.extracted",
    ]  # no .part, no scratch folder
    assert server.requests == [("/zips/val2017.zip", None), ("/annotations/trainval.zip", None)]
    out = capsys.readouterr().out
    assert "[ok     ] val2017" in out and "[ok     ] annotations/person_keypoints_val2017.json" in out

    assert fetch_items(items, tmp_path) == 0  # second run: verified stamps, no traffic
    assert len(server.requests) == 2
    assert capsys.readouterr().out.count("already extracted") == 2


def test_mpii_tar_gz_sha256_extracts_into_images(serve, mpii_fixture_dir, tmp_path):
    data = _tar_gz({f"images/{name}": (mpii_fixture_dir / name).read_bytes() for name in MPII_IMAGES})
    server = serve({"/mpii.tar.gz": data})
    item = _item(MPII_ITEMS, "images", server.url("/mpii.tar.gz"), data, algorithm="sha256")

    assert fetch_items([item], tmp_path) == 0

    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(MPII_IMAGES)
    for name in MPII_IMAGES:
        assert (tmp_path / "images" / name).read_bytes() == (mpii_fixture_dir / name).read_bytes()


@pytest.mark.parametrize("ignore_range", [False, True], ids=["range-honoured", "range-ignored"])
def test_partial_download_resumes_with_a_range_request(serve, val_zip, tmp_path, ignore_range):
    """A half-downloaded .part is resumed with a Range request; a server that ignores it sends the whole file, and
    the result is the correct file either way."""
    server = serve({"/val.zip": val_zip})
    server.ignore_range = ignore_range
    item = _item(COCO_ITEMS, "val2017", server.url("/val.zip"), val_zip)
    half = len(val_zip) // 2
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "val2017.zip.part").write_bytes(val_zip[:half])

    assert fetch_items([item], tmp_path) == 0

    assert server.requests == [("/val.zip", f"bytes={half}-")]
    assert server.sent_bytes == (len(val_zip) if ignore_range else len(val_zip) - half)
    assert (tmp_path / "downloads" / "val2017.zip").read_bytes() == val_zip
    assert not (tmp_path / "downloads" / "val2017.zip.part").exists()


def test_broken_off_download_keeps_the_part_and_the_next_run_resumes(serve, val_zip, tmp_path, capsys):
    server = serve({"/val.zip": val_zip})
    server.break_after = 1000
    item = _item(COCO_ITEMS, "val2017", server.url("/val.zip"), val_zip)

    assert fetch_items([item], tmp_path) == 1
    assert "run the command again to resume" in capsys.readouterr().err
    part = tmp_path / "downloads" / "val2017.zip.part"
    assert part.read_bytes() == val_zip[:1000]
    assert not (tmp_path / "downloads" / "val2017.zip").exists()

    server.break_after = None
    assert fetch_items([item], tmp_path) == 0
    assert server.requests[-1] == ("/val.zip", "bytes=1000-")
    assert (tmp_path / "downloads" / "val2017.zip").read_bytes() == val_zip


def test_complete_part_answered_416_is_verified_and_kept(serve, val_zip, tmp_path):
    server = serve({"/val.zip": val_zip})
    item = _item(COCO_ITEMS, "val2017", server.url("/val.zip"), val_zip)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "val2017.zip.part").write_bytes(val_zip)

    assert fetch_items([item], tmp_path) == 0

    assert server.requests == [("/val.zip", f"bytes={len(val_zip)}-")]
    assert server.sent_bytes == 0
    assert (tmp_path / "downloads" / "val2017.zip").read_bytes() == val_zip


def test_wrong_checksum_names_file_and_both_checksums_and_leaves_nothing(serve, val_zip, tmp_path, capsys):
    server = serve({"/val.zip": val_zip})
    expected = hashlib.md5(b"some other archive").hexdigest()
    item = dataclasses.replace(
        _item(COCO_ITEMS, "val2017", server.url("/val.zip"), val_zip), checksum=f"md5:{expected}"
    )

    assert fetch_items([item], tmp_path) == 1

    err = capsys.readouterr().err
    assert "val2017.zip" in err
    assert expected in err
    assert hashlib.md5(val_zip).hexdigest() in err
    assert not (tmp_path / "downloads" / "val2017.zip").exists()
    assert not (tmp_path / "downloads" / "val2017.zip.part").exists()
    assert not (tmp_path / "val2017").exists()


def test_present_and_correct_archive_makes_no_request(serve, coco_fixture_dir, val_zip, tmp_path, capsys):
    server = serve({"/val.zip": val_zip})
    item = _item(COCO_ITEMS, "val2017", server.url("/val.zip"), val_zip)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "val2017.zip").write_bytes(val_zip)

    assert fetch_items([item], tmp_path) == 0

    assert server.requests == []
    assert f"{item.checksum} ok" in capsys.readouterr().out
    assert (tmp_path / "val2017" / COCO_IMAGES[0]).read_bytes() == (coco_fixture_dir / COCO_IMAGES[0]).read_bytes()


def test_present_but_corrupt_archive_is_reported_and_fetched_again(serve, val_zip, tmp_path, capsys):
    server = serve({"/val.zip": val_zip})
    item = _item(COCO_ITEMS, "val2017", server.url("/val.zip"), val_zip)
    corrupt = val_zip[:-1] + bytes([val_zip[-1] ^ 0xFF])
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "val2017.zip").write_bytes(corrupt)

    assert fetch_items([item], tmp_path) == 0

    out = capsys.readouterr().out
    assert "corrupt" in out
    assert hashlib.md5(corrupt).hexdigest() in out and hashlib.md5(val_zip).hexdigest() in out
    assert server.requests == [("/val.zip", None)]
    assert (tmp_path / "downloads" / "val2017.zip").read_bytes() == val_zip


def test_data_already_in_place_without_archive_is_not_downloaded_again(serve, val_zip, tmp_path, capsys):
    server = serve({"/val.zip": val_zip})
    item = _item(COCO_ITEMS, "val2017", server.url("/val.zip"), val_zip)
    (tmp_path / "val2017").mkdir()
    (tmp_path / "val2017" / "000000000139.jpg").write_bytes(b"placed by hand")

    assert fetch_items([item], tmp_path) == 0

    assert server.requests == []
    assert "not verified" in capsys.readouterr().out
    assert (tmp_path / "val2017" / "000000000139.jpg").read_bytes() == b"placed by hand"


def test_refused_connection_fails_at_once_naming_host_and_manual_step(tmp_path, capsys, monkeypatch):
    with socket.socket() as probe:  # a port that was free a moment ago and now has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/zips/val2017.zip"
    item = dataclasses.replace(COCO_ITEMS[1], url=url)

    attempts = []
    real_open = fetch._open

    def counted(*args, **kwargs):
        attempts.append(args[3] if len(args) > 3 else kwargs.get("connect_timeout"))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(fetch, "_open", counted)
    code = fetch_items([item], tmp_path)

    assert code == 1
    # "At once": one connection attempt under the short connect timeout, no retries (no wall clock).
    assert attempts == [fetch.CONNECT_TIMEOUT_S]
    err = capsys.readouterr().err
    assert f"cannot reach 127.0.0.1:{port}" in err
    assert f"download manually from {url} and place it at {tmp_path / 'downloads' / 'val2017.zip'}" in err


@pytest.mark.parametrize("dataset", ["coco", "mpii"])
def test_list_prints_every_item_and_fetches_nothing(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("--list opened a connection"))

    assert fetch_dataset(dataset, tmp_path, list_only=True) == 0

    out = capsys.readouterr().out
    for item in DATASET_ITEMS[dataset]:
        assert f"{item.name} (" in out
        assert item.url in out
        if item.checksum is not None:
            assert item.checksum in out
    assert list(tmp_path.iterdir()) == []


def test_cli_dispatches_fetch_list(tmp_path, capsys):
    assert cli.main(["data", "fetch", "mpii", "--root", str(tmp_path), "--list"]) == 0
    assert MPII_ITEMS[0].url in capsys.readouterr().out


def test_manual_item_prints_its_steps_and_the_layout(tmp_path, capsys):
    assert fetch_dataset("coco", tmp_path, only=["detections"]) == 0

    out = capsys.readouterr().out
    dest = tmp_path / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json"
    assert "Manual steps" in out
    assert "https://drive.google.com/drive/folders/1fRUDNUDxe9fjqcRZ2bnF_TKMlO0nB_dk" in out
    assert f"place it at {dest}" in out
    assert "[missing] person_detection_results/COCO_val2017_detections_AP_H_56_person.json" in out
    assert "[missing] train2017" in out


def test_manual_file_in_place_is_checked_against_the_known_checksum(tmp_path, capsys, coco_fixture_dir):
    dest = tmp_path / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json"
    dest.parent.mkdir()
    dest.write_bytes((coco_fixture_dir / "test_coco_det_AP_H_56.json").read_bytes())  # a sample, not the file

    assert fetch_dataset("coco", tmp_path, only=["detections"]) == 0

    out, err = capsys.readouterr()
    assert "warning" in err and hashlib.sha256(dest.read_bytes()).hexdigest() in err  # a warning goes to stderr
    assert "Manual steps" not in out
    assert "[ok     ] person_detection_results/COCO_val2017_detections_AP_H_56_person.json" in out


def test_unknown_item_name_is_an_error_listing_the_items(tmp_path, capsys):
    assert fetch_dataset("mpii", tmp_path, only=["pictures"]) == 2
    err = capsys.readouterr().err
    assert "pictures" in err and "images" in err and "annotations" in err


def test_archive_member_escaping_the_root_is_refused(serve, tmp_path, capsys):
    data = _zip({"val2017/ok.jpg": b"x", "val2017/../../escaped.txt": b"y"})
    server = serve({"/evil.zip": data})
    root = tmp_path / "root"
    item = _item(COCO_ITEMS, "val2017", server.url("/evil.zip"), data)

    assert fetch_items([item], root) == 1

    assert "outside" in capsys.readouterr().err
    assert not (tmp_path / "escaped.txt").exists()
    assert not (root / "val2017").exists()
    assert sorted(p.name for p in (root / "downloads").iterdir()) == ["val2017.zip"]  # no scratch left


def test_tables_cover_the_documented_layouts():
    """README.md, Datasets: COCO annotations/, train2017/, val2017/, person_detection_results/; MPII annot/, images/."""
    coco = {path for item in COCO_ITEMS for path in item.provides}
    mpii = {path for item in MPII_ITEMS for path in item.provides}
    assert coco == {
        "annotations/person_keypoints_train2017.json", "annotations/person_keypoints_val2017.json",
        "train2017", "val2017", "person_detection_results/COCO_val2017_detections_AP_H_56_person.json",
    }
    assert mpii == {"annot/train.json", "annot/valid.json", "annot/gt_valid.mat", "images"}
    digest_lengths = {"md5": 32, "sha256": 64}
    for item in COCO_ITEMS + MPII_ITEMS:
        assert item.url.startswith(("http://", "https://"))
        if item.manual is None:
            algorithm, _, digest = item.checksum.partition(":")
            assert len(digest) == digest_lengths[algorithm] and int(digest, 16) >= 0


def test_item_without_checksum_or_size_is_rejected():
    with pytest.raises(ValueError, match="checksum or an expected size"):
        Item(name="x", url="http://127.0.0.1/x.zip", path="x.zip", provides=("x",))
