"""``python -m benchmark data fetch coco|mpii --root DIR``: download what is publicly downloadable.

Every item is a row of data (:class:`Item`): where it comes from, the checksum it must have and
where it lands under the dataset root (the layouts of README.md, "Datasets"). For each item the fetcher
streams to ``DEST.part`` with a progress bar, resumes a partial ``.part`` with an HTTP ``Range``
request (a server that ignores ``Range`` answers 200 and the download starts over), hashes while
it writes, renames into place only when the checksum matches, skips what is already present and
verified, and extracts archives into the dataset layout. Files that are not scriptable (Google
Drive / OneDrive folders) are printed as manual steps. Archives stay in ``ROOT/downloads/``; a
stamp beside each records that it was extracted, so an archive may be deleted afterwards.

Sources of URLs and checksums (the dataset hosts publish none themselves):

- COCO 2017 (https://cocodataset.org/#download): ``http://images.cocodataset.org/zips/train2017.zip``,
  ``.../zips/val2017.zip``, ``.../annotations/annotations_trainval2017.zip``. MD5s from
  PaddlePaddle/PaddleDetection ``ppdet/utils/download.py`` (``DATASETS['coco']``), the same
  values as the ``md5sum`` notes in intel/neural-compressor
  ``examples/pytorch/fx/object_detection/maskrcnn/download_dataset.sh``.
- COCO val2017 person detections ``COCO_val2017_detections_AP_H_56_person.json`` (detector with
  56.4 person AP): published only in HRNet's Google Drive / OneDrive folders
  (leoxiaobin/deep-high-resolution-net.pytorch ``README.md``, "Data preparation"; MMPose's
  ``docs/tasks/2d_body_keypoint.md`` points to the same folders). Folder links are not
  scriptable with urllib: a manual step. Its SHA-256 ``53ba0ad8...592d59`` is not published by
  HRNet; it is what two third-party records in the stored code index (a MambaPose reproduction
  manifest and an RTMPose deployment README) list for their copies, so a mismatch is only a
  warning.
- MPII (http://human-pose.mpi-inf.mpg.de/#download, "Images (12.9 GB)"):
  ``https://datasets.d2.mpi-inf.mpg.de/andriluka14cvpr/mpii_human_pose_v1.tar.gz`` (URL as in
  isarandi/metrabs ``dataset_preparation/get_mpii.sh`` and TensorFlow Datasets' MPII builder).
  MPI publishes no checksum; the SHA-256 ``6d26fbf8...0998ce`` is the only one found, in
  lorenzoh/DLDatasets.jl ``src/datasets/mpii.jl`` (commit 0f60d2e), a Julia DataDeps
  registration, which checks it on every download (its earlier revision carried a copy-pasted
  hash that this one corrects).
- MPII JSON annotations in HRNet's form (``train.json``, ``valid.json``, ``gt_valid.mat``):
  HRNet's Google Drive / OneDrive folders (same README): a manual step. MMPose serves a JSON
  conversion of the same form at ``https://download.openmmlab.com/mmpose/datasets/mpii_annotations.tar``
  (MMPose ``docs/en/dataset_zoo/2d_body_keypoint.md``), named ``mpii_train.json``,
  ``mpii_val.json``, ``mpii_gt_val.mat``; no checksum or size is published for it, so it is named
  in the manual step rather than fetched.
- The original MATLAB annotations ``mpii_human_pose_v1_u12_2.zip`` (same MPI host, "Annotations
  (12.5 MB)") are not fetched: no checksum or exact byte size is published anywhere found, and
  the loaders read HRNet's JSON + ``gt_valid.mat`` instead.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tqdm import tqdm

from benchmark.errors import PoseBenchError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0  # short, so an offline machine fails at once
READ_TIMEOUT_S = 120.0  # generous, so a slow mirror does not abort a 19 GB download
CHUNK_BYTES = 1 << 20
DOWNLOAD_DIR = "downloads"
HASH_ALGORITHMS = ("md5", "sha256")
USER_AGENT = "posebench-fetch/0.1 (+python urllib)"


def _archive_kind(path: str) -> str | None:
    if path.endswith(".zip"):
        return "zip"
    if path.endswith((".tar", ".tar.gz", ".tgz")):
        return "tar"
    return None


class FetchError(PoseBenchError):
    """A download, checksum or extraction failed; the message says what to do by hand."""


@dataclass(frozen=True)
class Item:
    """One thing to fetch (or to place by hand) under a dataset root.

    ``path`` is where the file itself goes, relative to the root. ``checksum`` is
    ``"md5:<hex>"`` or ``"sha256:<hex>"``; ``size`` (bytes) stands in where no checksum is
    published; ``source`` says where they were published. ``extract`` maps member-name prefixes
    inside the archive to destination prefixes under the root (members matching no prefix are
    skipped). ``provides`` are the paths under the root that exist once the item is done (the
    layout). ``manual`` holds the steps for an item that cannot be scripted; a manual item's
    checksum is advisory (a mismatch warns).
    """

    name: str
    url: str
    path: str
    provides: tuple[str, ...]
    checksum: str | None = None
    size: int | None = None
    source: str = ""
    extract: tuple[tuple[str, str], ...] = ()
    manual: str | None = None

    def __post_init__(self) -> None:
        if self.checksum is not None:
            algorithm, _, digest = self.checksum.partition(":")
            if algorithm not in HASH_ALGORITHMS or not digest:
                raise ValueError(f"item {self.name!r}: checksum {self.checksum!r} is not md5:<hex> or sha256:<hex>")
        if self.manual is None and self.checksum is None and self.size is None:
            raise ValueError(f"item {self.name!r}: a download needs a checksum or an expected size")
        if self.extract and not _archive_kind(self.path):
            raise ValueError(f"item {self.name!r}: {self.path!r} is not a .zip, .tar, .tar.gz or .tgz archive")

    def verification(self) -> str:
        """How the file is checked, for listings and stamps."""
        if self.checksum is not None:
            return self.checksum
        if self.size is not None:
            return f"size:{self.size} (no published checksum)"
        return "none published"


_HRNET_README = "leoxiaobin/deep-high-resolution-net.pytorch README.md"
_PADDLE = "PaddlePaddle/PaddleDetection ppdet/utils/download.py"

COCO_ITEMS: tuple[Item, ...] = (
    Item(
        name="train2017",
        url="http://images.cocodataset.org/zips/train2017.zip",
        path=f"{DOWNLOAD_DIR}/train2017.zip",
        checksum="md5:cced6f7f71b7629ddf16f17bbcfab6b2",
        source=_PADDLE,
        extract=(("train2017/", "train2017/"),),
        provides=("train2017",),
    ),
    Item(
        name="val2017",
        url="http://images.cocodataset.org/zips/val2017.zip",
        path=f"{DOWNLOAD_DIR}/val2017.zip",
        checksum="md5:442b8da7639aecaf257c1dceb8ba8c80",
        source=_PADDLE,
        extract=(("val2017/", "val2017/"),),
        provides=("val2017",),
    ),
    Item(
        name="annotations",
        url="http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
        path=f"{DOWNLOAD_DIR}/annotations_trainval2017.zip",
        checksum="md5:f4bbac642086de4f52a3fdda2de5fa2c",
        source=_PADDLE,
        # Only the keypoint files: the instance and caption files are not used here.
        extract=(("annotations/person_keypoints_", "annotations/person_keypoints_"),),
        provides=("annotations/person_keypoints_train2017.json", "annotations/person_keypoints_val2017.json"),
    ),
    Item(
        name="detections",
        url="https://drive.google.com/drive/folders/1fRUDNUDxe9fjqcRZ2bnF_TKMlO0nB_dk",
        path="person_detection_results/COCO_val2017_detections_AP_H_56_person.json",
        checksum="sha256:53ba0ad8d0fd461c5a000cd90797fa8c39cd8c38cd125125c0412626ff592d59",
        source="third-party copies (not published by HRNet); see the module docstring",
        provides=("person_detection_results/COCO_val2017_detections_AP_H_56_person.json",),
        manual=(
            "HRNet publishes the COCO val2017 person detections (person AP 56.4) only in a Google Drive\n"
            "folder https://drive.google.com/drive/folders/1fRUDNUDxe9fjqcRZ2bnF_TKMlO0nB_dk or a OneDrive\n"
            f"folder https://1drv.ms/f/s!AhIXJn_J-blWzzDXoz5BeFl8sWM- ({_HRNET_README}). Download\n"
            "COCO_val2017_detections_AP_H_56_person.json from either and place it at {dest}."
        ),
    ),
)

MPII_ITEMS: tuple[Item, ...] = (
    Item(
        name="images",
        url="https://datasets.d2.mpi-inf.mpg.de/andriluka14cvpr/mpii_human_pose_v1.tar.gz",
        path=f"{DOWNLOAD_DIR}/mpii_human_pose_v1.tar.gz",
        checksum="sha256:6d26fbf89f49a7aeff4aa5f98123763f334693806b98eb15630f57a0b50998ce",
        source="lorenzoh/DLDatasets.jl src/datasets/mpii.jl (third party; MPI publishes none)",
        extract=(("images/", "images/"),),
        provides=("images",),
    ),
    Item(
        name="annotations",
        url="https://drive.google.com/drive/folders/1En_VqmStnsXMdldXA6qpqEyDQulnmS3a",
        path="annot/train.json",
        provides=("annot/train.json", "annot/valid.json", "annot/gt_valid.mat"),
        manual=(
            "HRNet's JSON form of the MPII annotations (train.json, valid.json, gt_valid.mat) is published\n"
            "in a Google Drive folder https://drive.google.com/drive/folders/1En_VqmStnsXMdldXA6qpqEyDQulnmS3a\n"
            f"or a OneDrive folder https://1drv.ms/f/s!AhIXJn_J-blW00SqrairNetmeVu4 ({_HRNET_README}).\n"
            "Download the three files and place them in {root}/annot/. MMPose serves JSON annotations of the\n"
            "same form at https://download.openmmlab.com/mmpose/datasets/mpii_annotations.tar (no published\n"
            "checksum): there rename mpii_train.json -> train.json, mpii_val.json -> valid.json,\n"
            "mpii_gt_val.mat -> gt_valid.mat."
        ),
    ),
)

DATASET_ITEMS: dict[str, tuple[Item, ...]] = {"coco": COCO_ITEMS, "mpii": MPII_ITEMS}


def fetch_dataset(dataset: str, root: Path, only: list[str] | None = None, list_only: bool = False) -> int:
    """Fetch the public parts of ``dataset`` ("coco" or "mpii") into ``root``; returns the exit code."""
    if dataset not in DATASET_ITEMS:
        log.error(f"error: unknown dataset {dataset!r}; choose one of {', '.join(DATASET_ITEMS)}")
        return 2
    return fetch_items(DATASET_ITEMS[dataset], root, only=only, list_only=list_only)


def fetch_items(
    items: Sequence[Item],
    root: Path,
    *,
    only: Sequence[str] | None = None,
    list_only: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
) -> int:
    """Fetch ``items`` into ``root`` (or list them); returns 0, 1 on a failed item, 2 on bad names.

    Stops at the first failure: the message names the host or file and the manual way round.
    """
    names = [item.name for item in items]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        log.error(f"error: unknown item(s) {', '.join(unknown)}; items are: {', '.join(names)}")
        return 2
    selected = [item for item in items if not only or item.name in only]
    root = Path(root)
    if list_only:
        log.info(format_items(selected, root))
        return 0
    opener = _opener(read_timeout)
    pending_manual: list[Item] = []
    try:
        for item in selected:
            if item.manual is not None:
                if not _check_manual(item, root):
                    pending_manual.append(item)
            else:
                _fetch_one(item, root, opener, connect_timeout)
    except FetchError as error:
        log.error(f"error: {error}")
        return 1
    if pending_manual:
        log.info("\nManual steps (not scriptable):")
        for number, item in enumerate(pending_manual, start=1):
            log.info(f"{number}. [{item.name}] " + _manual_text(item, root).replace("\n", "\n   "))
    if any(item.extract for item in selected):
        log.info(f"\nArchives are kept in {root / DOWNLOAD_DIR}; once extracted they may be deleted "
              "(the .extracted stamps stop them being fetched again).")
    log.info("\n" + format_layout(items, root))
    return 0


def format_items(items: Sequence[Item], root: Path) -> str:
    """The ``--list`` text: name, kind, URL, checksum (and its source) and destination of each item."""
    lines = []
    for item in items:
        kind = "manual" if item.manual is not None else "download"
        lines += [
            f"{item.name} ({kind})",
            f"  url:      {item.url}",
            f"  verify:   {item.verification()}" + (f"  [{item.source}]" if item.source else ""),
        ]
        if item.manual is None:
            lines.append(f"  file:     {root / item.path}")
        lines.append(f"  yields:   {', '.join(str(root / p) for p in item.provides)}")
    return "\n".join(lines)


def format_layout(items: Sequence[Item], root: Path) -> str:
    """The expected layout under ``root`` with each path marked present or missing."""
    lines = [f"Expected layout of {root}:"]
    for item in items:
        for relative in item.provides:
            mark = "ok     " if (root / relative).exists() else "missing"
            lines.append(f"  [{mark}] {relative}")
    return "\n".join(lines)


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of ``path``, read in chunks (a 19 GB archive never sits in memory)."""
    hasher = hashlib.new(algorithm)
    with path.open("rb") as stream, _bar(path.stat().st_size, 0, f"verify {path.name}") as bar:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            hasher.update(chunk)
            bar.update(len(chunk))
    return hasher.hexdigest()


