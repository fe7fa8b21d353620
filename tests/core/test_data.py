"""core.data: loading, caching, splits, the tensor loader and the CIFAR-20 label table.

Most tests use tiny datasets written into tmp_path, each with its own user cache folder; the
real CIFAR-10 images in ../shared/data/cifar10 are loaded by one session-scoped fixture, with a
cache folder of its own (never a cache an earlier run left behind).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.config import TrialConfig
from core.data import (
    CIFAR10_CLASSES,
    CIFAR20_CLASSES,
    CIFAR100_CLASSES,
    CIFAR100_FINE_TO_COARSE,
    ENV_CACHE_DIR,
    DataBundle,
    DataError,
    DataFormatError,
    DataNotFoundError,
    TensorLoader,
    channel_stats,
    datasets,
    imagefolder,
    load_dataset,
    load_for_config,
    split_data,
)
from core.data.cache import cache_file, cache_key, write_cached
from core.errors import ConfigError
from tests.conftest import CIFAR10


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own user cache folder, no ENSEMBLE_CACHE_DIR (so the default place,
    in that user cache, is used) and no ENSEMBLE_DATA_DIR."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(ENV_CACHE_DIR, raising=False)
    monkeypatch.delenv("ENSEMBLE_DATA_DIR", raising=False)


def decoded_dir(tmp_path: Path) -> Path:
    """The default cache folder under a test's XDG_CACHE_HOME."""
    return tmp_path / "xdg/ensemble-efficiency/decoded"


def listing(root: Path) -> list[str]:
    """Every file and folder under root, hidden ones included, relative to root."""
    out = []
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        out += [os.path.join(rel, n) for n in dirs + files]
    return sorted(out)


