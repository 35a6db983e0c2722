"""The ingest stage and the stage cache, on photos the tests write and on real fern photos."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nerfpipe.cache import load_manifest
from nerfpipe.cli import app
from nerfpipe.errors import NerfpipeError
from nerfpipe.progress import RecordingReporter
from nerfpipe.stages import ingest
from nerfpipe.photos import crop_box
from nerfpipe.stages.ingest import IngestParams

RUNNER = CliRunner()
ORIENTATION = 0x0112


def _pattern(w: int, h: int, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 texture with a red block in the top-left corner (to see rotations)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 200, size=(h, w, 3), dtype=np.uint8)
    img[: h // 4, : w // 4] = (255, 0, 0)
    return img


def _jpeg(path: Path, w=256, h=192, seed=0, orientation: int | None = None, make="TestCam") -> Path:
    img = Image.fromarray(_pattern(w, h, seed))
    exif = Image.Exif()
    exif[0x010F] = make
    exif[0x0110] = "Model 1"
    if orientation is not None:
        exif[ORIENTATION] = orientation
    img.save(path, quality=92, exif=exif)
    return path


def _photos(folder: Path, n: int, **kw) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [_jpeg(folder / f"IMG_{i:03d}.jpg", seed=i, **kw) for i in range(n)]


def _open(path: Path) -> Image.Image:
    """A loaded copy of an image, with its file closed."""
    with Image.open(path) as img:
        img.load()
        return img.copy()


def _orientation(path: Path) -> int:
    with Image.open(path) as img:
        return img.getexif().get(ORIENTATION, 1)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _run(photos: Path, scene: Path, factors=(2, 4), force=False) -> tuple:
    rep = RecordingReporter()
    res = ingest.run(IngestParams(photos=photos, scene=scene, factors=factors, force=force), rep)
    return res, rep


def test_crop_box_gives_fern_sizes():
    assert crop_box(4032, 3024, 4)[2:] == (4032, 3008)  # -> 1008x752
    assert crop_box(4032, 3024, 8)[2:] == (3968, 2944)  # -> 496x368
    x0, y0, w, h = crop_box(4032, 3024, 8)
    assert (x0, y0) == (32, 40)


def test_ingest_writes_every_folder_and_caches(tmp_path):
    photos = tmp_path / "photos"
    _photos(photos, 4)
    before = _digests(photos)
    res, rep = _run(photos, tmp_path)
    assert res.ran
    assert res.result["images"] == [f"IMG_{i:03d}.jpg" for i in range(4)]
    assert res.result["sizes"] == {"images": [256, 192], "images_2": [128, 96], "images_4": [64, 48]}
    for folder, (w, h) in res.result["sizes"].items():
        files = sorted((tmp_path / folder).iterdir())
        assert len(files) == 4
        assert _open(files[0]).size == (w, h)
        assert _open(files[0]).mode == "RGB"
    # An upright RGB JPEG is copied byte for byte (EXIF kept for SfM's focal prior).
    assert (tmp_path / "images" / "IMG_000.jpg").read_bytes() == (photos / "IMG_000.jpg").read_bytes()
    # Area filter: a 2x downsample is the mean of 2x2 blocks.
    full = np.asarray(_open(photos / "IMG_001.jpg").convert("RGB"), dtype=np.float64)
    half = np.asarray(_open(tmp_path / "images_2" / "IMG_001.png"), dtype=np.float64)
    x0, y0, w, h = crop_box(256, 192, 2)
    block = full[y0 : y0 + h, x0 : x0 + w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    assert np.abs(block - half).max() <= 1.0

    # Second run: up to date, no file touched.
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    res2, _ = _run(photos, tmp_path)
    assert not res2.ran
    assert stamps == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert _digests(photos) == before


def test_added_removed_changed_photo_and_factors_bring_outputs_up_to_date(tmp_path):
    photos = tmp_path / "photos"
    _photos(photos, 4)
    _run(photos, tmp_path)
    _jpeg(photos / "IMG_100.jpg", seed=100)
    (photos / "IMG_000.jpg").unlink()
    _jpeg(photos / "IMG_001.jpg", seed=55)  # changed content, same name
    res, _ = _run(photos, tmp_path)
    assert res.ran
    assert res.result["images"] == ["IMG_001.jpg", "IMG_002.jpg", "IMG_003.jpg", "IMG_100.jpg"]
    for folder in ("images", "images_2", "images_4"):
        assert sorted(p.stem for p in (tmp_path / folder).iterdir()) == ["IMG_001", "IMG_002", "IMG_003", "IMG_100"]
    assert (tmp_path / "images" / "IMG_001.jpg").read_bytes() == (photos / "IMG_001.jpg").read_bytes()
    # Other factors: images_2 is stale and goes away, images_8 appears.
    res, _ = _run(photos, tmp_path, factors=(4, 8))
    assert res.ran and not (tmp_path / "images_2").exists()
    assert _open(tmp_path / "images_8" / "IMG_100.png").size == (32, 16)
    assert not _run(photos, tmp_path, factors=(8, 4))[0].ran  # order does not matter
    assert _run(photos, tmp_path, factors=(4, 8), force=True)[0].ran


def test_output_folder_edited_by_hand_is_redone(tmp_path):
    photos = tmp_path / "photos"
    _photos(photos, 3)
    _run(photos, tmp_path)
    (tmp_path / "images_4" / "IMG_001.png").unlink()
    res, _ = _run(photos, tmp_path)
    assert res.ran and (tmp_path / "images_4" / "IMG_001.png").exists()


def test_interrupted_run_leaves_the_finished_state_and_the_next_run_completes(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    _photos(photos, 4)
    first, _ = _run(photos, tmp_path)
    _jpeg(photos / "IMG_100.jpg", seed=100)
    real = ingest._process_one
    calls = []

    def interrupted(path, *a, **kw):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(path, *a, **kw)

    monkeypatch.setattr(ingest, "_process_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(photos, tmp_path)
    # The old outputs and manifest stand untouched; no temporary folder is left.
    assert load_manifest(tmp_path, "ingest")["fingerprint"] == first.manifest["fingerprint"]
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == first.result["images"]
    assert list((tmp_path / ".nerfpipe" / "tmp").iterdir()) == []
    monkeypatch.setattr(ingest, "_process_one", real)
    res, _ = _run(photos, tmp_path)
    assert res.ran and "IMG_100.jpg" in res.result["images"]


def test_exif_orientation_makes_portrait_upright_in_every_folder(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):  # stored landscape 256x192, orientation 6: shown rotated 90 degrees clockwise
        _jpeg(photos / f"p{i}.jpg", seed=i, orientation=6)
    res, _ = _run(photos, tmp_path)
    assert res.result["sizes"] == {"images": [192, 256], "images_2": [96, 128], "images_4": [48, 64]}
    for folder in ("images", "images_4"):
        name = "p0.jpg" if folder == "images" else "p0.png"
        img = _open(tmp_path / folder / name)
        assert _orientation(tmp_path / folder / name) == 1
        arr = np.asarray(img.convert("RGB")).astype(int)
        h, w = arr.shape[:2]
        # The stored top-left red block is at the top-right once upright.
        top_right = arr[: h // 8, -w // 8 :].mean(axis=(0, 1))
        top_left = arr[: h // 8, : w // 8].mean(axis=(0, 1))
        assert top_right[0] > 200 and top_right[1] < 60, (folder, top_right)
        assert top_left[0] < 200, folder


def test_any_pixel_format_becomes_rgb8(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    grey = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (192, 1))
    Image.fromarray(grey, mode="L").save(photos / "a_grey.png")
    deep = (np.tile(np.linspace(0, 65535, 256), (192, 1))).astype(np.uint16)
    Image.fromarray(deep).save(photos / "b_16bit.png")
    rgba = np.zeros((192, 256, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, 128:, 3] = 255  # left half transparent -> white; right half opaque red
    Image.fromarray(rgba, mode="RGBA").save(photos / "c_rgba.png")
    Image.fromarray(_pattern(256, 192)).convert("CMYK").save(photos / "d_cmyk.jpg", quality=95)
    res, rep = _run(photos, tmp_path)
    assert res.result["images"] == ["a_grey.png", "b_16bit.png", "c_rgba.png", "d_cmyk.jpg"]
    for name in res.result["stems"]:
        img = _open(tmp_path / "images_2" / f"{name}.png")
        assert img.mode == "RGB" and img.size == (128, 96)
    deep8 = np.asarray(_open(tmp_path / "images" / "b_16bit.png"))
    assert deep8.dtype == np.uint8 and deep8[0, -1, 0] == 255 and deep8[0, 0, 0] == 0
    comp = np.asarray(_open(tmp_path / "images" / "c_rgba.png")).astype(int)
    assert (comp[0, 0] == (255, 255, 255)).all() and (comp[0, -1] == (255, 0, 0)).all()
    cmyk = np.asarray(_open(tmp_path / "images" / "d_cmyk.jpg"))
    assert cmyk.shape == (192, 256, 3)
    assert np.abs(cmyk[:40, :60].astype(int).mean(axis=(0, 1)) - (255, 0, 0)).max() < 40


def test_bad_files_among_good_photos_are_skipped_with_a_warning(tmp_path):
    photos = tmp_path / "my photos"
    good = _photos(photos, 4)
    data = good[0].read_bytes()
    (photos / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (photos / "garbage.jpg").write_bytes(b"this is not a jpeg" * 100)
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.txt").write_text("shot on a cloudy day")
    (photos / "IMG_000 copy.jpg").write_bytes(data)  # duplicate bytes
    (photos / "IMG_9999.HEIC").write_bytes(b"\x00" * 100)  # named HEIC, not one
    (photos / "IMG_9998.DNG").write_bytes(b"\x00" * 100)
    _jpeg(photos / "odd_size.jpg", w=320, h=240, seed=9)
    _jpeg(photos / "other_phone.jpg", seed=10, make="OtherCam")
    before = _digests(photos)
    res, rep = _run(photos, tmp_path)
    assert res.result["images"] == [p.name for p in good]
    warned = "\n".join(rep.warnings)
    for name in ("truncated.jpg", "garbage.jpg", "empty.jpg", "notes.txt", "IMG_000 copy.jpg", "IMG_9999.HEIC",
                 "IMG_9998.DNG", "odd_size.jpg", "other_phone.jpg"):
        assert name in warned, name
    assert "exact copy of IMG_000.jpg" in warned
    assert "320x240" in warned and "OtherCam" in warned
    assert "0 bytes" in warned and "export them as JPEG" in warned
    assert all("\n" not in w for w in rep.warnings)
    assert _digests(photos) == before


def test_names_with_spaces_and_non_ascii_letters_keep_their_stems(tmp_path):
    photos = tmp_path / "фото été"
    photos.mkdir()
    names = ["café 1.jpg", "Straße 2.jpg", "写真 3.jpg"]
    for i, n in enumerate(names):
        _jpeg(photos / n, seed=i)
    res, _ = _run(photos, tmp_path / "scène")
    assert res.result["images"] == sorted(names)
    assert sorted(p.name for p in (tmp_path / "scène" / "images_4").iterdir()) == sorted(
        n.replace(".jpg", ".png") for n in names
    )


def test_same_stem_two_formats_do_not_collide(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    _jpeg(photos / "a.jpg", seed=1)
    Image.fromarray(_pattern(256, 192, 2)).save(photos / "a.png")
    _jpeg(photos / "b.jpg", seed=3)
    res, _ = _run(photos, tmp_path)
    assert res.result["images"] == ["a_jpg.jpg", "a_png.png", "b.jpg"]


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "is empty"),
        (lambda p: (p.mkdir(), (p / "readme.md").write_text("x")), "holds no photos"),
        (lambda p: _photos(p, 2), "Only 2 usable photos"),
        (lambda p: (_photos(p, 2), (p / "bad.jpg").write_bytes(b"xx")), "Only 2 usable photos"),
    ],
    ids=["missing", "empty", "no-images", "two-photos", "two-good-one-corrupt"],
)
def test_stops_with_one_sentence(tmp_path, setup, expected):
    photos = tmp_path / "photos"
    setup(photos)
    with pytest.raises(NerfpipeError) as err:
        _run(photos, tmp_path / "scene")
    assert expected in err.value.sentence
    assert "\n" not in err.value.sentence
    assert not (tmp_path / "scene" / "images").exists()


def test_cli_error_is_one_line_and_no_traceback(tmp_path):
    result = RUNNER.invoke(app, ["ingest", str(tmp_path / "nowhere"), "--scene", str(tmp_path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "does not exist" in result.output


def test_failed_rerun_keeps_the_finished_outputs(tmp_path):
    photos = tmp_path / "photos"
    paths = _photos(photos, 3)
    first, _ = _run(photos, tmp_path)
    paths[0].write_bytes(b"broken")  # now only 2 usable photos
    with pytest.raises(NerfpipeError):
        _run(photos, tmp_path)
    assert load_manifest(tmp_path, "ingest")["fingerprint"] == first.manifest["fingerprint"]
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == first.result["images"]


def test_photos_inside_an_output_folder_are_refused(tmp_path):
    _photos(tmp_path / "images", 3)
    before = _digests(tmp_path / "images")
    with pytest.raises(NerfpipeError, match="a folder that ingest writes"):
        _run(tmp_path / "images", tmp_path)
    assert _digests(tmp_path / "images") == before


def test_photos_loose_in_the_scene_folder(tmp_path):
    _photos(tmp_path, 3)
    res, _ = _run(tmp_path, tmp_path)
    assert len(res.result["images"]) == 3
    assert not _run(tmp_path, tmp_path)[0].ran  # its own outputs do not count as new photos


def test_unwritable_scene_folder(tmp_path):
    photos = tmp_path / "photos"
    _photos(photos, 3)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NerfpipeError, match="Cannot create the scene folder"):
        _run(photos, blocker / "scene")
    if os.geteuid() == 0:
        pytest.skip("root can write into a read-only folder; the read-only case is checked as a normal user")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(NerfpipeError, match="Cannot write into the scene folder"):
            _run(photos, ro)
    finally:
        ro.chmod(0o755)


def test_real_fern_photos(fern_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in sorted(os.listdir(fern_dir / "images"))[:3]:
        shutil.copy(fern_dir / "images" / name, photos / name)
    res, rep = _run(photos, tmp_path, factors=(4, 8))
    assert res.result["sizes"] == {"images": [4032, 3024], "images_4": [1008, 752], "images_8": [496, 368]}
    assert rep.warnings == []
    assert rep.tasks[0].unit == "images" and rep.tasks[0].done == 3


def test_cli_factors_comma_list_and_summary(tmp_path):
    _photos(tmp_path / "photos", 3)
    result = RUNNER.invoke(app, ["ingest", str(tmp_path / "photos"), "--scene", str(tmp_path), "--factors", "2,4"])
    assert result.exit_code == 0, result.output
    assert "3 photos used, 0 skipped" in result.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("images")) == ["images", "images_2", "images_4"]
    again = RUNNER.invoke(app, ["ingest", str(tmp_path / "photos"), "--scene", str(tmp_path), "-f", "2", "-f", "4"])
    assert "up to date" in again.output
    bad = RUNNER.invoke(app, ["ingest", str(tmp_path / "photos"), "--scene", str(tmp_path), "--factors", "four"])
    assert bad.exit_code == 1 and "whole numbers" in bad.output


def test_heic_photos_from_an_iphone_are_read_upright_with_their_focal_length(tmp_path):
    """HEIC (the iPhone's default) through pillow-heif: upright as EXIF orientation says, and the EXIF focal
    length kept in images/ for SfM (a HEIC is re-encoded as JPEG with its EXIF)."""
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is a dependency of nerfpipe")
    from PIL import ExifTags

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        img = Image.fromarray(_pattern(256, 192, seed=i))  # red block top-left as shot (landscape sensor)
        exif = Image.Exif()
        exif[0x010F], exif[0x0110], exif[ORIENTATION] = "Apple", "iPhone 13", 6  # held upright: rotate 90 cw
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.FocalLength] = 5.1
        img.save(photos / f"IMG_{i:04d}.HEIC", format="HEIF", exif=exif.tobytes(), quality=95)
    assert pillow_heif.is_supported(photos / "IMG_0000.HEIC")
    res, rep = _run(photos, tmp_path)
    assert res.result["images"] == ["IMG_0000.jpg", "IMG_0001.jpg", "IMG_0002.jpg"] and not rep.warnings
    out = _open(tmp_path / "images" / "IMG_0000.jpg")
    assert out.size == (192, 256)  # portrait, as the phone was held
    rgb = np.asarray(out, dtype=np.int16)
    assert (rgb[:48, -40:, 0] > 200).mean() > 0.9 and (rgb[:48, -40:, 1] < 60).mean() > 0.9  # red block top-right
    with Image.open(tmp_path / "images" / "IMG_0000.jpg") as img:
        exif = img.getexif()
        assert exif.get(ORIENTATION, 1) == 1 and exif.get(0x0110) == "iPhone 13"
        assert float(exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.FocalLength]) == pytest.approx(5.1)