def _fetch_one(item: Item, root: Path, opener: urllib.request.OpenerDirector, connect_timeout: float) -> None:
    dest = root / item.path
    stamp = dest.with_name(dest.name + ".extracted")
    provided = all((root / p).exists() for p in item.provides)
    if item.extract and provided and _stamp_matches(stamp, item):
        log.info(f"{item.name}: already extracted ({', '.join(item.provides)}), skipping")
        return
    if item.extract and provided and not dest.exists():
        # Put there by hand or by another tool: never download 19 GB over existing data.
        log.info(f"{item.name}: {', '.join(item.provides)} already present (not fetched here, so not verified); "
              "skipping — delete it to fetch it again")
        return
    if dest.exists():
        problem = _verify(dest, item)
        if problem is None:
            log.info(f"{item.name}: {dest} present, {item.verification()} ok")
        else:
            log.info(f"{item.name}: {dest} is corrupt ({problem}); fetching it again")
            dest.unlink()
    if not dest.exists():
        _download(item, dest, opener, connect_timeout)
    if item.extract:
        _extract(item, dest, root)
        stamp.write_text(f"{item.verification()}\n")


def _download(item: Item, dest: Path, opener: urllib.request.OpenerDirector, connect_timeout: float) -> None:
    """Stream ``item.url`` into ``dest.part`` (resuming it), verify, then rename to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    hint = f"download manually from {item.url} and place it at {dest}"
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(item.url, offset, opener, connect_timeout, hint)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code != 416 or not offset:
            raise FetchError(f"HTTP {error.code} {error.reason} from {item.url} — {hint}") from error
        # Nothing left to send: the .part may be whole already (interrupted before its rename).
        if _verify(part, item) is None:
            os.replace(part, dest)
            log.info(f"{item.name}: {part} was already complete; {item.verification()} ok")
            return
        part.unlink()
        _download(item, dest, opener, connect_timeout)
        return
    with response:
        start = _range_start(response) if response.status == 206 else 0
        if start not in (0, offset):
            raise FetchError(f"{item.url} answered with bytes from {start} when asked from {offset}; "
                             f"delete {part} and run again, or {hint}")
        # A 200 answer means the server ignored Range: the download starts over.
        resumed = offset > 0 and start == offset
        digest, received = _stream(item, response, part, resumed, hint)
    problem = _mismatch(item, digest, received)
    if problem is not None:
        part.unlink()
        raise FetchError(f"{dest.name} from {item.url} failed verification: {problem}; removed the download")
    os.replace(part, dest)
    log.info(f"{item.name}: saved {dest} ({item.verification()} ok)")


def _open(
    url: str, offset: int, opener: urllib.request.OpenerDirector, connect_timeout: float, hint: str
) -> http.client.HTTPResponse:
    """GET ``url`` from byte ``offset``; unreachable hosts become a FetchError, HTTP errors pass through."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    host = urllib.parse.urlsplit(url).netloc
    try:
        return opener.open(request, timeout=connect_timeout)
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, OSError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise FetchError(f"cannot reach {host}: {reason} — {hint}") from error
    except http.client.HTTPException as error:
        raise FetchError(f"bad HTTP answer from {host}: {error!r} — {hint}") from error