def make_imagefolder(
    root: Path, classes=("cat", "dog", "emu"), n_train=6, n_test=3, size=(8, 8), fmt="png",
    seed=0,
):  # fmt: skip
    """Write train/<class>/NNNN.<fmt> and test/...; returns {split: (uint8 N,3,H,W, labels)}."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        xs, ys = [], []
        for label, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i:04d}.{fmt}")
                xs.append(arr.transpose(2, 0, 1))
                ys.append(label)
        out[split] = (torch.from_numpy(np.stack(xs)), torch.tensor(ys))
    return out


def synthetic_bundle(counts=(20, 20, 20), test_counts=(10, 10, 10), hw=6) -> DataBundle:
    """Images whose first two pixels encode their index (to track examples through splits)."""

    def make(cnts):
        n = sum(cnts)
        g = torch.Generator().manual_seed(n)
        x = torch.randint(0, 256, (n, 3, hw, hw), generator=g, dtype=torch.uint8)
        idx = torch.arange(n)
        x[:, 0, 0, 0] = (idx % 256).to(torch.uint8)
        x[:, 0, 0, 1] = (idx // 256).to(torch.uint8)
        y = torch.cat([torch.full((c,), k) for k, c in enumerate(cnts)])
        return x, y

    tx, ty = make(counts)
    sx, sy = make(test_counts)
    return DataBundle(tx, ty, sx, sy, num_classes=len(counts), name="synthetic")


def ids(x: torch.Tensor) -> list[int]:
    return (x[:, 0, 0, 0].long() + 256 * x[:, 0, 0, 1].long()).tolist()


# ------------------------------------------------------------------ image folders


def test_imagefolder_shapes_dtypes_labels_and_pixels(tmp_path):
    truth = make_imagefolder(tmp_path / "ds")
    b = load_dataset("imagefolder", str(tmp_path / "ds"))
    assert b.train_x.shape == (18, 3, 8, 8) and b.train_x.dtype == torch.uint8
    assert b.test_x.shape == (9, 3, 8, 8) and b.test_y.dtype == torch.int64
    assert b.train_y.dtype == torch.int64
    assert b.classes == ["cat", "dog", "emu"] and b.num_classes == 3
    assert b.num_train == 18 and b.val_x is None and b.val_y is None
    assert torch.equal(b.train_x, truth["train"][0])  # PNG is lossless: exact pixels
    assert torch.equal(b.train_y, truth["train"][1])
    assert torch.equal(b.test_x, truth["test"][0])
    assert torch.equal(b.test_y, truth["test"][1])
    px = truth["train"][0].double() / 255
    assert b.mean == pytest.approx(px.mean(dim=(0, 2, 3)).tolist(), abs=1e-9)
    assert b.std == pytest.approx(px.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-9)
    assert "train=18" in repr(b)


def test_jpeg_and_grayscale_images_load_as_rgb(tmp_path):
    make_imagefolder(tmp_path / "ds", fmt="jpg", n_train=2, n_test=1)
    Image.fromarray(np.full((8, 8), 77, np.uint8), mode="L").save(
        tmp_path / "ds/train/cat/gray.png"
    )
    b = load_dataset("imagefolder", tmp_path / "ds")
    assert b.train_x.shape == (7, 3, 8, 8)
    gray = b.train_x[2]  # cat: 0000.jpg, 0001.jpg, gray.png
    assert torch.equal(gray, torch.full((3, 8, 8), 77, dtype=torch.uint8))


def test_cache_written_in_user_cache_and_second_load_equal_and_fast(tmp_path, monkeypatch, capsys):
    root = tmp_path / "ds"
    make_imagefolder(root)
    before = listing(root)
    first = load_dataset("imagefolder", root)
    cache = Path(first.cache_path)
    assert cache.is_file() and cache.parent == decoded_dir(tmp_path)
    assert cache.name.startswith("imagefolder-") and cache.suffix == ".pt"
    assert listing(root) == before  # nothing next to the data, hidden files included
    assert list(decoded_dir(tmp_path).iterdir()) == [cache]
    err = capsys.readouterr().err
    assert err == (
        f"decoded 27 images of {root.resolve()} once; cache: {cache} "
        "(set ENSEMBLE_CACHE_DIR to move it)\n"
    )

    def no_decoding(paths, where=""):
        raise AssertionError("second load must come from the cache")

    monkeypatch.setattr(imagefolder, "decode_files", no_decoding)
    t0 = time.perf_counter()
    second = load_dataset("imagefolder", root)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0
    assert capsys.readouterr().err == ""  # said once, when written
    assert second.cache_path == first.cache_path
    for f in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, f), getattr(second, f))
    assert (first.classes, first.mean, first.std) == (second.classes, second.mean, second.std)


def test_cache_dir_env_var_chooses_the_folder(tmp_path, monkeypatch, capsys):
    root = tmp_path / "ds"
    make_imagefolder(root)
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "elsewhere"))
    b = load_dataset("imagefolder", root)
    assert Path(b.cache_path).parent == tmp_path / "elsewhere"
    assert f"cache: {tmp_path / 'elsewhere'}/imagefolder-" in capsys.readouterr().err
    assert not (tmp_path / "xdg").exists()
    assert load_dataset("imagefolder", root).cache_path == b.cache_path


def test_a_cache_left_in_another_folder_is_not_read(tmp_path, monkeypatch):
    # An earlier run cached doctored pixels in the user cache; with ENSEMBLE_CACHE_DIR
    # elsewhere (as the tests' conftest sets it) that file is neither read nor touched.
    root = tmp_path / "ds"
    truth = make_imagefolder(root)
    earlier = load_dataset("imagefolder", root)
    earlier.train_x.zero_()
    key = cache_key("imagefolder", root, imagefolder.scan_imagefolder(root)[2])
    write_cached(root, "imagefolder", key, earlier)
    doctored = Path(earlier.cache_path).read_bytes()
    assert torch.equal(load_dataset("imagefolder", root).train_x, earlier.train_x)  # read
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "session"))
    b = load_dataset("imagefolder", root)
    assert torch.equal(b.train_x, truth["train"][0])  # decoded again, not the doctored file
    assert Path(earlier.cache_path).read_bytes() == doctored


def test_old_cache_next_to_the_data_is_neither_read_nor_removed(tmp_path):
    root = tmp_path / "ds"
    truth = make_imagefolder(root)
    old = root / ".ensemble-cache-imagefolder.pt"
    old.write_bytes(b"an old version's cache")
    b = load_dataset("imagefolder", root)
    assert torch.equal(b.train_x, truth["train"][0])
    assert old.read_bytes() == b"an old version's cache"


def test_cache_is_rebuilt_when_the_images_change_and_the_old_file_removed(tmp_path, capsys):
    root = tmp_path / "ds"
    make_imagefolder(root)
    before = load_dataset("imagefolder", root)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train/dog/0099.png")
    capsys.readouterr()
    after = load_dataset("imagefolder", root)
    assert after.num_train == before.num_train + 1
    assert torch.equal(after.train_x[12], torch.zeros(3, 8, 8, dtype=torch.uint8))  # dog #7
    assert after.cache_path != before.cache_path
    assert list(decoded_dir(tmp_path).iterdir()) == [Path(after.cache_path)]  # no growth
    err = capsys.readouterr().err
    assert "decoded 28 images" in err and "removed 1 cache file(s) of its older contents" in err


def test_the_previous_versions_user_cache_file_of_the_folder_is_replaced(tmp_path):
    # Before the contents hash was in the name: <name>-<folder name>-<path hash>.pt.
    root = tmp_path / "ds"
    make_imagefolder(root)
    new = Path(cache_file("imagefolder", root, "k"))
    path_hash = new.name.split("-")[1]
    decoded_dir(tmp_path).mkdir(parents=True)
    old = decoded_dir(tmp_path) / f"imagefolder-ds-{path_hash}.pt"
    old.write_bytes(b"old")
    b = load_dataset("imagefolder", root)
    assert list(decoded_dir(tmp_path).iterdir()) == [Path(b.cache_path)]


def test_two_folders_of_the_same_name_do_not_share_a_cache_file(tmp_path):
    a = make_imagefolder(tmp_path / "a/ds", seed=1)
    b = make_imagefolder(tmp_path / "b/ds", seed=2)
    ba = load_dataset("imagefolder", tmp_path / "a/ds")
    bb = load_dataset("imagefolder", tmp_path / "b/ds")
    assert ba.cache_path != bb.cache_path
    assert len(list(decoded_dir(tmp_path).iterdir())) == 2
    assert torch.equal(load_dataset("imagefolder", tmp_path / "a/ds").train_x, a["train"][0])
    assert torch.equal(load_dataset("imagefolder", tmp_path / "b/ds").train_x, b["train"][0])


def test_cache_file_name_is_keyed_by_name_path_and_contents(tmp_path):
    k1 = cache_key("cifar10", tmp_path, "fp1")
    f1 = cache_file("cifar10", tmp_path, k1)
    assert f1.parent == decoded_dir(tmp_path) and f1.name.startswith("cifar10-")
    assert cache_file("cifar10", tmp_path / ".", k1) == f1  # the resolved path counts
    f2 = cache_file("cifar10", tmp_path, cache_key("cifar10", tmp_path, "fp2"))
    f3 = cache_file("cifar20", tmp_path, cache_key("cifar20", tmp_path, "fp1"))
    other = tmp_path / "other"
    f4 = cache_file("cifar10", other, cache_key("cifar10", other, "fp1"))
    assert len({f1, f2, f3, f4}) == 4
    assert f1.name.rsplit("-", 1)[0] == f2.name.rsplit("-", 1)[0]  # same folder: same prefix


def test_unwritable_cache_dir_warns_once_per_load_and_goes_on(tmp_path, monkeypatch, capsys):
    # A file squats where the cache folder should be: mkdir fails even for root.
    (tmp_path / "not-a-dir").write_text("")
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "not-a-dir/decoded"))
    root = tmp_path / "ds"
    truth = make_imagefolder(root)
    before = listing(root)
    b = load_dataset("imagefolder", root)
    assert b.cache_path is None and torch.equal(b.train_x, truth["train"][0])
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"warning: cannot write the decoded-data cache '{tmp_path}")
    assert "(from ENSEMBLE_CACHE_DIR)" in lines[0] and "continuing without a cache" in lines[0]
    assert listing(root) == before  # no fallback next to the data


def test_corrupt_cache_file_is_ignored_and_rebuilt(tmp_path, capsys):
    root = tmp_path / "ds"
    truth = make_imagefolder(root)
    first = load_dataset("imagefolder", root)
    Path(first.cache_path).write_bytes(b"not a torch file")
    capsys.readouterr()
    b = load_dataset("imagefolder", root)
    assert torch.equal(b.train_x, truth["train"][0])
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("warning: ignoring the unreadable data cache file")
    assert err[1].startswith("decoded 27 images")
    assert torch.equal(load_dataset("imagefolder", root).train_x, truth["train"][0])


def test_the_session_cache_dir_is_a_fresh_temporary_folder(session_cache_dir):
    # tests/conftest.py: subprocesses inherit it (the per-test fixture here unsets it).
    assert session_cache_dir.is_dir()
    home_cache = Path.home() / ".cache"
    assert home_cache not in session_cache_dir.resolve().parents


# ------------------------------------------------------------------ errors


def test_missing_data_dir_names_path_and_env_var(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError) as e:
        load_dataset("cifar10", str(missing))
    assert str(missing) in str(e.value) and "ENSEMBLE_DATA_DIR" in str(e.value)
    assert isinstance(e.value, FileNotFoundError)


def test_missing_env_data_dir_is_reported_as_such(tmp_path, monkeypatch):
    monkeypatch.setenv("ENSEMBLE_DATA_DIR", str(tmp_path / "gone"))
    with pytest.raises(DataNotFoundError, match="from ENSEMBLE_DATA_DIR") as e:
        load_dataset("cifar20")
    assert str(tmp_path / "gone") in str(e.value)


def test_failed_download_lists_paths_tried_and_how_to_point_at_a_copy(tmp_path, monkeypatch):
    def offline(name, root):
        raise OSError("network is unreachable")

    monkeypatch.setattr(datasets, "download_cifar", offline)
    with pytest.raises(DataNotFoundError) as e:
        load_dataset("cifar10")  # default location in the (tmp) user cache
    msg = str(e.value)
    default = tmp_path / "xdg/ensemble-efficiency/data"
    assert str(default / "cifar-10-batches-py") in msg
    assert "network is unreachable" in msg
    assert "ENSEMBLE_DATA_DIR" in msg and "data_dir" in msg and "--data-dir" in msg


def test_download_false_does_not_download(tmp_path, monkeypatch):
    def boom(name, root):
        raise AssertionError("must not download")

    monkeypatch.setattr(datasets, "download_cifar", boom)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="download=False"):
        load_dataset("cifar20", tmp_path / "empty", download=False)


def one_line(e: pytest.ExceptionInfo) -> str:
    """The refusal's message, checked to be one line and a DataError."""
    msg = str(e.value)
    assert isinstance(e.value, DataError) and "\n" not in msg and msg == msg.strip()
    return msg


