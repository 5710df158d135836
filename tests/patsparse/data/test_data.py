"""Tests for patsparse.data: digits, SR patches, CIFAR-10 pickles, image folders, loaders."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from patsparse.core.errors import DataError, UnknownNameError
from patsparse.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SR_IMAGES,
    ImageFolderDataset,
    load_cifar10,
    load_digits_split,
    load_luma,
    load_sr_patches,
    make_loaders,
    normalize_digits,
    split_sr_images,
)
from patsparse.data.imagefolder import center_crop, resize_shorter
from patsparse.data.sr import downsample, extract_patches

# ---------------------------------------------------------------- digits


def test_digits_shapes_and_values() -> None:
    train, test = load_digits_split()
    xtr, ytr = train.tensors
    xte, yte = test.tensors
    assert len(train) + len(test) == 1797
    assert len(test) == 360  # ceil(0.2 * 1797)
    assert xtr.shape == (len(train), 1, 8, 8) and xte.shape == (len(test), 1, 8, 8)
    assert xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert xtr.min() >= -1.0 and xtr.max() <= 1.0
    assert xtr.min() == -1.0 and xtr.max() == 1.0  # 0 and 16 both occur
    assert set(ytr.tolist()) == set(range(10)) == set(yte.tolist())


def test_digits_split_is_a_partition() -> None:
    train, test = load_digits_split(test_fraction=0.25, seed=3)
    full = normalize_digits(load_digits().data)
    labels = load_digits().target

    def rows(x: torch.Tensor, y: torch.Tensor | np.ndarray) -> Counter[tuple[bytes, int]]:
        return Counter((xi.numpy().tobytes(), int(yi)) for xi, yi in zip(x, y, strict=True))

    assert rows(*train.tensors) + rows(*test.tensors) == rows(full, labels)


def test_digits_deterministic_and_seeded() -> None:
    a_tr, a_te = load_digits_split(seed=0)
    b_tr, b_te = load_digits_split(seed=0)
    c_tr, _ = load_digits_split(seed=1)
    assert torch.equal(a_tr.tensors[0], b_tr.tensors[0])
    assert torch.equal(a_te.tensors[1], b_te.tensors[1])
    assert not torch.equal(a_tr.tensors[0], c_tr.tensors[0])


def test_digits_stratified() -> None:
    _, test = load_digits_split(test_fraction=0.2)
    total = Counter(load_digits().target.tolist())
    got = Counter(test.tensors[1].tolist())
    for cls, n in total.items():
        assert abs(got[cls] - 0.2 * n) <= 1.0


def test_digits_bad_fraction() -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(test_fraction=1.0)


# ---------------------------------------------------------------- SR patches


def test_load_luma_range_and_colour_conversion() -> None:
    cam = load_luma("camera")
    assert cam.shape == (512, 512) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() <= 1.0
    ast = load_luma("astronaut")
    assert ast.ndim == 2 and ast.shape == (512, 512)
    with pytest.raises(UnknownNameError, match=r"'camara'.*'camera'"):
        load_luma("camara")


def test_split_sr_images_default_holds_out_whole_images() -> None:
    train, test = split_sr_images()
    assert len(test) == 2 and len(train) == len(SR_IMAGES) - 2
    assert set(train).isdisjoint(test)
    assert set(train) | set(test) == set(SR_IMAGES)
    assert split_sr_images() == (train, test)
    seeds = {split_sr_images(seed=s)[1] for s in range(6)}
    assert len(seeds) > 1


def test_sr_patches_shapes_ranges_and_held_out_images() -> None:
    images = ("camera", "coins", "moon")
    train, test = load_sr_patches(
        scale=2, patch=32, stride=32, images=images, test_fraction=0.34, seed=0
    )
    train_names, test_names = split_sr_images(images, test_fraction=0.34, seed=0)
    assert len(test_names) == 1
    lr, hr = test.tensors
    assert lr.shape[1:] == (1, 16, 16) and hr.shape[1:] == (1, 32, 32)
    assert lr.dtype == torch.float32 and hr.dtype == torch.float32
    for t in (*train.tensors, lr, hr):
        assert t.min() >= 0.0 and t.max() <= 1.0
    # test patches are exactly the grid crops of the held-out photo, and nothing else
    held = extract_patches(load_luma(test_names[0]), patch=32, stride=32)
    assert torch.equal(hr, held)
    expected_train = sum(
        extract_patches(load_luma(n), patch=32, stride=32).shape[0] for n in train_names
    )
    assert len(train) == expected_train
    # low-res is the antialiased downsampling: same local mean as the high-res patch
    assert torch.equal(lr, downsample(hr, 2))
    assert (lr.mean(dim=(1, 2, 3)) - hr.mean(dim=(1, 2, 3))).abs().max() < 0.02


def test_sr_patches_defaults() -> None:
    train, test = load_sr_patches()
    assert len(train) > 1000 and len(test) > 100
    assert train.tensors[0].shape[1:] == (1, 16, 16)
    assert test.tensors[1].shape[1:] == (1, 32, 32)


def test_sr_patches_scale3_and_errors() -> None:
    _, test = load_sr_patches(scale=3, patch=24, stride=48, images=("camera", "moon"))
    assert test.tensors[0].shape[1:] == (1, 8, 8) and test.tensors[1].shape[1:] == (1, 24, 24)
    with pytest.raises(ValueError, match="multiple of scale"):
        load_sr_patches(scale=3, patch=32)
    with pytest.raises(ValueError, match="at least 2 images"):
        load_sr_patches(images=("camera",))


def test_extract_patches_grid() -> None:
    img = np.arange(10 * 7, dtype=np.float32).reshape(10, 7)
    p = extract_patches(img, patch=4, stride=3)
    assert p.shape == (3 * 2, 1, 4, 4)  # rows start 0,3,6; cols 0,3
    assert torch.equal(p[1, 0], torch.from_numpy(img[0:4, 3:7]))
    assert torch.equal(p[4, 0], torch.from_numpy(img[6:10, 0:4]))


# ---------------------------------------------------------------- CIFAR-10


def _fake_image(k: int) -> np.ndarray:
    """(3, 32, 32) uint8 with channel c filled with 10*k + c (distinct per image/channel)."""
    return np.stack([np.full((32, 32), 10 * k + c, dtype=np.uint8) for c in range(3)])


def _write_batch(path: Path, start: int, n: int) -> None:
    imgs = np.stack([_fake_image(start + i) for i in range(n)])
    imgs[:, 0, 0, 1] = 255  # one marker pixel: red plane, row 0, column 1
    obj = {
        b"data": imgs.reshape(n, 3072),
        b"labels": [(start + i) % 10 for i in range(n)],
        b"batch_label": b"fake",
    }
    with path.open("wb") as fh:
        pickle.dump(obj, fh)


@pytest.fixture
def cifar_dir(tmp_path: Path) -> Path:
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for b in range(5):
        _write_batch(root / f"data_batch_{b + 1}", 4 * b, 4)
    _write_batch(root / "test_batch", 20, 4)
    return root


def test_cifar10_train_and_test(cifar_dir: Path) -> None:
    train = load_cifar10(cifar_dir, train=True)
    test = load_cifar10(cifar_dir, train=False)
    assert isinstance(train, TensorDataset)
    x, y = train.tensors
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == [i % 10 for i in range(20)]
    assert len(test) == 4 and test.tensors[1].tolist() == [0, 1, 2, 3]
    mean = torch.tensor(CIFAR10_MEAN)
    std = torch.tensor(CIFAR10_STD)
    k, c = 7, 2  # image 7, blue channel
    expected = ((10 * k + c) / 255.0 - mean[c]) / std[c]
    assert torch.allclose(x[k, c, 5, 9], expected)
    assert torch.allclose(x[k, 0, 0, 1], (1.0 - mean[0]) / std[0])  # marker in (c, h, w) layout
    assert torch.allclose(x[k, 1, 0, 1], (10 * k + 1) / 255.0 / std[1] - mean[1] / std[1])


def test_cifar10_accepts_parent_folder(cifar_dir: Path) -> None:
    assert len(load_cifar10(cifar_dir.parent, train=False)) == 4


def test_cifar10_missing_file(cifar_dir: Path) -> None:
    (cifar_dir / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3") as info:
        load_cifar10(cifar_dir, train=True)
    assert str(cifar_dir) in str(info.value)
    assert len(load_cifar10(cifar_dir, train=False)) == 4  # the test split is still fine


def test_cifar10_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as info:
        load_cifar10(missing, train=True)
    assert str(missing) in str(info.value) and "test_batch" in str(info.value)
    with pytest.raises(DataError, match="test_batch"):
        load_cifar10(tmp_path, train=False)  # exists, but empty


def test_cifar10_malformed_batches(cifar_dir: Path) -> None:
    (cifar_dir / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test_batch"):
        load_cifar10(cifar_dir, train=False)
    with (cifar_dir / "test_batch").open("wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(DataError, match=r"\(N, 3072\)"):
        load_cifar10(cifar_dir, train=False)


# ---------------------------------------------------------------- image folders


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    root = tmp_path / "val"
    specs = {
        "zebra": [("a.png", (40, 30), (255, 0, 0)), ("b.PNG", (24, 24), (0, 255, 0))],
        "ant": [("x.png", (20, 50), (0, 0, 255)), ("y.bmp", (64, 33), (10, 20, 30))],
    }
    for cls, files in specs.items():
        (root / cls).mkdir(parents=True)
        for name, size, colour in files:
            Image.new("RGB", size, colour).save(root / cls / name)
    (root / "ant" / "notes.txt").write_text("not an image")
    Image.new("L", (30, 30), 128).save(root / "ant" / "z_gray.png")  # grayscale -> RGB
    return root


def test_image_folder_dataset(image_root: Path) -> None:
    ds = ImageFolderDataset(image_root, size=16, resize=20)
    assert ds.classes == ["ant", "zebra"]
    assert ds.class_to_idx == {"ant": 0, "zebra": 1}
    assert len(ds) == 5
    assert [p.name for p, _ in ds.samples] == ["x.png", "y.bmp", "z_gray.png", "a.png", "b.PNG"]
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for i in range(len(ds)):
        x, label = ds[i]
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32
        assert label == ds.samples[i][1]
    x, label = ds[3]  # solid red
    assert label == 1
    red = (torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1) - mean) / std
    assert torch.allclose(x, red.expand(3, 16, 16), atol=1e-5)
    gray, _ = ds[2]
    assert torch.allclose(gray * std + mean, torch.full((3, 16, 16), 128 / 255), atol=1e-5)


def test_image_folder_default_size(image_root: Path) -> None:
    x, _ = ImageFolderDataset(image_root)[0]
    assert x.shape == (3, 224, 224)


def test_resize_and_center_crop() -> None:
    img = Image.new("RGB", (300, 200))
    assert resize_shorter(img, 100).size == (150, 100)
    assert resize_shorter(Image.new("RGB", (50, 80)), 256).size == (256, 409)
    # left third black, middle white: the center crop of a 30x10 image is all white
    arr = np.zeros((10, 30, 3), np.uint8)
    arr[:, 10:20] = 255
    crop = center_crop(Image.fromarray(arr), 10)
    assert crop.size == (10, 10) and np.asarray(crop).min() == 255


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderDataset(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no class subfolders") as info:
        ImageFolderDataset(empty)
    assert str(empty) in str(info.value)
    (empty / "cls").mkdir()
    (empty / "cls" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no images"):
        ImageFolderDataset(empty)
    with pytest.raises(ValueError, match="size"):
        ImageFolderDataset(empty, size=300, resize=256)


# ---------------------------------------------------------------- loaders


def test_make_loaders_seeded_shuffle() -> None:
    data = TensorDataset(torch.arange(50).float(), torch.arange(50))
    tr1, te1 = make_loaders(data, data, batch_size=8, seed=5)
    tr2, _ = make_loaders(data, data, batch_size=8, seed=5)
    tr3, _ = make_loaders(data, data, batch_size=8, seed=6)
    order1 = torch.cat([y for _, y in tr1])
    assert torch.equal(order1, torch.cat([y for _, y in tr2]))
    assert not torch.equal(order1, torch.cat([y for _, y in tr3]))
    assert sorted(order1.tolist()) == list(range(50))
    assert not torch.equal(order1, torch.arange(50))
    assert torch.equal(torch.cat([y for _, y in te1]), torch.arange(50))
    assert [len(y) for _, y in te1] == [8] * 6 + [2]
    assert tr1.num_workers == 0 and te1.num_workers == 0


def test_digits_end_to_end_training() -> None:
    """A few epochs of DigitsCNN on the real digits reach high test accuracy."""
    from patsparse.models import DigitsCNN

    torch.manual_seed(0)
    train, test = load_digits_split()
    tr, te = make_loaders(train, test, batch_size=64, seed=0)
    model = DigitsCNN(width=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        model.train()
        for x, y in tr:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in te)
    assert correct / len(test) > 0.9