def _stream(
    item: Item, response: http.client.HTTPResponse, part: Path, resumed: bool, hint: str
) -> tuple[str | None, int]:
    """Write the body to ``part`` (appending when ``resumed``); returns (hex digest or None, bytes in part)."""
    offset = part.stat().st_size if resumed else 0
    hasher = hashlib.new(item.checksum.partition(":")[0]) if item.checksum is not None else None
    if resumed:
        log.info(f"{item.name}: resuming {part.name} at byte {offset}")
        if hasher is not None:
            with part.open("rb") as stream:
                for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
                    hasher.update(chunk)
    length = response.headers.get("Content-Length")
    announced = offset + int(length) if length and length.isdigit() else None
    broke_off = f"run the command again to resume {part}, or {hint}"
    try:
        with part.open("ab" if resumed else "wb") as out, _bar(announced or item.size, offset, item.name) as bar:
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                out.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as error:
        received = part.stat().st_size
        raise FetchError(f"download of {item.url} broke off after {received} bytes ({error}); {broke_off}") from error
    # http.client returns an empty read when the peer closes early, so the length is checked here.
    received = part.stat().st_size
    if announced is not None and received < announced:
        raise FetchError(f"download of {item.url} broke off after {received} of {announced} bytes; {broke_off}")
    return (hasher.hexdigest() if hasher is not None else None), received