def test_corrupt_jpeg_among_many_is_named_with_what_was_found(tmp_path):
    root = tmp_path / "ds"
    make_imagefolder(root, fmt="jpg", n_train=20, n_test=5)
    bad = root / "train/dog/0013.jpg"
    bad.write_bytes(bad.read_bytes()[:-2])  # cut off: torchvision and PIL both refuse it
    with pytest.raises(DataFormatError, match=r"cannot decode 1 of 75 image files in '") as e:
        load_dataset("imagefolder", root)
    msg = one_line(e)
    assert f"{str(bad)!r} (" in msg and "bytes, OSError: image file is truncated" in msg
    assert "must be a readable image" in msg
    assert not list(decoded_dir(tmp_path).glob("*"))  # nothing cached


def test_several_undecodable_files_are_named_together(tmp_path):
    root = tmp_path / "ds"
    make_imagefolder(root, n_train=4, n_test=2)
    names = ["train/cat/0000.png", "train/dog/0001.png", "test/emu/0000.png", "test/emu/0001.png"]
    (root / names[0]).write_bytes(b"")
    (root / names[1]).write_bytes(b"<html>404 not found</html>")
    (root / names[2]).write_bytes((root / names[2]).read_bytes()[:40])
    (root / names[3]).write_bytes(b"\x00" * 100)
    with pytest.raises(DataFormatError, match="cannot decode 4 of 18 image files") as e:
        load_dataset("imagefolder", root)
    msg = one_line(e)
    assert str(root / names[0]) in msg and "an empty file, 0 bytes" in msg
    assert "bytes, not in any image format PIL can read" in msg
    assert str(root / names[1]) in msg and str(root / names[2]) in msg
    assert str(root / names[3]) not in msg and "and 1 more" in msg


