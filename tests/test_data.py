"""groupconv.training.data: idx parsing, Fashion-MNIST, the emoji set, photo patches, splits, missing data."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from groupconv import GroupConvError
from groupconv.training.data import DATASETS, DataMissingError, ImageSet, load
from groupconv.training.data.emoji import EMOJI_TEST, FONT, parse_emoji_test
from groupconv.training.data.fashion_mnist import DEFAULT_DIR, read_idx
from groupconv.training.data.photos import WHEEL_VERSION, default_dir, patches_of

has_fashion_mnist = pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="needs dataset-fashion-mnist (make data)")
has_emoji = pytest.mark.skipif(
    not (FONT.is_file() and EMOJI_TEST.is_file()), reason="needs the emoji packages (make data)"
)
has_photos = pytest.mark.skipif(
    not list(default_dir().glob(f"scikit_image-{WHEEL_VERSION}-*.whl")), reason="needs scikit-image's wheel (make data)"
)


def write_idx(path: Path, array: np.ndarray) -> None:
    """The idx format by hand: magic 0 0 8 ndim, big-endian int32 sizes, bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def test_a_data_dir_with_idx_files_loads_as_float_images(tmp_path):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([7, 0, 9]))
    data = load("fashion-mnist", "test", data_dir=tmp_path)
    assert data.images.shape == (3, 1, 28, 28) and data.images.dtype == torch.float32
    assert data.labels.tolist() == [7, 0, 9]
    assert data.images[0, 0, 0, 5].item() == pytest.approx(5 / 255)
    assert data.images[1, 0, 27, 27].item() == pytest.approx((2 * 784 - 1) % 256 / 255)


def test_read_idx_rejects_a_file_that_is_not_idx(tmp_path):
    (tmp_path / "bad").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="not an unsigned-byte idx file"):
        read_idx(tmp_path / "bad")


def test_missing_fashion_mnist_says_how_to_install_it(tmp_path):
    with pytest.raises(DataMissingError) as caught:
        load("fashion-mnist", "train", data_dir=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in message
    assert "apt-get install -y dataset-fashion-mnist" in message


def test_missing_emoji_names_both_packages(tmp_path):
    with pytest.raises(DataMissingError, match=r"apt-get install -y fonts-noto-color-emoji unicode-data"):
        load("emoji", "test", data_dir=tmp_path)


def test_unknown_dataset_and_split_are_rejected():
    with pytest.raises(ValueError, match="choose one of fashion-mnist, emoji, photos"):
        load("cifar10")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load("fashion-mnist", "validation")


@has_fashion_mnist
def test_fashion_mnist_is_the_published_set():
    """Xiao et al.: 60,000 + 10,000 images, 6,000 / 1,000 per class; the test split opens with an ankle boot."""
    train, test = load("fashion-mnist", "train"), load("fashion-mnist", "test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert DATASETS["fashion-mnist"].classes[test.labels[0]] == "Ankle boot"
    assert 0 <= test.images.min() and test.images.max() == 1


def test_parse_emoji_test_keeps_fully_qualified_lines_with_their_group():
    text = """# group: Smileys & Emotion
1F600 ; fully-qualified # 😀 E1.0 grinning face
263A FE0F ; fully-qualified # ☺️ E0.6 smiling face
263A ; unqualified # ☺ E0.6 smiling face
# group: People & Body
1F44B 1F3FB ; fully-qualified # 👋🏻 E1.0 waving hand: light skin tone
"""
    assert parse_emoji_test(text) == [
        ("😀", "Smileys & Emotion", "grinning face"),
        ("☺️", "Smileys & Emotion", "smiling face"),
        ("👋🏻", "People & Body", "waving hand: light skin tone"),
    ]


@pytest.mark.slow
@has_emoji
def test_emoji_set_is_colour_labelled_and_split_without_shared_variants():
    train, test = load("emoji", "train"), load("emoji", "test")
    assert train.images.shape[1:] == (3, 32, 32) and 0 <= train.images.min() and train.images.max() <= 1
    assert 0.15 < len(test) / (len(train) + len(test)) < 0.25
    assert set(torch.unique(train.labels).tolist()) == set(range(len(DATASETS["emoji"].classes)))
    grinning = train.images[0, :, 16, 16]  # 😀, the first emoji in the file, is yellow at its centre
    assert grinning[0] > 0.8 and grinning[1] > 0.7 and grinning[2] < 0.4
    assert train.images[0, :, 0, 0].tolist() == [1.0, 1.0, 1.0]  # drawn on white


@has_emoji
def test_emoji_variants_share_a_split():
    from groupconv.training.data.emoji import _is_test

    names = [name for _, _, name in parse_emoji_test(EMOJI_TEST.read_text(encoding="utf-8"))]
    waving = {_is_test(name) for name in names if name.startswith("waving hand")}
    assert len(waving) == 1
    flags = [_is_test(name) for name in names if name.startswith("flag:")]
    assert 0 < sum(flags) < len(flags)  # flags are separate emoji, not variants of "flag"


def test_missing_photos_give_the_pip_download_command(tmp_path):
    with pytest.raises(DataMissingError) as caught:
        load("photos", "train", data_dir=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert f"pip download scikit-image=={WHEEL_VERSION} --no-deps -d {tmp_path}" in message


def test_photo_patches_lie_wholly_on_their_side_of_the_split():
    """Each pixel holds its column number, so a patch's columns say where it was cut."""
    columns = np.broadcast_to(np.arange(240, dtype=np.uint8)[None, :, None], (64, 240, 3))
    train, test = patches_of(columns, "train"), patches_of(columns, "test")
    boundary, margin, rows = 160, 16, len(range(0, 64 - 32 + 1, 8))  # two thirds of 240
    assert train[..., 0].max() < boundary - margin and test[..., 0].min() >= boundary + margin
    assert len(train) == rows * len(range(0, 144 - 32 + 1, 8)) and len(test) == rows * len(range(176, 240 - 32 + 1, 8))


def test_flat_patches_are_dropped():
    flat = np.full((32, 96, 3), 7, dtype=np.uint8)
    assert len(patches_of(flat, "train")) == 0


@has_photos
def test_photos_are_colour_patches_of_eight_photographs():
    train, test = load("photos", "train"), load("photos", "test")
    assert train.images.shape[1:] == (3, 32, 32) and 0 <= train.images.min() and train.images.max() <= 1
    assert set(train.labels.tolist()) == set(test.labels.tolist()) == set(range(8))
    assert 0.2 < len(test) / (len(train) + len(test)) < 0.35


def test_split_off_holds_out_the_same_images_whatever_else_happens():
    data = ImageSet(torch.arange(50.0).view(50, 1, 1, 1), torch.arange(50), None)
    torch.manual_seed(123)  # the global generator must not matter
    rest, held = data.split_off(10)
    torch.manual_seed(456)
    _, held_again = data.split_off(10)
    assert torch.equal(held.labels, held_again.labels) and len(rest) == 40
    assert sorted(rest.labels.tolist() + held.labels.tolist()) == list(range(50))
    assert torch.equal(held.images.flatten(), held.labels.float())  # images stay with their labels


def test_greyscale_is_bt601_luma_in_three_equal_channels():
    pixel = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)
    grey = ImageSet(pixel, torch.zeros(1), None).greyscale().images.flatten().tolist()
    assert grey == pytest.approx([0.299 * 0.2 + 0.587 * 0.5 + 0.114 * 0.9] * 3)
    with pytest.raises(GroupConvError, match="greyscale needs RGB images, these have 1 channel"):
        ImageSet(torch.zeros(1, 1, 2, 2), torch.zeros(1), None).greyscale()
