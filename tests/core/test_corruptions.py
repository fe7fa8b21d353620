"""core.corruptions: every corruption's parameter measured from its output, identity at
severity 0, determinism, and bit-exact agreement with the published code's libraries where
they are installed (PIL for pixelate and JPEG, scipy for zoom blur)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from core import columns as C
from core.corruptions import PARAMS, corrupt, corruption_generator
from core.errors import ConfigError


def images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random images (blurs and JPEG need structure), uint8 (n, 3, 32, 32)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    x = torch.nn.functional.interpolate(low, size=32, mode="bilinear", align_corners=False)
    return (x * 200 + 28).round().to(torch.uint8)


def gray(n: int = 32, value: int = 128) -> torch.Tensor:
    return torch.full((n, 3, 32, 32), value, dtype=torch.uint8)


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_severity_zero_is_identity_and_dtype_shape_device_kept(name):
    x = images(8)
    assert torch.equal(corrupt(x, name, 0), x)
    for s in C.SEVERITIES:
        y = corrupt(x, name, s)
        assert y.dtype == torch.uint8 and y.shape == x.shape and y.device == x.device


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_same_seed_same_images_and_severities_differ(name):
    x = images(16)
    outs = [corrupt(x, name, s) for s in C.SEVERITIES]
    for s, y in zip(C.SEVERITIES, outs, strict=True):
        assert torch.equal(corrupt(x, name, s), y)
    for a, b in zip(outs, outs[1:], strict=False):
        assert not torch.equal(a, b)
    assert not torch.equal(outs[2], x)


def test_the_published_parameters():
    assert PARAMS["gaussian_noise"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert PARAMS["shot_noise"] == (500, 250, 100, 75, 50)
    assert PARAMS["impulse_noise"] == (0.01, 0.02, 0.03, 0.05, 0.07)
    assert PARAMS["contrast"] == (0.75, 0.5, 0.4, 0.3, 0.15)
    assert PARAMS["brightness"] == (0.05, 0.1, 0.15, 0.2, 0.3)
    assert PARAMS["pixelate"] == (0.95, 0.9, 0.85, 0.75, 0.65)
    assert PARAMS["jpeg_compression"] == (80, 65, 58, 50, 40)
    assert tuple(PARAMS) == C.CORRUPTIONS


def test_generators_differ_by_seed_corruption_and_severity():
    draw = [
        torch.rand(4, generator=corruption_generator(*k))
        for k in ((0, "contrast", 1), (1, "contrast", 1), (0, "shot_noise", 1), (0, "contrast", 2))
    ]
    assert all(not torch.equal(draw[0], d) for d in draw[1:])


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_gaussian_noise_variance(severity):
    c = PARAMS["gaussian_noise"][severity - 1]
    x = gray(64)
    # the truncation to uint8 lowers every value by half a level on average
    diff = corrupt(x, "gaussian_noise", severity).double() / 255 - (128 - 0.5) / 255
    assert abs(diff.std().item() - c) < 0.03 * c
    assert abs(diff.mean().item()) < 0.002


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_shot_noise_is_poisson(severity):
    c = PARAMS["shot_noise"][severity - 1]
    x = gray(64)
    y = corrupt(x, "shot_noise", severity).double() / 255
    lam = 128 / 255 * c  # Poisson(lam) / c: variance lam / c^2
    assert abs(y.var().item() - lam / c**2) < 0.05 * lam / c**2
    assert abs(y.mean().item() - 128 / 255) < 0.01


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_impulse_noise_share_of_salt_and_pepper(severity):
    c = PARAMS["impulse_noise"][severity - 1]
    x = gray(128)
    y = corrupt(x, "impulse_noise", severity)
    salt, pepper = (y == 255).double().mean().item(), (y == 0).double().mean().item()
    n = y.numel()
    tol = 4 * math.sqrt(c / 2 / n)
    assert abs(salt - c / 2) < tol and abs(pepper - c / 2) < tol
    assert ((y == 128) | (y == 255) | (y == 0)).all()


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_contrast_scales_the_std_by_c(severity):
    c = PARAMS["contrast"][severity - 1]
    x = images(32)
    y = corrupt(x, "contrast", severity).double()
    ratio = y.std(dim=(2, 3)) / x.double().std(dim=(2, 3))
    assert (ratio - c).abs().max().item() < 0.02 + 1.0 / x.double().std(dim=(2, 3)).min()
    # the per-channel mean is kept (up to the truncation to uint8: -0.5 on average)
    assert (y.mean(dim=(2, 3)) - x.double().mean(dim=(2, 3)) + 0.5).abs().max() < 0.6


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_brightness_shifts_v_by_c(severity):
    c = PARAMS["brightness"][severity - 1]
    x = images(32) // 2  # V <= 0.5: never clipped
    y = corrupt(x, "brightness", severity)
    v_x = x.double().amax(1) / 255
    v_y = y.double().amax(1) / 255
    assert ((v_y - v_x) - c).abs().max().item() < 1.01 / 255
    # hue kept: the channel order of every pixel is the same
    colourful = x.amax(1) > x.amin(1) + 3
    assert torch.equal(x.argmax(1)[colourful], y.argmax(1)[colourful])


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_pixelate_equals_pil_box_resizing(severity):
    c = PARAMS["pixelate"][severity - 1]
    x = images(16)
    y = corrupt(x, "pixelate", severity)
    for img, out in zip(x, y, strict=True):
        pil = Image.fromarray(img.permute(1, 2, 0).numpy())
        pil = pil.resize((int(32 * c),) * 2, Image.BOX).resize((32, 32), Image.BOX)
        assert np.array_equal(np.asarray(pil), out.permute(1, 2, 0).numpy())


def test_pixelate_block_structure():
    # severity 5: 32 -> 20 -> 32 pixels, so at most 20 distinct columns of values per row
    x = torch.randint(0, 256, (4, 3, 32, 32), generator=torch.Generator().manual_seed(1))
    x = x.to(torch.uint8)
    y = corrupt(x, "pixelate", 5)
    distinct = (y[..., 1:] != y[..., :-1]).any(dim=(1, 2)).sum(-1)  # column changes per image
    assert (distinct <= 20 + 12).all() and (distinct >= 19).all()


def _pil_jpeg(img: torch.Tensor, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf))


def test_jpeg_quality_monotone_in_severity_and_equal_to_pil_and_torchvision():
    x = images(16)
    psnr = []
    for s in C.SEVERITIES:
        y = corrupt(x, "jpeg_compression", s)
        mse = (y.double() - x.double()).square().mean().item()
        psnr.append(10 * math.log10(255**2 / mse))
        q = PARAMS["jpeg_compression"][s - 1]
        for img, out in zip(x[:4], y[:4], strict=True):
            assert np.array_equal(_pil_jpeg(img, q), out.permute(1, 2, 0).numpy())
    assert all(a > b for a, b in zip(psnr, psnr[1:], strict=False)), psnr
    tv = pytest.importorskip("torchvision.io")
    y = corrupt(x, "jpeg_compression", 3)
    via_tv = torch.stack(tv.decode_jpeg(tv.encode_jpeg(list(x), quality=58)))
    assert (via_tv == y).double().mean().item() > 0.99


def test_zoom_blur_equals_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")

    def clipped_zoom(img, z):  # make_cifar_c.clipped_zoom
        h = img.shape[0]
        ch = int(np.ceil(h / z))
        top = (h - ch) // 2
        img = ndimage.zoom(img[top : top + ch, top : top + ch], (z, z, 1), order=1)
        trim = (img.shape[0] - h) // 2
        return img[trim : trim + h, trim : trim + h]

    x = images(6)
    for s, c in zip(C.SEVERITIES, PARAMS["zoom_blur"], strict=True):
        y = corrupt(x, "zoom_blur", s)
        for img, out in zip(x, y, strict=True):
            a = (img.permute(1, 2, 0).numpy() / 255.0).astype(np.float32)
            acc = np.zeros_like(a)
            factors = np.arange(1, c, 0.01)
            for z in factors:
                acc += clipped_zoom(a, z)
            ref = np.uint8(np.clip((a + acc) / (len(factors) + 1), 0, 1) * 255)
            assert np.array_equal(ref, out.permute(1, 2, 0).numpy())


@pytest.mark.parametrize("name", ["defocus_blur", "glass_blur", "zoom_blur"])
def test_blurs_keep_a_constant_image_and_smooth_more_with_severity(name):
    # a constant image stays constant (one level lower where the kernel's float sum is below 1:
    # the published code truncates too)
    flat = corrupt(gray(2, 100), name, 3)
    assert flat.min() == flat.max() and int(flat[0, 0, 0, 0]) in (99, 100)
    x = torch.randint(0, 256, (8, 3, 32, 32), generator=torch.Generator().manual_seed(2))
    x = x.to(torch.uint8)
    rough = []
    for s in C.SEVERITIES:
        y = corrupt(x, name, s).double()
        rough.append((y[..., 1:] - y[..., :-1]).abs().mean().item())
    assert rough[-1] < rough[0] < (x.double()[..., 1:] - x.double()[..., :-1]).abs().mean()


def test_glass_blur_swaps_pull_from_up_left_neighbours():
    # severity 1: sigma 0.05 is a 1-tap blur (identity), so only the pixel pulls remain; a pixel
    # at (h, w), h, w >= 2, takes one of (h-1|h, w-1|w): never a value from below or right
    x = torch.arange(32 * 32).view(1, 1, 32, 32).expand(1, 3, 32, 32) % 251
    x = x.to(torch.uint8).contiguous()
    y = corrupt(x, "glass_blur", 1)[0, 0].to(torch.int64)
    src = x[0, 0].to(torch.int64)
    assert torch.equal(y[:2], src[:2]) and torch.equal(y[:, :2], src[:, :2])
    for h in range(2, 32):
        for w in range(2, 32):
            around = {int(src[h - a, w - b]) for a in (0, 1) for b in (0, 1)}
            assert int(y[h, w]) in around
    assert (y != src).double().mean() > 0.5


def test_refusals():
    with pytest.raises(ConfigError, match="corruption='snow'"):
        corrupt(images(1), "snow", 1)
    with pytest.raises(ConfigError, match="severity=6"):
        corrupt(images(1), "contrast", 6)


@pytest.mark.cuda
def test_cuda_gives_the_same_images_as_the_cpu():
    x = images(16)
    for name in C.CORRUPTIONS:
        y = corrupt(x.cuda(), name, 3)
        assert y.device.type == "cuda"
        assert (y.cpu().int() - corrupt(x, name, 3).int()).abs().max() <= 1


# Prints one digest of every corruption x severity of `images(16)`, as a trial process would
# make them (its own interpreter, torch thread count and RNG state).
DIGEST_SCRIPT = """
import hashlib, sys, torch
sys.path.insert(0, {root!r})
from tests.core.test_corruptions import images
from core import columns as C
from core.corruptions import corrupt
torch.set_num_threads({threads})
torch.manual_seed({noise})  # the global RNG must not matter: corruptions use their own
h = hashlib.sha256()
for name in C.CORRUPTIONS:
    for s in C.SEVERITIES:
        h.update(corrupt(images(16), name, s, seed=0).numpy().tobytes())