def test_images_of_mixed_sizes_name_one_file_of_each_size_and_the_counts(tmp_path):
    root = tmp_path / "ds"
    make_imagefolder(root)
    odd = root / "train/dog/0001.png"
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(odd)  # 8 wide, 9 high
    odd_test = root / "test/emu/0002.png"
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(odd_test)
    big = root / "test/cat/0000.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(big)
    with pytest.raises(DataFormatError, match=r"images of 3 sizes in '") as e:
        load_dataset("imagefolder", root)
    msg = one_line(e)
    assert f"24 are 8x8 (e.g. {str(root / 'train/cat/0000.png')!r})" in msg
    assert f"2 are 8x9 (e.g. {str(odd)!r})" in msg
    assert f"1 is 16x16 (e.g. {str(big)!r})" in msg
    assert "must have one size" in msg


def test_train_and_test_of_different_sizes_are_mixed_sizes(tmp_path):
    make_imagefolder(tmp_path / "ds", size=(8, 8))
    make_imagefolder(tmp_path / "small", size=(4, 4))
    shutil.rmtree(tmp_path / "ds/test")
    (tmp_path / "small/test").rename(tmp_path / "ds/test")
    with pytest.raises(DataFormatError, match=r"18 are 8x8 .*9 are 4x4") as e:
        load_dataset("imagefolder", tmp_path / "ds")
    one_line(e)


def test_class_folders_without_images_all_of_them(tmp_path):
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (tmp_path / f"ds/{split}/{cls}").mkdir(parents=True)
    (tmp_path / "ds/train/cat/notes.txt").write_text("x")
    (tmp_path / "ds/train/dog/0001.npy").write_bytes(b"x")
    (tmp_path / "ds/train/dog/0002.npy").write_bytes(b"x")
    with pytest.raises(DataFormatError, match="none of its 4 class folders") as e:
        load_dataset("imagefolder", tmp_path / "ds")
    msg = one_line(e)
    assert repr(str(tmp_path / "ds")) in msg
    assert "found 3 other files (.npy: 2, .txt: 1)" in msg
    assert "allowed: image files ending in .jpg, .jpeg, .png" in msg


def test_class_folders_without_images_some_of_them_are_named(tmp_path):
    make_imagefolder(tmp_path / "ds")
    (tmp_path / "ds/train/fox").mkdir()
    (tmp_path / "ds/test/fox").mkdir()
    (tmp_path / "ds/test/emu/0000.png").unlink()
    for i in (1, 2):
        (tmp_path / f"ds/test/emu/{i:04d}.png").unlink()
    with pytest.raises(DataFormatError, match="3 of its 8 class folders hold no image") as e:
        load_dataset("imagefolder", tmp_path / "ds")
    msg = one_line(e)
    assert "file: test/emu, train/fox, test/fox;" in msg or "train/fox, test/emu" in msg
    assert "found no other files either" in msg and "at least one" in msg


def test_imagefolder_with_no_classes(tmp_path):
    (tmp_path / "ds/train").mkdir(parents=True)
    (tmp_path / "ds/test").mkdir(parents=True)
    with pytest.raises(DataFormatError, match="no class sub-folders") as e:
        load_dataset("imagefolder", tmp_path / "ds")
    assert str(tmp_path / "ds/train") in str(e.value)


def test_imagefolder_without_test_split(tmp_path):
    make_imagefolder(tmp_path / "ds")
    for p in (tmp_path / "ds/test").rglob("*.png"):
        p.unlink()
    for d in (tmp_path / "ds/test").iterdir():
        d.rmdir()
    (tmp_path / "ds/test").rmdir()
    with pytest.raises(DataNotFoundError, match="test"):
        load_dataset("imagefolder", tmp_path / "ds")


def test_train_and_test_class_lists_must_match(tmp_path):
    make_imagefolder(tmp_path / "ds")
    (tmp_path / "ds/test/cat").rename(tmp_path / "ds/test/cow")
    with pytest.raises(DataFormatError, match=r"only in train: \['cat'\], only in test: \['cow'\]"):
        load_dataset("imagefolder", tmp_path / "ds")


def test_bad_names_and_missing_imagefolder_dir_are_config_errors():
    with pytest.raises(ConfigError, match="dataset='mnist'"):
        load_dataset("mnist")
    with pytest.raises(ConfigError, match="imagefolder.*data_dir"):
        load_dataset("imagefolder")


def test_cifar10_image_folder_needs_ten_classes(tmp_path):
    make_imagefolder(tmp_path / "ds")
    with pytest.raises(DataFormatError, match="3 class folders") as e:
        load_dataset("cifar10", tmp_path / "ds")
    one_line(e)


def test_cifar20_given_cifar10_pickles_says_so(tmp_path, monkeypatch):
    def boom(name, root):
        raise AssertionError("must not download CIFAR-100 next to the CIFAR-10 files")

    monkeypatch.setattr(datasets, "download_cifar", boom)
    make_cifar10_pickles(tmp_path)
    with pytest.raises(DataFormatError, match=r"^dataset='cifar20': ") as e:
        load_dataset("cifar20", tmp_path)
    msg = one_line(e)
    assert f"{str(tmp_path / 'cifar-10-batches-py')!r} holds CIFAR-10 files" in msg
    assert "use dataset 'cifar10'" in msg
    assert "allowed: a data_dir holding CIFAR-100" in msg and "cifar-100-python" in msg
    assert "20 coarse or the 100 fine" in msg


def test_cifar20_given_a_cifar10_image_folder_says_so(tmp_path):
    make_imagefolder(tmp_path / "ds", classes=CIFAR10_CLASSES, n_train=1, n_test=1, size=(2, 2))
    with pytest.raises(DataFormatError, match=r"^dataset='cifar20': ") as e:
        load_dataset("cifar20", tmp_path / "ds")
    msg = one_line(e)
    assert "holds CIFAR-10 files (its class folders are the 10 CIFAR-10 classes" in msg
    assert "allowed: a data_dir holding CIFAR-100" in msg


