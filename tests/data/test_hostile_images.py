"""Image folders a hostile or careless user may hand to `shortcut encode`: directory-link loops,
16-bit and floating-point pixels, images too large to decode, and a bad resolution."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shortcut_models.autoencoders import IdentityAutoencoder
from shortcut_models.cli import main
from shortcut_models.data.folder import MAX_PIXELS, UnreadableImage, load_image_uint8, scan_folder
from shortcut_models.data.latents import encode_folder
from shortcut_models.errors import UserError

RES = 16


def _encode(folder: Path, out: Path, **kw) -> dict:
    return encode_folder(folder, out, IdentityAutoencoder(), resolution=RES, batch_size=4, progress=False, **kw)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares ``width`` x ``height`` 8-bit RGB pixels but holds almost no data (bytes, not a decode)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_a_directory_link_loop_is_followed_once(tmp_path, png):
    rng = np.random.default_rng(0)
    for name in ("a.png", "sub/b.png", "sub/deeper/c.png"):
        png(tmp_path / "flat" / name, rng)
    (tmp_path / "flat" / "sub" / "up").symlink_to("..")  # sub/up -> flat: a loop
    (tmp_path / "flat" / "again").symlink_to("sub")  # a second name for a directory already scanned
    with pytest.warns(UserWarning, match="already scanned") as record:
        items, classes = scan_folder(tmp_path / "flat")
    assert classes == [] and [p.relative_to(tmp_path / "flat").as_posix() for p, _ in items] == [
        "a.png",
        "sub/b.png",
        "sub/deeper/c.png",
    ]
    assert sorted(Path(str(w.message).split()[1].rstrip(":")).name for w in record) == ["again", "up"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _encode(tmp_path / "flat", tmp_path / "cache")["num_images"] == 3


def test_a_link_loop_inside_class_folders(tmp_path, png):
    rng = np.random.default_rng(1)
    for name in ("cats/x.png", "cats/y.png", "dogs/z.png"):
        png(tmp_path / "classes" / name, rng)
    (tmp_path / "classes" / "dogs" / "home").symlink_to("../..")  # back to the root
    (tmp_path / "classes" / "dogs" / "cats").symlink_to("../cats")  # a class seen again below another
    with pytest.warns(UserWarning, match="already scanned"):
        items, classes = scan_folder(tmp_path / "classes")
    assert classes == ["cats", "dogs"]
    assert [(p.relative_to(tmp_path / "classes").as_posix(), y) for p, y in items] == [
        ("cats/x.png", 0),
        ("cats/y.png", 0),
        ("dogs/z.png", 1),
    ]


@pytest.fixture
def eight_bit(tmp_path) -> np.ndarray:
    """A 20x24 gray ramp through every 8-bit level, and its PNG (the reference the other depths must match)."""
    pixels = (np.arange(20 * 24).reshape(20, 24) * 255 // (20 * 24 - 1)).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "u8.png")
    return pixels


def test_16_bit_and_float_pixels_keep_their_brightness(tmp_path, eight_bit):
    reference = load_image_uint8(tmp_path / "u8.png", RES)
    Image.fromarray(eight_bit.astype(np.uint16) * 257).save(tmp_path / "u16.png")  # 16-bit gray PNG
    assert Image.open(tmp_path / "u16.png").mode == "I;16"
    Image.fromarray(eight_bit.astype(np.float32) / 255).save(tmp_path / "f32.tif")  # float TIFF in [0, 1]
    assert Image.open(tmp_path / "f32.tif").mode == "F"
    Image.fromarray(eight_bit.astype(np.int32) * 257, mode="I").save(tmp_path / "i32.tif")  # 32-bit integer TIFF
    for name in ("u16.png", "f32.tif", "i32.tif"):
        np.testing.assert_array_equal(load_image_uint8(tmp_path / name, RES), reference, err_msg=name)
    assert reference.min() < 40 and reference.max() > 215  # neither white nor black


@pytest.mark.parametrize(
    "values, reason",
    [
        (np.full((20, 24), 3.0, np.float32), "floating-point pixels outside 0.0..1.0"),
        (np.full((20, 24), np.nan, np.float32), "floating-point pixels outside"),
        (np.full((20, 24), 70000, np.int32), "integer pixels outside 0..65535"),
    ],
)
def test_pixels_out_of_range_are_skipped_and_named(tmp_path, values, reason, eight_bit):
    Image.fromarray(values).save(tmp_path / "odd.tif")
    with pytest.raises(UnreadableImage, match=reason):
        load_image_uint8(tmp_path / "odd.tif", RES)
    with pytest.warns(UserWarning, match=f"odd.tif: {reason}"):
        manifest = _encode(tmp_path, tmp_path / "cache")
    assert manifest["num_images"] == 1 and manifest["skipped"][0]["file"] == "odd.tif"


@pytest.mark.parametrize("side", [12000, 20000])  # above our limit; above twice PIL's own limit
def test_huge_images_are_refused_from_their_header(tmp_path, side, eight_bit):
    _png_header_only(tmp_path / "huge.png", side, side)
    assert (tmp_path / "huge.png").stat().st_size < 200 and side * side > MAX_PIXELS
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(UnreadableImage, match="pixels"):
            load_image_uint8(tmp_path / "huge.png", RES)
        manifest = _encode(tmp_path, tmp_path / "cache")
    assert manifest["num_images"] == 1 and manifest["skipped"][0]["file"] == "huge.png"
    assert [str(w.message) for w in record] == [
        f"skipping unreadable image huge.png: {manifest['skipped'][0]['reason']}"
    ]


@pytest.mark.parametrize("resolution", [0, -3, 100_000])
def test_a_bad_resolution_is_refused_before_any_work(tmp_path, resolution, eight_bit, capsys):
    with pytest.raises(UserError, match="resolution"):
        encode_folder(tmp_path, tmp_path / "cache", IdentityAutoencoder(), resolution=resolution, progress=False)
    argv = ["encode", "--data", str(tmp_path), "--vae", "identity", "--out", str(tmp_path / "cache")]
    assert main([*argv, "--resolution", str(resolution)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resolution" in err and "4096" in err
    assert not (tmp_path / "cache").exists()
