"""Image decoding edge cases: bit depth, modes, orientation, truncation, bombs, atomic writes."""

from __future__ import annotations

import io
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from cli_helpers import fails_if_it_hangs
from degrade.errors import ImageError
from degrade.io import atomic_write_bytes, decode_image, encode_png, list_images, read_image, to_uint8


@pytest.fixture()
def rgb():
    return np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)


def test_rgb_round_trip(tmp_path, rgb):
    f = tmp_path / "a.png"
    f.write_bytes(encode_png(rgb))
    pic = read_image(f)
    assert np.array_equal(pic.pixels, rgb) and pic.alpha is None and pic.bit_depth == 8


def test_sixteen_bit_rgb_and_gray_are_scaled(tmp_path):
    a = np.random.default_rng(1).integers(0, 65536, (10, 12, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "c.png"), a[..., ::-1])
    cv2.imwrite(str(tmp_path / "g.png"), a[..., 0])
    c, g = read_image(tmp_path / "c.png"), read_image(tmp_path / "g.png")
    assert c.bit_depth == 16 and c.pixels.dtype == np.uint8 and c.pixels.shape == (10, 12, 3)
    assert np.abs(c.pixels.astype(int) - a.astype(int) // 257).max() <= 1
    assert g.bit_depth == 16 and g.pixels.ndim == 2
    assert np.abs(g.pixels.astype(int) - np.rint(a[..., 0] / 257)).max() <= 1


def _with_exif_chunk(png: bytes, orientation: int) -> bytes:
    """PNG bytes with an eXIf chunk (EXIF orientation) after IHDR, as cameras and editors write it."""
    import struct
    import zlib

    exif = Image.Exif()
    exif[0x0112] = orientation
    data = exif.tobytes()
    data = data[6:] if data.startswith(b"Exif\x00\x00") else data
    chunk = struct.pack(">I", len(data)) + b"eXIf" + data + struct.pack(">I", zlib.crc32(b"eXIf" + data))
    return png[:33] + chunk + png[33:]


def test_deep_keeps_sixteen_bit_samples_in_every_layout(tmp_path):
    rng = np.random.default_rng(3)
    rgb16 = rng.integers(0, 65536, (10, 12, 3), dtype=np.uint16)
    alpha16 = rng.integers(0, 65536, (10, 12), dtype=np.uint16)
    cases = {  # file: (bytes, the samples deep must hold)
        "rgb48.png": (encode_png(rgb16), rgb16),
        "rgba64.png": (encode_png(rgb16, alpha16), np.dstack([rgb16, alpha16])),
        "gray16.png": (encode_png(rgb16[..., 0]), rgb16[..., 0]),
        "la32.png": (encode_png(rgb16[..., 0], alpha16), np.dstack([rgb16[..., 0], alpha16])),
        "rgb48.tif": (cv2.imencode(".tif", rgb16[..., ::-1])[1].tobytes(), rgb16),
        "rgb48-rotated.png": (_with_exif_chunk(encode_png(rgb16), 6), np.rot90(rgb16, -1)),
    }
    for name, (data, want) in cases.items():
        (tmp_path / name).write_bytes(data)
        pic = read_image(tmp_path / name, deep=True)
        assert pic.bit_depth == 16 and pic.deep is not None and pic.deep.dtype == np.uint16, name
        assert np.array_equal(pic.deep, want), name
        eight = pic.pixels if pic.alpha is None else np.dstack([pic.pixels, pic.alpha])  # the 8-bit decode agrees
        assert eight.shape == want.shape and np.abs((want >> 8).astype(int) - eight).max() <= 1, name
        assert read_image(tmp_path / name).deep is None, name  # only when asked
    assert decode_image(cases["rgb48.png"][0], deep=True).deep is not None
    (tmp_path / "rgb24.png").write_bytes(encode_png(to_uint8(rgb16)))
    assert read_image(tmp_path / "rgb24.png", deep=True).deep is None  # 8-bit sources have nothing deeper


def test_sixteen_bit_gray_alpha_stays_gray(tmp_path):
    g = np.random.default_rng(4).integers(0, 65536, (10, 12), dtype=np.uint16)
    a = np.full((10, 12), 30000, np.uint16)
    (tmp_path / "la.png").write_bytes(encode_png(g, a))
    pic = read_image(tmp_path / "la.png")  # Pillow opens it as RGBA
    assert pic.pixels.ndim == 2 and pic.alpha is not None and np.abs(pic.pixels.astype(int) - g // 257).max() <= 1


def test_deep_orientation_matches_exif_transpose():
    from PIL import ImageOps

    from degrade.io import _ORIENT

    a = np.arange(5 * 7, dtype=np.uint8).reshape(5, 7)
    for orientation, op in _ORIENT.items():
        im = Image.fromarray(a)
        exif = im.getexif()
        exif[0x0112] = orientation
        buf = io.BytesIO()
        im.save(buf, format="PNG", exif=exif)
        assert np.array_equal(np.asarray(ImageOps.exif_transpose(Image.open(buf))), op(a)), orientation


def test_grayscale_rgba_la_palette(tmp_path, rgb):
    Image.fromarray(rgb[..., 0]).save(tmp_path / "l.png")
    alpha = np.full(rgb.shape[:2], 128, np.uint8)
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")
    Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA").save(tmp_path / "la.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    Image.fromarray(rgb).convert("1").save(tmp_path / "b.png")
    assert read_image(tmp_path / "l.png").pixels.ndim == 2
    pic = read_image(tmp_path / "rgba.png")
    assert pic.pixels.shape == rgb.shape and np.array_equal(pic.alpha, alpha)
    composited = pic.rgb()
    assert np.abs(composited.astype(int) - (rgb.astype(float) * 128 / 255 + 255 * 127 / 255)).max() <= 1
    la = read_image(tmp_path / "la.png")
    assert la.pixels.ndim == 2 and la.alpha is not None
    assert read_image(tmp_path / "p.png").pixels.shape == rgb.shape
    assert read_image(tmp_path / "b.png").pixels.ndim == 2


def test_opaque_alpha_is_dropped(tmp_path, rgb):
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(tmp_path / "x.png")
    assert read_image(tmp_path / "x.png").alpha is None
    Image.fromarray(np.dstack([rgb[..., 0], np.full(rgb.shape[:2], 255, np.uint8)]), "LA").save(tmp_path / "la.png")
    pic = read_image(tmp_path / "la.png")  # gray with an opaque alpha: the same rule as RGBA
    assert pic.alpha is None and np.array_equal(pic.pixels, rgb[..., 0])


def test_exif_orientation_is_applied(tmp_path, rgb):
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    im.save(tmp_path / "o.jpg", exif=exif, quality=95)
    pic = read_image(tmp_path / "o.jpg")
    assert pic.pixels.shape == (30, 20, 3)


@pytest.mark.parametrize("kind", ["truncated_jpeg", "truncated_png", "text", "empty", "dir", "missing"])
def test_unreadable_files_give_one_line(tmp_path, rgb, kind):
    f = tmp_path / f"{kind}.jpg"
    if kind.startswith("truncated"):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(2).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(
            buf, format="JPEG" if "jpeg" in kind else "PNG"
        )
        f.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "text":
        f.write_text("not an image")
    elif kind == "empty":
        f.write_bytes(b"")
    elif kind == "dir":
        f.mkdir()
    with pytest.raises(ImageError) as e:
        read_image(f)
    msg = str(e.value)
    assert "\n" not in msg and str(f) in msg


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    Image.new("L", (3000, 3000)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="exceeds the limit"):
        read_image(tmp_path / "big.png", max_pixels=1_000_000)
    data = (tmp_path / "big.png").read_bytes()
    with pytest.raises(ImageError, match="exceeds the limit"):
        decode_image(data, "upload", max_pixels=1_000_000)


@pytest.mark.parametrize("channels", [3, 4])
def test_float_colour_tiff_is_refused_as_floating_point(tmp_path, channels):
    """Pillow cannot even identify a 3- or 4-channel float TIFF; the error must still say why."""
    path = tmp_path / "f.tif"
    assert cv2.imwrite(str(path), np.full((5, 7, channels), 0.5, np.float32))
    with pytest.raises(ImageError, match=r"f\.tif: floating-point images are not supported"):
        read_image(path)
    with pytest.raises(ImageError, match="floating-point"):
        decode_image(path.read_bytes(), "upload.tif")


def test_float_tiff_is_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(ImageError, match="floating-point"):
        read_image(tmp_path / "f.tif")


def test_sample_types_that_cannot_be_mapped_to_8_bits_are_refused_without_decoding(tmp_path, monkeypatch):
    import tifffile

    rng = np.random.default_rng(6)
    cases = {
        "f32x3.tif": (rng.random((64, 64, 3), dtype=np.float32), "floating-point"),
        "f16x3.tif": (rng.random((64, 64, 3)).astype(np.float16), "floating-point"),
        "c64.tif": (rng.random((64, 64)).astype(np.complex64), "complex"),
        "s16.tif": (rng.integers(-128, 128, (64, 64), dtype=np.int16), "signed-integer"),
        "s16x3.tif": (rng.integers(-128, 128, (64, 64, 3), dtype=np.int16), "signed-integer"),
        "u32.tif": (rng.integers(0, 2**32, (64, 64), dtype=np.uint32), "32-bit"),
    }
    # a small file must not be decoded just to find out: OpenCV would allocate every float pixel
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded a refused image"))
    for name, (arr, why) in cases.items():
        tifffile.imwrite(tmp_path / name, arr, compression="zlib", photometric="rgb" if arr.ndim == 3 else "minisblack")
        with pytest.raises(ImageError, match=f"^{tmp_path / name}: {why} images are not supported"):
            read_image(tmp_path / name)


def test_gray_tiff_orientation_tag_is_applied(tmp_path):
    """Pillow memory-maps a file opened by path, and its mapped TIFF decoder ignored the size swap of
    orientations 5–8: a gray TIFF came out as stripes."""
    a = np.arange(96 * 128, dtype=np.uint32).reshape(96, 128)
    for name, arr in {"g8.tif": (a % 251).astype(np.uint8), "g16.tif": (a * 5 % 65521).astype(np.uint16)}.items():
        im = Image.fromarray(arr)
        exif = im.getexif()
        exif[0x0112] = 6
        im.save(tmp_path / name, exif=exif)
        want = np.rot90(arr, -1)
        got = read_image(tmp_path / name, deep=True)
        assert got.pixels.shape == want.shape, name
        assert np.abs(got.pixels.astype(int) - to_uint8(want)).max() <= 1, name
        if arr.dtype == np.uint16:
            assert np.array_equal(got.deep, want)


def test_colour_key_transparency_becomes_alpha(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "c.png", transparency=tuple(int(v) for v in rgb[0, 0]))
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png", transparency=int(rgb[0, 0, 0]))
    c, g = read_image(tmp_path / "c.png"), read_image(tmp_path / "g.png")
    assert c.pixels.shape == rgb.shape and c.alpha[0, 0] == 0 and (c.alpha == 0).mean() < 0.5
    assert g.pixels.shape == rgb.shape[:2] and g.alpha[0, 0] == 0


def test_sixteen_bit_gray_colour_key_becomes_alpha_and_keeps_its_depth(tmp_path):
    g = (np.arange(20 * 30, dtype=np.uint32).reshape(20, 30) * 97 % 65521).astype(np.uint16)
    Image.fromarray(g).save(tmp_path / "k.png", transparency=int(g[0, 0]))
    pic = read_image(tmp_path / "k.png", deep=True)
    assert pic.alpha is not None and pic.alpha[0, 0] == 0 and (pic.alpha == 0).sum() == (g == g[0, 0]).sum()
    assert pic.deep.shape == (20, 30, 2) and np.array_equal(pic.deep[..., 0], g) and pic.deep[0, 0, 1] == 0


def test_any_decoder_failure_is_an_image_error(tmp_path, rgb, monkeypatch):
    """Pillow's plugins raise more than OSError (the AVIF decoder raises RuntimeError)."""
    from PIL import ImageFile

    (tmp_path / "a.png").write_bytes(encode_png(rgb))

    def broken(self):
        raise RuntimeError("Failed to decode frame 0")

    monkeypatch.setattr(ImageFile.ImageFile, "load", broken)
    with pytest.raises(ImageError, match=r"a.png: cannot decode image \(Failed to decode frame 0\)$"):
        read_image(tmp_path / "a.png")


def test_the_pixel_limit_is_daguerres_not_pillows(tmp_path):
    """Pillow refuses images over 89.5 M pixels by default; daguerre's documented limit is MAX_PIXELS."""
    from degrade.io import MAX_PIXELS

    Image.new("L", (10_000, 9_500)).save(tmp_path / "big.png")  # 95 M pixels, constant: small and fast
    assert read_image(tmp_path / "big.png").pixels.shape == (9_500, 10_000)
    with pytest.raises(ImageError, match="exceeds the limit of 90,000,000"):
        read_image(tmp_path / "big.png", max_pixels=90_000_000)
    assert MAX_PIXELS == 250_000_000


def test_multi_page_tiff_and_animated_gif_read_their_first_frame(tmp_path, rgb):
    other = 255 - rgb
    Image.fromarray(rgb).save(tmp_path / "m.tif", save_all=True, append_images=[Image.fromarray(other)])
    assert np.array_equal(read_image(tmp_path / "m.tif").pixels, rgb)
    Image.fromarray(rgb).save(tmp_path / "m.gif", save_all=True, append_images=[Image.fromarray(other)])
    first = read_image(tmp_path / "m.gif").pixels  # GIF's palette is lossy: nearer the first frame than the second
    assert first.shape == rgb.shape and np.abs(first.astype(int) - rgb).mean() < np.abs(first.astype(int) - other).mean() / 4


def test_to_uint8():
    assert np.array_equal(to_uint8(np.array([0, 65535, 32768], np.uint16)), [0, 255, 128])
    with pytest.raises(ImageError):
        to_uint8(np.zeros(3, np.float32))


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"data")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_a_full_disk_names_the_file_asked_for(tmp_path, monkeypatch):
    """ENOSPC from the write named nothing ("error: No space left on device"); now the file asked for."""
    import errno

    class Full:
        def __init__(self, fd, mode):
            os.close(fd)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", Full)
    with pytest.raises(OSError) as e:
        atomic_write_bytes(tmp_path / "out.png", b"data")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_gray_alpha_png_round_trip(tmp_path, rgb):
    f = tmp_path / "la.png"
    alpha = np.arange(600, dtype=np.uint8).reshape(20, 30)
    f.write_bytes(encode_png(rgb[..., 0], alpha))
    pic = read_image(f)
    assert np.array_equal(pic.pixels, rgb[..., 0]) and np.array_equal(pic.alpha, alpha)


def test_list_images_expands_folders_and_globs(tmp_path, rgb):
    (tmp_path / "sub").mkdir()
    for name in ("a.png", "sub/b.JPG", "sub/notes.txt"):
        (tmp_path / name).write_bytes(encode_png(rgb))
    found = list_images([tmp_path])
    assert [p.name for p in found] == ["a.png", "b.JPG"]
    assert [p.name for p in list_images([str(tmp_path / "*.png"), tmp_path / "a.png"])] == ["a.png"]


def test_icc_profiles_are_read_kept_when_they_fit_and_written(tmp_path):
    from PIL import ImageCms

    from degrade.io import icc_for

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = (np.arange(6 * 5 * 3) % 251).astype(np.uint8).reshape(6, 5, 3)
    Image.fromarray(rgb).save(tmp_path / "a.png", icc_profile=icc)
    assert read_image(tmp_path / "a.png").icc == icc
    assert icc_for(icc, gray=True) is None  # an RGB profile does not describe gray pixels
    cmyk = icc[:16] + b"CMYK" + icc[20:]
    assert icc_for(cmyk, gray=False) is None and icc_for(b"not a profile", gray=False) is None
    for alpha in (None, np.full((6, 5), 128, np.uint8)):
        for px in (rgb, rgb[..., 0]):  # the chunk goes in whatever the PNG's colour type
            png = encode_png(px, alpha, icc=icc)
            with Image.open(io.BytesIO(png)) as im:
                im.load()
                assert im.info["icc_profile"] == icc
            back = decode_image(png)
            assert np.array_equal(back.pixels, px) and (back.alpha is None) == (alpha is None)
    assert encode_png(rgb) == encode_png(rgb, icc=None)
    Image.fromarray(rgb).save(tmp_path / "b.png")
    assert read_image(tmp_path / "b.png").icc is None


def test_sixteen_bit_planar_tiff_is_refused_not_garbled(tmp_path):
    """PlanarConfiguration 2 (one plane per colour): Pillow decoded the 16-bit planes as 8-bit samples,
    interleaving high and low bytes into a garbled image that was restored without a word."""
    import tifffile

    rgb = np.random.default_rng(6).integers(0, 65536, (20, 24, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "p16.tif", rgb.transpose(2, 0, 1), photometric="rgb", planarconfig="separate")
    with pytest.raises(ImageError, match=r"p16\.tif: 16-bit TIFFs with separate colour planes are not supported"):
        read_image(tmp_path / "p16.tif", deep=True)
    eight = to_uint8(rgb)  # 8-bit planes decode right: still read
    tifffile.imwrite(tmp_path / "p8.tif", eight.transpose(2, 0, 1), photometric="rgb", planarconfig="separate")
    assert np.array_equal(read_image(tmp_path / "p8.tif").pixels, eight)
def test_sixteen_bit_min_is_white_tiff_is_not_a_negative(tmp_path):
    """PhotometricInterpretation 0 (MinIsWhite: 0 is white): Pillow inverts 8-bit such TIFFs but not
    16-bit ones, and OpenCV neither, so a 16-bit one was read, restored and written as its negative."""
    import struct

    import tifffile

    ramp = (np.arange(64, dtype=np.uint16) * 1000)[None].repeat(8, 0)  # stored samples: 0 at the left
    for name, samples, white in (("mw16.tif", ramp, 65535), ("mw8.tif", (ramp >> 8).astype(np.uint8), 255)):
        tifffile.imwrite(tmp_path / name, samples, photometric="minisblack")
        data = bytearray((tmp_path / name).read_bytes())  # then tag 262 set to 0: the samples stay as they are
        ifd = struct.unpack("<I", data[4:8])[0]
        for i in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
            at = ifd + 2 + 12 * i
            if struct.unpack("<H", data[at : at + 2])[0] == 262:
                data[at + 8 : at + 10] = struct.pack("<H", 0)
        (tmp_path / name).write_bytes(bytes(data))
        pic = read_image(tmp_path / name, deep=True)
        assert np.abs(pic.pixels.astype(int) - to_uint8(white - samples.astype(np.int32))).max() <= 1, name
        if samples.dtype == np.uint16:
            assert pic.bit_depth == 16 and np.array_equal(pic.deep, white - samples), name
def test_gray_tiff_with_associated_alpha_keeps_gray_and_alpha(tmp_path):
    """ExtraSamples 1 (premultiplied alpha) on a gray TIFF opens in Pillow's mode La, which it converts
    to LA only: its ValueError escaped read_image, so degrade and dataset create stopped on it, serve
    answered 500 and restore called it an internal error."""
    import tifffile

    g = np.random.default_rng(7).integers(0, 256, (20, 30), dtype=np.uint8)
    a = np.full((20, 30), 255, np.uint8)
    a[:5] = 128
    premultiplied = np.where(a == 255, g, (g.astype(int) * a // 255)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "la.tif", np.dstack([premultiplied, a]), photometric="minisblack", extrasamples=[1])
    pic = read_image(tmp_path / "la.tif")
    assert pic.is_gray and pic.alpha is not None and np.array_equal(pic.alpha, a)
    assert np.array_equal(pic.pixels[5:], g[5:]) and np.abs(pic.pixels[:5].astype(int) - g[:5]).max() <= 2


def test_a_mode_pillow_cannot_convert_is_an_image_error(tmp_path, monkeypatch):
    import degrade.io

    (tmp_path / "a.png").write_bytes(encode_png(np.zeros((4, 4, 3), np.uint8)))

    def refuse(im, name, depth):  # what Pillow says of a mode it opens but cannot convert
        raise ValueError("conversion from XY to RGB not supported")

    monkeypatch.setattr(degrade.io, "_from_pil", refuse)
    with pytest.raises(ImageError, match=r"a\.png: cannot decode image \(conversion from XY to RGB not supported\)"):
        read_image(tmp_path / "a.png")
@pytest.mark.parametrize("orientation", range(2, 9))
def test_deep_orientation_of_a_nearly_flat_sixteen_bit_image(tmp_path, orientation):
    """A gentle 16-bit ramp within a grey level or two of 8 bits: the unoriented samples agree with the
    8-bit decode too, and were taken, so the 16-bit restoration's tones ran the wrong way."""
    import tifffile

    from degrade.io import _ORIENT

    ramp = 30000 + 3 * np.arange(48)[None] + 2 * np.arange(48)[:, None]  # 30000..30235: 8 bits 117–118, square
    gray = ramp.astype(np.uint16)
    rgb = np.dstack([gray, gray[::-1], gray.T]).astype(np.uint16)
    for name, a in {"g": gray, "c": rgb}.items():
        (tmp_path / f"{name}.png").write_bytes(_with_exif_chunk(encode_png(a), orientation))
        tifffile.imwrite(tmp_path / f"{name}.tif", a, photometric="rgb" if a.ndim == 3 else "minisblack",
                         extratags=[(274, 3, 1, orientation, False)])  # fmt: skip
        for f in (f"{name}.png", f"{name}.tif"):
            pic = read_image(tmp_path / f, deep=True)
            assert pic.deep is not None and np.array_equal(pic.deep, _ORIENT[orientation](a)), f


def test_sixteen_bit_gray_alpha_tiff_is_read_through_tifffile(tmp_path):
    """Pillow does not open 16-bit gray + alpha TIFFs ("not a recognised image format"), which the docs
    listed as restored; they are read through tifffile, with orientation, MinIsWhite and associated alpha."""
    import tifffile

    y, x = np.mgrid[:24, :40]
    g = (x * 1500 + y * 7).astype(np.uint16)
    a = np.full_like(g, 65535)
    a[:6] = 20000
    tifffile.imwrite(tmp_path / "ga.tif", np.dstack([g, a]), photometric="minisblack", extrasamples=[2])
    pic = read_image(tmp_path / "ga.tif", deep=True)
    assert pic.bit_depth == 16 and pic.pixels.ndim == 2 and np.array_equal(pic.pixels, to_uint8(g))
    assert np.array_equal(pic.alpha, to_uint8(a)) and np.array_equal(pic.deep, np.dstack([g, a]))
    tifffile.imwrite(tmp_path / "rot.tif", np.dstack([g, a]), photometric="minisblack", extrasamples=[2],
                     extratags=[(274, "H", 1, 6, True)])  # fmt: skip
    assert np.array_equal(read_image(tmp_path / "rot.tif", deep=True).deep, np.rot90(np.dstack([g, a]), -1))
    tifffile.imwrite(tmp_path / "white.tif", np.dstack([65535 - g, a]), photometric="miniswhite", extrasamples=[2])
    assert np.array_equal(read_image(tmp_path / "white.tif", deep=True).deep, np.dstack([g, a]))
    pre = (g.astype(np.float64) * a / 65535).round().astype(np.uint16)  # associated: stored premultiplied
    tifffile.imwrite(tmp_path / "pre.tif", np.dstack([pre, a]), photometric="minisblack", extrasamples=[1])
    assert np.abs(read_image(tmp_path / "pre.tif", deep=True).deep[..., 0].astype(int) - g).max() <= 2
    opaque = np.dstack([g, np.full_like(g, 65535)])
    tifffile.imwrite(tmp_path / "opaque.tif", opaque, photometric="minisblack", extrasamples=[2])
    pic = read_image(tmp_path / "opaque.tif", deep=True)
    assert pic.alpha is None and np.array_equal(pic.deep, g)  # a wholly opaque alpha is dropped, as for PNGs
    tifffile.imwrite(tmp_path / "f.tif", np.dstack([g, a]).astype(np.float32), photometric="minisblack", extrasamples=[2])
    with pytest.raises(ImageError, match="f.tif: "):
        read_image(tmp_path / "f.tif")


def test_a_durable_write_syncs_the_bytes_before_the_name_and_the_name_before_it_returns(tmp_path, monkeypatch):
    """What lets a progress marker or a catalog row rely on the file after a power cut; a plain
    write stays unsynced (a caller syncs once for several files: restore and export sync the folder per
    photo or sample). Checkpoints are written durably."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("sync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("name", str(a))), real_replace(a, b))[1])
    atomic_write_bytes(tmp_path / "a.bin", [b"da", b"ta"], durable=True)
    assert [e[0] for e in events] == ["sync", "name", "sync"]
    assert events[0][1] == events[1][1] and events[2][1] == str(tmp_path)
    assert (tmp_path / "a.bin").read_bytes() == b"data"
    events.clear()
    atomic_write_bytes(tmp_path / "b.bin", b"x", durable="data")
    assert [e[0] for e in events] == ["sync", "name"]
    events.clear()  # folders it makes are synced into their parents, outermost first, before the file
    atomic_write_bytes(tmp_path / "new" / "er" / "d.bin", b"x", durable="data")
    assert events == [("sync", str(tmp_path)), ("sync", str(tmp_path / "new")), ("sync", events[2][1]), ("name", events[2][1])]
    events.clear()
    atomic_write_bytes(tmp_path / "c.bin", b"x")
    assert [e[0] for e in events] == ["name"]
    events.clear()
    import torch

    from zoo.checkpoint import save

    save(tmp_path / "m", {"w": torch.zeros(2)}, {"model": "x"})
    synced = {os.path.basename(p) for kind, p in events if kind == "sync"}
    assert {os.path.basename(p) for kind, p in events if kind == "name"} <= synced and tmp_path.name in synced


def test_a_recursive_glob_through_a_looping_link_is_one_error(tmp_path, rgb):
    """``glob`` follows links to folders: ``a/loop -> a`` gave ``a/x.png`` 41 times (a dataset source then picked
    it 41 times as often as its other photos), and two such links made ``**`` run for 2**40 folders."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "x.png").write_bytes(encode_png(rgb))
    (tmp_path / "a" / "b" / "y.png").write_bytes(encode_png(rgb))
    (tmp_path / "a" / "alias").symlink_to(tmp_path / "a" / "b")  # not a loop: found again, as glob does
    assert [p.name for p in list_images([str(tmp_path / "a" / "**" / "*.png")])] == ["y.png", "y.png", "x.png"]
    (tmp_path / "a" / "alias").unlink()  # with it, the old code's glob below took 2**40 turns instead of 40
    (tmp_path / "a" / "b" / "loop").symlink_to(tmp_path / "a")
    with pytest.raises(ImageError, match=r"symbolic link .*loop leads back"):
        list_images([str(tmp_path / "a" / "**" / "*.png")])
    assert [p.name for p in list_images([str(tmp_path / "a" / "*.png"), tmp_path / "a"])] == ["x.png", "y.png"]


def test_sixteen_bit_colour_keeps_its_high_byte_and_gray_rounds(tmp_path):
    """As docs/degrade.md says: datasets of 16-bit colour sources reproduce only while this holds."""
    for value in (200, 385, 65535, 50000):
        cv2.imwrite(str(tmp_path / "rgb.png"), np.full((2, 2, 3), value, np.uint16))
        cv2.imwrite(str(tmp_path / "gray.png"), np.full((2, 2), value, np.uint16))
        assert (read_image(tmp_path / "rgb.png").pixels == value >> 8).all(), value
        assert (read_image(tmp_path / "gray.png").pixels == round(value / 257)).all(), value


def test_a_pipe_or_device_given_as_an_image_is_refused_unread(tmp_path):
    """`restore fifo.png` waited for a writer for ever, and /dev/zero was read until memory ran out."""
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    for p in (fifo, "/dev/zero"):
        with pytest.raises(ImageError, match="not a regular file"):
            read_image(p)


def test_what_a_path_is_is_judged_unopened_and_only_a_regular_file_is_read(tmp_path, monkeypatch):
    """One check for every "not a regular file" refusal (recipes, settings, zarr.json, cards, records, markers, logs)."""
    from degrade import filekind
    from degrade.filekind import NotRegularFile, read_regular, what_is

    (tmp_path / "file").write_bytes(b"abc")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "moved").symlink_to(tmp_path / "away")
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    kinds = {name: what_is(tmp_path / name) for name in ("file", "link", "dir", "fifo", "moved", "a", "none")}
    assert kinds == {"file": None, "link": None, "dir": "a folder", "fifo": "a pipe, socket or device",
                     "moved": "a broken symbolic link", "a": "a broken symbolic link", "none": "no such file"}  # fmt: skip
    assert what_is("/dev/zero") == "a pipe, socket or device" and what_is(tmp_path / "file" / "x") == "no such file"
    assert read_regular(tmp_path / "link") == b"abc" and read_regular(tmp_path / "file", 2) == b"ab"
    with fails_if_it_hangs(30):
        for name, why in (("dir", "not a regular file (a folder)"), ("fifo", "not a regular file (a pipe, socket or device)")):
            with pytest.raises(NotRegularFile) as e:
                read_regular(tmp_path / name)
            assert e.value.strerror == why and e.value.filename == str(tmp_path / name)
        with pytest.raises(NotRegularFile):
            read_regular("/dev/zero")
        for name, why in (("moved", "a broken symbolic link"), ("none", "No such file or directory")):
            with pytest.raises(FileNotFoundError) as e:
                read_regular(tmp_path / name)
            assert e.value.strerror == why
        monkeypatch.setattr(filekind, "what_is", lambda path: None)  # a FIFO put in the file's place after the check
        with pytest.raises(NotRegularFile, match=r"a pipe, socket or device"):
            read_regular(tmp_path / "fifo")