def test_cifar10_given_cifar100_files_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "download_cifar", lambda name, root: 1 / 0)
    make_cifar100_pickles(tmp_path / "p")
    with pytest.raises(DataFormatError, match="holds CIFAR-100 files") as e:
        load_dataset("cifar10", tmp_path / "p")
    assert "use dataset 'cifar20'" in one_line(e)
    make_imagefolder(tmp_path / "f", classes=CIFAR20_CLASSES, n_train=1, n_test=1, size=(2, 2))
    with pytest.raises(DataFormatError, match="these are CIFAR-100 class folders") as e:
        load_dataset("cifar10", tmp_path / "f")
    one_line(e)


def test_cifar20_in_the_default_folder_still_downloads_next_to_cifar10(tmp_path, monkeypatch):
    # The default folder holds every downloaded CIFAR: CIFAR-10 files there are no refusal.
    calls = []
    monkeypatch.setattr(datasets, "download_cifar", lambda name, root: calls.append(name))
    make_cifar10_pickles(tmp_path / "xdg/ensemble-efficiency/data")
    with pytest.raises(DataNotFoundError):
        load_dataset("cifar20")
    assert calls == ["cifar20"]


def test_data_errors_are_one_line_even_when_wrapping_multiline_text():
    assert str(DataFormatError("a\n  b\r\nc ")) == "a b c"
    assert str(DataNotFoundError("x\ny")) == "x y"
    assert isinstance(DataNotFoundError("x"), FileNotFoundError)
    assert isinstance(DataFormatError("x"), ValueError)


# ------------------------------------------------------------------ CIFAR pickle layouts


def _pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def make_cifar10_pickles(base: Path, per_batch=4) -> None:
    d = base / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        _pickle(
            d / f"data_batch_{i}",
            {
                "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                "labels": [(i + j) % 10 for j in range(per_batch)],
            },
        )
    _pickle(d / "test_batch", {"data": np.zeros((3, 3072), np.uint8), "labels": [0, 1, 2]})
    _pickle(d / "batches.meta", {"label_names": list(CIFAR10_CLASSES)})


def test_cifar10_pickle_layout(tmp_path):
    make_cifar10_pickles(tmp_path)
    b = load_dataset("cifar10", tmp_path)
    assert b.train_x.shape == (20, 3, 32, 32) and b.train_x.dtype == torch.uint8
    assert b.test_x.shape == (3, 3, 32, 32)
    assert b.train_y[:4].tolist() == [1, 2, 3, 4] and b.num_classes == 10
    assert b.classes[0] == "airplane" and b.classes[-1] == "truck"


def test_env_var_may_name_a_folder_of_datasets(tmp_path, monkeypatch):
    make_cifar10_pickles(tmp_path / "datasets/cifar10")
    monkeypatch.setenv("ENSEMBLE_DATA_DIR", str(tmp_path / "datasets"))
    assert load_dataset("cifar10").num_train == 20


def make_cifar100_pickles(base: Path, with_coarse=True) -> tuple[list[int], list[int]]:
    d = base / "cifar-100-python"
    d.mkdir(parents=True)
    fine = {"train": list(range(100)), "test": [0, 1, 2, 99]}
    for split, labels in fine.items():
        obj = {"data": np.zeros((len(labels), 3072), np.uint8), "fine_labels": labels}
        if with_coarse:
            obj["coarse_labels"] = [CIFAR100_FINE_TO_COARSE[f] for f in labels]
        _pickle(d / split, obj)
    _pickle(d / "meta", {"coarse_label_names": list(CIFAR20_CLASSES)})
    return fine["train"], fine["test"]


@pytest.mark.parametrize("with_coarse", [True, False])
def test_cifar20_pickle_layout_uses_coarse_labels(tmp_path, with_coarse):
    make_cifar100_pickles(tmp_path, with_coarse=with_coarse)
    b = load_dataset("cifar20", tmp_path)
    assert b.num_classes == 20 and b.classes == list(CIFAR20_CLASSES)
    assert b.train_y.tolist() == list(CIFAR100_FINE_TO_COARSE)
    assert b.test_y.tolist() == [4, 1, 14, 13]  # apple, aquarium_fish, baby, worm
    assert torch.bincount(b.train_y).tolist() == [5] * 20