print(h.hexdigest())
"""


def test_every_process_makes_the_same_corrupted_images():
    """Every trial of a study runs in its own process (a Ray worker, with its own thread count):
    all of them must score the same corrupted images, bit for bit."""
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    digests = {
        subprocess.run(
            [sys.executable, "-c", DIGEST_SCRIPT.format(root=root, threads=t, noise=n)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout.strip()
        for t, n in ((1, 0), (2, 12345))
    }
    assert len(digests) == 1 and len(digests.pop()) == 64


def _published_plasma_fractal(uniform, mapsize=32, wibbledecay=3):
    """make_cifar_c.py's plasma_fractal, as published, with np.random.uniform replaced by
    `uniform(low, high, shape)` (so that it can be fed the generator's draws)."""
    assert mapsize & (mapsize - 1) == 0
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100

    def wibbledmean(array):
        return array / 4 + wibble * uniform(-wibble, wibble, array.shape)

    def fillsquares():
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2 : mapsize : stepsize, stepsize // 2 : mapsize : stepsize] = (
            wibbledmean(squareaccum)
        )

    def filldiamonds():
        mapsize = maparray.shape[0]
        drgrid = maparray[stepsize // 2 : mapsize : stepsize, stepsize // 2 : mapsize : stepsize]
        ulgrid = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        ldrsum = drgrid + np.roll(drgrid, 1, axis=0)
        lulsum = ulgrid + np.roll(ulgrid, -1, axis=1)
        ltsum = ldrsum + lulsum
        maparray[0:mapsize:stepsize, stepsize // 2 : mapsize : stepsize] = wibbledmean(ltsum)
        tdrsum = drgrid + np.roll(drgrid, 1, axis=1)
        tulsum = ulgrid + np.roll(ulgrid, -1, axis=0)
        ttsum = tdrsum + tulsum
        maparray[stepsize // 2 : mapsize : stepsize, 0:mapsize:stepsize] = wibbledmean(ttsum)

    while stepsize >= 2:
        fillsquares()
        filldiamonds()
        stepsize //= 2
        wibble /= wibbledecay

    maparray -= maparray.min()
    return maparray / maparray.max()


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_fog_is_the_published_plasma_fractal_on_the_same_draws(severity):
    from core.corruptions import plasma_fractal

    c0, decay = PARAMS["fog"][severity - 1]
    ours = plasma_fractal(1, corruption_generator(0, "fog", severity), decay)[0]
    g = corruption_generator(0, "fog", severity)

    def uniform(low, high, shape):  # the same draws, in the published order
        u = torch.rand(shape, generator=g, dtype=torch.float64).numpy()
        return low + (high - low) * u

    theirs = _published_plasma_fractal(uniform, wibbledecay=decay)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-12)
    # and the image: x + c0 * plasma, scaled by max / (max + c0), truncated to uint8
    x = images(1)
    unit = x[0].permute(1, 2, 0).numpy() / 255.0
    top = unit.max()
    expected = np.uint8(np.clip((unit + c0 * theirs[..., None]) * top / (top + c0), 0, 1) * 255)
    got = corrupt(x, "fog", severity).permute(0, 2, 3, 1)[0].numpy()
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1  # float64 rounding
    assert (got == expected).mean() > 0.99


def test_fog_on_a_gray_image_spans_its_published_range():
    """On a constant image v the fog is v + c0 p scaled by v / (v + c0): from v^2 / (v + c0)
    where the fractal is 0 to v where it is 1, wider with severity."""
    v = 128 / 255
    lows = []
    for s in C.SEVERITIES:
        c0, _ = PARAMS["fog"][s - 1]
        y = corrupt(gray(4), "fog", s)
        assert y.max().item() in (127, 128)
        assert y.min().item() == math.floor(v * v / (v + c0) * 255)
        lows.append(y.min().item())
    assert lows == sorted(lows, reverse=True)
    assert PARAMS["fog"] == ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))