def _extract(item: Item, archive: Path, root: Path) -> None:
    """Extract the members named by ``item.extract`` into a scratch folder, then move them into ``root``."""
    scratch = root / DOWNLOAD_DIR / f".extract-{item.name}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        count = _extract_members(item, archive, scratch)
        if count == 0:
            prefixes = ", ".join(prefix for prefix, _ in item.extract)
            raise FetchError(
                f"{archive} has no files under {prefixes}; its layout is not the expected one — "
                f"extract it by hand so that {', '.join(item.provides)} exist under {root}"
            )
        for entry in scratch.iterdir():
            _merge(entry, root / entry.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    missing = [p for p in item.provides if not (root / p).exists()]
    if missing:
        raise FetchError(f"{archive} did not contain {', '.join(missing)}; place them under {root} by hand")
    log.info(f"{item.name}: extracted {count} files into {', '.join(str(root / p) for p in item.provides)}")


def _extract_members(item: Item, archive: Path, scratch: Path) -> int:
    """Write the mapped members of ``archive`` under ``scratch``; returns the number of files."""
    count = 0
    try:
        for name, is_dir, open_member in _members(archive):
            relative = _map_member(name, item.extract)
            if relative is None:
                continue
            target = (scratch / relative).resolve()
            if not target.is_relative_to(scratch.resolve()):
                raise FetchError(f"{archive}: member {name!r} would be written outside the root; refusing to extract")
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with open_member() as source, target.open("wb") as out:
                shutil.copyfileobj(source, out, CHUNK_BYTES)
            count += 1
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise FetchError(f"{archive} is not a readable archive ({error}); delete it and run again") from error
    return count


def _members(archive: Path) -> Iterator[tuple[str, bool, Callable[[], IO[bytes]]]]:
    """Yield ``(name, is_dir, open)`` for the regular files and folders of a zip or tar archive."""
    if _archive_kind(archive.name) == "zip":
        with zipfile.ZipFile(archive) as bundle:
            infos = bundle.infolist()
            for info in tqdm(infos, desc=f"extract {archive.name}", unit="file", disable=None):
                yield info.filename, info.is_dir(), functools.partial(bundle.open, info)
        return
    with tarfile.open(archive, mode="r:*") as bundle:
        for member in tqdm(bundle, desc=f"extract {archive.name}", unit="file", disable=None):
            # Links and device files are skipped: an image archive has no business holding them.
            if member.isfile() or member.isdir():
                yield member.name, member.isdir(), functools.partial(_extract_file, bundle, member)


def _map_member(name: str, mapping: tuple[tuple[str, str], ...]) -> str | None:
    name = name.removeprefix("./")
    for source, target in mapping:
        if name.startswith(source) and name != source:
            return target + name[len(source):]
    return None


def _merge(source: Path, target: Path) -> None:
    """Move ``source`` onto ``target``: whole folders by one rename where possible, files replaced."""
    if source.is_dir() and target.is_dir():
        for child in source.iterdir():
            _merge(child, target / child.name)
        return
    if target.is_dir():
        shutil.rmtree(target)
    elif source.is_dir() and target.exists():
        target.unlink()
    os.replace(source, target)


def _check_manual(item: Item, root: Path) -> bool:
    """True when a manual item is already in place (its advisory checksum is checked if it has one)."""
    if not all((root / p).exists() for p in item.provides):
        return False
    dest = root / item.path
    if item.checksum is not None:
        problem = _verify(dest, item)
        if problem is not None:
            log.warning(f"{item.name}: warning: {dest} does not match the checksum of known copies ({problem})")
            return True
    log.info(f"{item.name}: present ({', '.join(item.provides)})")
    return True


def _extract_file(bundle: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    """The contents of a regular-file (or folder) member; ``extractfile`` answers None only for links and devices."""
    stream = bundle.extractfile(member)
    if stream is None:
        raise FetchError(f"{bundle.name!r}: member {member.name!r} has no contents to extract")
    return stream


def _manual_text(item: Item, root: Path) -> str:
    return (item.manual or "").format(root=root, dest=root / item.path)


def _verify(path: Path, item: Item) -> str | None:
    """None when ``path`` matches the item's checksum and size, else what differs."""
    digest = None
    if item.checksum is not None:
        digest = file_digest(path, item.checksum.partition(":")[0])
    return _mismatch(item, digest, path.stat().st_size)


def _mismatch(item: Item, digest: str | None, size: int) -> str | None:
    if item.checksum is not None:
        algorithm, _, expected = item.checksum.partition(":")
        if digest != expected.lower():
            source = f" (published by {item.source})" if item.source else ""
            return f"expected {algorithm} {expected}{source}, got {algorithm} {digest}"
    if item.size is not None and size != item.size:
        return f"expected {item.size} bytes, got {size} bytes"
    return None


def _stamp_matches(stamp: Path, item: Item) -> bool:
    return stamp.is_file() and stamp.read_text() == f"{item.verification()}\n"


def _range_start(response: http.client.HTTPResponse) -> int | None:
    """First byte of a ``Content-Range: bytes START-END/TOTAL`` answer."""
    value = response.headers.get("Content-Range", "")
    unit, _, span = value.partition(" ")
    start = span.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def _bar(total: int | None, initial: int, desc: str) -> tqdm:
    # disable=None: tqdm draws only on a terminal, so logs and tests stay clean.
    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=None)


class _HTTPConnection(http.client.HTTPConnection):
    """Connect (and TLS handshake, in the HTTPS subclass) within the short timeout, then read with the long one."""

    def __init__(self, *args, read_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()  # for _HTTPSConnection: HTTPSConnection.connect, the TLS handshake included
        self.sock.settimeout(self._read_timeout)


class _HTTPSConnection(_HTTPConnection, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self._read_timeout = read_timeout

    def http_open(self, request: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_HTTPConnection, read_timeout=self._read_timeout), request)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self._read_timeout = read_timeout

    def https_open(self, request: urllib.request.Request) -> http.client.HTTPResponse:
        # No context argument: HTTPSConnection's default context, as this handler was built without one.
        return self.do_open(functools.partial(_HTTPSConnection, read_timeout=self._read_timeout), request)


def _opener(read_timeout: float) -> urllib.request.OpenerDirector:
    """A urllib opener (redirects included) whose connections use the two timeouts."""
    return urllib.request.build_opener(_HTTPHandler(read_timeout), _HTTPSHandler(read_timeout))