def test_cifar20_coarse_labels_in_the_file_win_over_the_table(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    for split in ("train", "test"):
        _pickle(d / split, {"data": np.zeros((2, 3072), np.uint8), "fine_labels": [0, 0],
                            "coarse_labels": [7, 19]})  # fmt: skip
    _pickle(d / "meta", {})
    assert load_dataset("cifar20", tmp_path).train_y.tolist() == [7, 19]


def test_cifar20_image_folder_with_fine_class_names_maps_to_coarse(tmp_path):
    make_imagefolder(tmp_path / "ds", classes=CIFAR100_CLASSES, n_train=1, n_test=1, size=(2, 2))
    b = load_dataset("cifar20", tmp_path / "ds")
    assert b.classes == list(CIFAR20_CLASSES)
    assert b.train_y.tolist() == list(CIFAR100_FINE_TO_COARSE)  # folders sorted = fine order


# ------------------------------------------------------------------ the CIFAR-20 table

# From the CIFAR-100 page (https://www.cs.toronto.edu/~kriz/cifar.html): superclass -> classes.
SUPERCLASSES = {
    "aquatic_mammals": "beaver dolphin otter seal whale",
    "fish": "aquarium_fish flatfish ray shark trout",
    "flowers": "orchid poppy rose sunflower tulip",
    "food_containers": "bottle bowl can cup plate",
    "fruit_and_vegetables": "apple mushroom orange pear sweet_pepper",
    "household_electrical_devices": "clock keyboard lamp telephone television",
    "household_furniture": "bed chair couch table wardrobe",
    "insects": "bee beetle butterfly caterpillar cockroach",
    "large_carnivores": "bear leopard lion tiger wolf",
    "large_man-made_outdoor_things": "bridge castle house road skyscraper",
    "large_natural_outdoor_scenes": "cloud forest mountain plain sea",
    "large_omnivores_and_herbivores": "camel cattle chimpanzee elephant kangaroo",
    "medium_mammals": "fox porcupine possum raccoon skunk",
    "non-insect_invertebrates": "crab lobster snail spider worm",
    "people": "baby boy girl man woman",
    "reptiles": "crocodile dinosaur lizard snake turtle",
    "small_mammals": "hamster mouse rabbit shrew squirrel",
    "trees": "maple_tree oak_tree palm_tree pine_tree willow_tree",
    "vehicles_1": "bicycle bus motorcycle pickup_truck train",
    "vehicles_2": "lawn_mower rocket streetcar tank tractor",
}


def test_cifar20_mapping_has_20_classes_of_5():
    assert len(CIFAR100_FINE_TO_COARSE) == 100 and len(CIFAR100_CLASSES) == 100
    assert len(set(CIFAR100_CLASSES)) == 100 and list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)
    assert len(CIFAR20_CLASSES) == 20
    counts = np.bincount(CIFAR100_FINE_TO_COARSE, minlength=20)
    assert counts.tolist() == [5] * 20


def test_cifar20_mapping_agrees_with_the_official_superclass_lists():
    assert list(SUPERCLASSES) == list(CIFAR20_CLASSES)
    for coarse, members in SUPERCLASSES.items():
        for fine in members.split():
            assert CIFAR20_CLASSES[CIFAR100_FINE_TO_COARSE[CIFAR100_CLASSES.index(fine)]] == coarse


def test_cifar20_known_pairs():
    pairs = {0: 4, 1: 1, 2: 14, 3: 8, 4: 0, 19: 11, 48: 18, 58: 18, 99: 13}
    for fine, coarse in pairs.items():
        assert CIFAR100_FINE_TO_COARSE[fine] == coarse
    assert CIFAR100_CLASSES[0] == "apple" and CIFAR20_CLASSES[4] == "fruit_and_vegetables"
    assert CIFAR100_CLASSES[1] == "aquarium_fish" and CIFAR20_CLASSES[1] == "fish"
    assert CIFAR100_CLASSES[99] == "worm" and CIFAR20_CLASSES[13] == "non-insect_invertebrates"


# ------------------------------------------------------------------ splits


def test_stratified_subsets_count_per_class():
    b = synthetic_bundle()
    s = split_data(b, train_subset=12, test_subset=6)
    assert torch.bincount(s.train_y, minlength=3).tolist() == [4, 4, 4]
    assert torch.bincount(s.test_y, minlength=3).tolist() == [2, 2, 2]
    s = split_data(b, train_subset=10)
    counts = torch.bincount(s.train_y, minlength=3).tolist()
    assert sum(counts) == 10 and max(counts) - min(counts) <= 1
    assert s.num_test == 30  # untouched


def test_stratified_subset_with_a_small_class():
    b = synthetic_bundle(counts=(2, 20, 20))
    s = split_data(b, train_subset=30)
    assert torch.bincount(s.train_y, minlength=3).tolist() == [2, 14, 14]


def test_validation_split_is_stratified_and_disjoint_from_train():
    b = synthetic_bundle()
    s = split_data(b, train_subset=48, val_fraction=0.25)
    assert torch.bincount(s.val_y, minlength=3).tolist() == [4, 4, 4]
    assert torch.bincount(s.train_y, minlength=3).tolist() == [12, 12, 12]
    train_ids, val_ids = set(ids(s.train_x)), set(ids(s.val_x))
    assert len(train_ids) == 36 and len(val_ids) == 12
    assert not train_ids & val_ids
    # labels travel with their images
    orig_label = dict(zip(ids(b.train_x), b.train_y.tolist(), strict=True))
    assert all(orig_label[i] == y for i, y in zip(ids(s.val_x), s.val_y.tolist(), strict=True))
    assert s.num_train == 36 and s.num_val == 12


def test_split_is_deterministic_per_seed_and_recomputes_stats():
    b = synthetic_bundle()
    a1 = split_data(b, train_subset=15, val_fraction=0.2, seed=0)
    a2 = split_data(b, train_subset=15, val_fraction=0.2, seed=0)
    c = split_data(b, train_subset=15, val_fraction=0.2, seed=1)
    assert ids(a1.train_x) == ids(a2.train_x) and ids(a1.val_x) == ids(a2.val_x)
    assert ids(a1.train_x) != ids(c.train_x)
    assert ids(a1.train_x) == sorted(ids(a1.train_x))  # original order kept
    assert a1.mean == pytest.approx(channel_stats(a1.train_x)[0])
    assert a1.mean != pytest.approx(b.mean, abs=1e-6)


def test_split_errors_name_the_field():
    b = synthetic_bundle()
    with pytest.raises(ConfigError, match=r"train_subset=61: larger than the 60"):
        split_data(b, train_subset=61)
    with pytest.raises(ConfigError, match="test_subset=0"):
        split_data(b, test_subset=0)
    with pytest.raises(ConfigError, match=r"val_fraction=1\.0"):
        split_data(b, val_fraction=1.0)
    with pytest.raises(ConfigError, match="empty validation split"):
        split_data(b, train_subset=3, val_fraction=0.1)
    with pytest.raises(ConfigError, match="already has a validation split"):
        split_data(split_data(b, val_fraction=0.2), val_fraction=0.2)


