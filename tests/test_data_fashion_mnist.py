"""The builtin dataset, materialised for real from Debian's dataset-fashion-mnist into a fresh FTX_HOME.

The IDX files come through the same path a user's first run takes: the
installed package if present, else ``apt-get download`` + ``dpkg-deb -x`` into
the cache (about 31 MB, a few seconds from the Debian mirror).
"""

from __future__ import annotations

import csv
import shutil
import stat

import numpy as np
import pytest
from PIL import Image

from training.atomic import staged_directory
from training.data import DataError, load_splits
from training.data import fashion_mnist as fm

pytestmark = pytest.mark.skipif(
    not fm._has_idx(fm.DEBIAN_DIR) and shutil.which("apt-get") is None,
    reason="needs Debian's dataset-fashion-mnist package (installed, or apt-get to fetch it)",
)


def test_materialise_real_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("FTX_HOME", str(tmp_path))
    root = fm.materialise()
    assert root == tmp_path / "datasets" / "fashion-mnist-small"
    for split, per_class in (("train", 28), ("valid", 12)):
        folders = sorted((root / split).iterdir(), key=lambda p: int(p.name))
        assert [p.name for p in folders] == [str(i) for i in range(10)]
        assert all(len(list(folder.glob("*.png"))) == per_class for folder in folders)
    train = {p.name for p in (root / "train").glob("*/*.png")}
    valid = {p.name for p in (root / "valid").glob("*/*.png")}
    assert len(train) == 280 and len(valid) == 120 and train.isdisjoint(valid)  # names are source indices
    with (root / "Test.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10_000 and len(list((root / "Test").glob("*.png"))) == 10_000
    assert list(rows[0]) == ["Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId", "Path"]
    assert rows[0]["Path"] == "Test/00000.png" and {r["ClassId"] for r in rows} == {str(i) for i in range(10)}
    for path in [*(root / "train" / "3").glob("*.png"), root / "Test" / "09999.png"]:
        with Image.open(path) as image:
            assert (image.size, image.mode) == ((28, 28), "L")
    names = (root / "class_names.csv").read_text().splitlines()
    assert names[0] == "ClassId,Name" and names[1] == "0,T-shirt/top" and names[10] == "9,Ankle boot"

    manifest = root / fm.MANIFEST  # a complete copy is reused, not rewritten
    before = manifest.stat().st_mtime_ns
    assert fm.materialise() == root and manifest.stat().st_mtime_ns == before

    splits = load_splits("fashion-mnist", strict=True)
    assert splits.source == str(root) and splits.layout == "split-folders"
    assert splits.class_ids == tuple(str(i) for i in range(10)) and splits.class_names == fm.CLASS_NAMES
    assert (len(splits.train), len(splits.valid), len(splits.test), len(splits.skipped)) == (280, 120, 10_000, 0)

    picks = fm.sample_indices(fm.load_arrays().train_labels)  # the sample is a pure function of the seed
    assert sorted(int(p.stem) for p in (root / "valid" / "4").glob("*.png")) == picks[4][1].tolist()


def _tiny_arrays() -> fm.FashionArrays:
    labels = np.repeat(np.arange(10, dtype=np.uint8), 40)
    images = np.zeros((400, 28, 28), np.uint8)
    return fm.FashionArrays(images, labels, images[:5], labels[:5], source="synthetic")


def test_an_interrupted_copy_never_looks_complete(tmp_path, monkeypatch):
    real_write = fm._write

    def write_then_die(stage, arrays):
        real_write(stage, arrays)
        raise KeyboardInterrupt

    monkeypatch.setattr(fm, "load_arrays", _tiny_arrays)  # the data source is not under test here
    monkeypatch.setattr(fm, "_write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        fm.materialise(tmp_path / "fm")
    assert list(tmp_path.iterdir()) == []  # neither the destination nor a partial copy
    monkeypatch.setattr(fm, "_write", real_write)
    assert fm.materialise(tmp_path / "fm") == tmp_path / "fm"
    assert stat.S_IMODE((tmp_path / "fm").stat().st_mode) == 0o755  # the cache may be shared
    assert len(list((tmp_path / "fm" / "train").glob("*/*.png"))) == 280
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="other exists but is not a complete ftx Fashion-MNIST folder"):
        fm.materialise(tmp_path / "other")


def test_staged_directory_is_readable_by_all_and_appears_only_on_success(tmp_path):
    with staged_directory(tmp_path / "done") as stage:
        assert stat.S_IMODE(stage.stat().st_mode) == 0o755  # not mkdtemp's private 0700
        (stage / "f").write_text("x")
    assert (tmp_path / "done" / "f").read_text() == "x"
    with pytest.raises(RuntimeError), staged_directory(tmp_path / "failed"):
        raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done"]
    with pytest.raises(FileExistsError, match="done already exists"):
        with staged_directory(tmp_path / "done"):
            pass