def test_load_for_config_splits_with_seed_zero(tmp_path):
    root = tmp_path / "ds"
    make_imagefolder(root)
    cfg = TrialConfig(
        dataset="imagefolder", data_dir=str(root), train_subset=12, val_fraction=0.25, seed=7
    )
    b = load_for_config(cfg)
    assert b.num_train == 9 and b.num_val == 3 and b.num_test == 9
    full = load_dataset("imagefolder", root)
    again = load_for_config(cfg.replace(seed=3), full)
    assert torch.equal(again.train_x, b.train_x)  # the split ignores the trial seed
    with pytest.raises(ConfigError, match="dataset='cifar10' but the data passed in"):
        load_for_config(TrialConfig(dataset="cifar10"), full)


# ------------------------------------------------------------------ loader


def _loader(b, batch_size=16, **kw):
    args = dict(shuffle=True, augment=False, mean=b.mean, std=b.std, device="cpu", seed=0)
    args.update(kw)
    return TensorLoader(b.train_x, b.train_y, batch_size, **args)


def test_loader_len_shapes_and_one_pass_covers_everything():
    b = synthetic_bundle()
    loader = _loader(b)
    assert len(loader) == 4  # 60 / 16 rounded up
    assert len(_loader(b, drop_last=True)) == 3
    seen = []
    for x, y in loader:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (3, 6, 6) and x.shape[0] == y.shape[0] <= 16
        seen.append(y)
    assert sorted(torch.cat(seen).tolist()) == sorted(b.train_y.tolist())
    sizes = [len(y) for _, y in _loader(b, drop_last=True)]
    assert sizes == [16, 16, 16]


def _order(loader) -> list[int]:
    out = []
    for x, _ in loader:
        raw = (x * loader._std + loader._mean).round().to(torch.uint8)
        out += ids(raw)
    return out


def test_loader_order_is_deterministic_per_seed_and_epoch():
    b = synthetic_bundle()
    a = _loader(b, seed=0)
    epoch0, epoch1 = _order(a), _order(a)  # internal counter: epochs 0 then 1
    assert epoch0 != epoch1 and sorted(epoch0) == sorted(epoch1) == list(range(60))
    fresh = _loader(b, seed=0)
    fresh.set_epoch(1)
    assert _order(fresh) == epoch1  # a resumed run reproduces epoch 1
    fresh.set_epoch(0)
    assert _order(fresh) == epoch0
    assert _order(_loader(b, seed=1)) != epoch0
    assert _order(_loader(b, shuffle=False)) == list(range(60))


def test_no_augmentation_is_identity_up_to_normalisation():
    b = synthetic_bundle()
    x, _ = next(iter(_loader(b, shuffle=False, batch_size=60)))
    mean = torch.tensor(b.mean).view(1, 3, 1, 1)
    std = torch.tensor(b.std).view(1, 3, 1, 1)
    back = x * std * 255 + mean * 255
    assert torch.allclose(back, b.train_x.float(), atol=1e-3)


def test_normalisation_gives_zero_mean_unit_std():
    b = synthetic_bundle()
    x, _ = next(iter(_loader(b, shuffle=False, batch_size=60)))
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (x.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-4


def test_augmentation_is_a_padded_crop_with_random_flip():
    b = synthetic_bundle(hw=6)
    aug = _loader(b, shuffle=False, augment=True, batch_size=60)
    x, _ = next(iter(aug))
    assert x.shape == (60, 3, 6, 6)
    raw = (x * aug._std + aug._mean).round().to(torch.uint8)
    assert not torch.equal(raw, b.train_x)  # pixels actually change
    padded = torch.nn.functional.pad(b.train_x, (4, 4, 4, 4))
    flips, offsets = 0, set()
    for i in range(60):
        matches = [
            (oy, ox, f)
            for oy in range(9)
            for ox in range(9)
            for f in (False, True)
            if torch.equal(
                raw[i],
                padded[i, :, oy : oy + 6, ox : ox + 6].flip(2)
                if f
                else padded[i, :, oy : oy + 6, ox : ox + 6],
            )
        ]
        assert matches, f"image {i} is not a crop (or flipped crop) of its padded original"
        oy, ox, f = matches[0]
        flips += f
        offsets.add((oy, ox))
    assert 10 < flips < 50 and len(offsets) > 10
    # same seed and epoch: same augmentation
    again = _loader(b, shuffle=False, augment=True, batch_size=60)
    assert torch.equal(next(iter(again))[0], x)


def test_loader_rejects_bad_inputs():
    b = synthetic_bundle()
    with pytest.raises(ValueError, match="uint8"):
        TensorLoader(b.train_x.float(), b.train_y, 4, shuffle=False, augment=False,
                     mean=b.mean, std=b.std, device="cpu")  # fmt: skip
    with pytest.raises(ConfigError, match="batch_size=0"):
        TensorLoader(b.train_x, b.train_y, 0, shuffle=False, augment=False,
                     mean=b.mean, std=b.std, device="cpu")  # fmt: skip


@pytest.mark.cuda
def test_loader_on_cuda_matches_cpu():
    b = synthetic_bundle()
    cpu = [x for x, _ in _loader(b, augment=True)]
    gpu = [x.cpu() for x, _ in _loader(b, augment=True, device="cuda")]
    assert all(torch.allclose(a, g) for a, g in zip(cpu, gpu, strict=True))


def test_bundle_defaults_and_validation():
    x = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    b = DataBundle(x, torch.tensor([0, 1, 2, 1]), x, torch.tensor([0, 0, 1, 2]))
    assert b.num_classes == 3 and b.classes == ["0", "1", "2"]
    assert b.std[0] > 0  # constant images do not give a zero std
    with pytest.raises(ValueError, match="train_x must be a uint8"):
        DataBundle(x.float(), torch.zeros(4), x, torch.zeros(4))
    with pytest.raises(ValueError, match="test_y must be a tensor shaped"):
        DataBundle(x, torch.zeros(4), x, torch.zeros(3))


def test_import_does_not_load_torchvision():
    # torchvision costs ~2 s of import time in every Ray trial worker: it is imported on the
    # first decode or download only.
    code = "import sys, core.data; sys.exit('torchvision' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


# ------------------------------------------------------------------ the real CIFAR-10 images


@pytest.fixture(scope="session")
def real_cifar10(tmp_path_factory):
    """Two loads of the real CIFAR-10 folder into a cache folder of their own, empty at the
    start (whatever earlier runs or other tests cached is not seen), with what each printed,
    and the data folder's listing before and after."""
    if not CIFAR10.is_dir():
        pytest.skip(f"real CIFAR-10 images not found at {CIFAR10}")
    cache_dir = tmp_path_factory.mktemp("real-cifar10-cache")
    saved = os.environ.get(ENV_CACHE_DIR)
    os.environ[ENV_CACHE_DIR] = str(cache_dir)
    try:
        before = listing(CIFAR10)
        loads = []
        for _ in range(2):
            err = io.StringIO()
            t0 = time.perf_counter()
            with contextlib.redirect_stderr(err):
                b = load_dataset("cifar10", CIFAR10)
            loads.append((b, time.perf_counter() - t0, err.getvalue()))
        after = listing(CIFAR10)
    finally:
        if saved is None:
            os.environ.pop(ENV_CACHE_DIR, None)
        else:
            os.environ[ENV_CACHE_DIR] = saved
    return {"loads": loads, "cache_dir": cache_dir, "before": before, "after": after}


def test_real_cifar10_loads_and_reloads_fast(real_cifar10, capsys):
    (first, t_first, _), (second, t_second, _) = real_cifar10["loads"]
    with capsys.disabled():
        print(
            f"\n[real CIFAR-10] first load {t_first:.2f}s, second load {t_second:.2f}s "
            f"(cache: {second.cache_path})"
        )
    assert first.num_train == 20_000 and first.num_test == 10_000
    assert first.num_classes == 10 and first.classes[0] == "airplane"
    assert first.train_x.dtype == torch.uint8 and first.train_x.shape[1:] == (3, 32, 32)
    assert torch.bincount(first.train_y).tolist() == [2000] * 10
    assert torch.bincount(first.test_y).tolist() == [1000] * 10
    assert t_second < 1.0
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)
    # index <-> file: train/bird/0007.jpg is example 2 * 2000 + 7
    ref = np.array(Image.open(CIFAR10 / "train/bird/0007.jpg").convert("RGB"))
    assert torch.equal(first.train_x[4007], torch.from_numpy(ref).permute(2, 0, 1))
    assert first.train_y[4007] == 2
    assert 0.4 < first.mean[0] < 0.6 and 0.2 < first.std[0] < 0.3


def test_real_cifar10_writes_one_cache_file_and_nothing_next_to_the_data(real_cifar10):
    (first, _, err_first), (second, _, err_second) = real_cifar10["loads"]
    files = list(real_cifar10["cache_dir"].iterdir())
    assert len(files) == 1 and files[0].name.startswith("cifar10-") and files[0].suffix == ".pt"
    assert first.cache_path == second.cache_path == str(files[0])
    assert real_cifar10["after"] == real_cifar10["before"]  # hidden files included
    assert err_first == (
        f"decoded 30,000 images of {CIFAR10.resolve()} once; cache: {files[0]} "
        "(set ENSEMBLE_CACHE_DIR to move it)\n"
    )
    assert err_second == ""


# ----------------------------------------------------------------------------------------------
# the split seed: fixed by default (the cpu preset's findings), the trial's seed on request
# ----------------------------------------------------------------------------------------------
def _val_and_test(data, **cfg):
    split = load_for_config(TrialConfig(val_fraction=0.25, test_subset=20, **cfg), data)
    return split.val_x, split.train_x, split.test_x


def test_split_follows_the_seed_with_split_seed_none(data):
    """split_seed None (the learn preset): each seed holds out its own validation images and
    draws its own test subset; seed and split_seed 0 give the default's split."""
    val0, train0, test0 = _val_and_test(data, seed=0, split_seed=None)
    val1, train1, test1 = _val_and_test(data, seed=1, split_seed=None)
    assert val0.shape == val1.shape == (20, 3, 16, 16)  # 25% of 80, stratified either way
    assert not torch.equal(val0, val1) and not torch.equal(test0, test1)
    assert not torch.equal(train0, train1)
    default = _val_and_test(data, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(default, (val0, train0, test0), strict=True))


def test_split_stays_fixed_across_seeds_by_default(data):
    """split_seed 0 (TrialConfig's default, the cpu preset): every seed trains and validates on
    the same images, as the committed CPU-scale findings did; another value picks another."""
    assert TrialConfig().split_seed == 0
    a, b = _val_and_test(data, seed=0), _val_and_test(data, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    other = _val_and_test(data, seed=0, split_seed=3)
    assert not torch.equal(a[0], other[0])
    assert _val_and_test(data, seed=3, split_seed=None)[0].equal(other[0])
    with pytest.raises(ConfigError, match="split_seed=-1"):
        TrialConfig.from_dict({"split_seed": -1})
