"""``fid --images DIR --reference DIR_OR_NPZ``: FID between folders, or a folder and saved
statistics, through a random (Kaiming re-initialised) Inception; and its bad inputs."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from vq.train import eval_cli
from vq.train.fid_command import (
    FOLDER_PREPROCESSING,
    _dataset_of,
    build_fid_parser,
    folder_rows,
    image_files,
    main,
    run_folders,
)
from vq.train.metrics import FIDStatistics, InceptionFeatures, frechet_distance
from vq.train.metrics.inception import FEATURE_EXTRACTOR, FEATURES, LOGITS

N_A, N_B = 10, 5  # A: enough for the Inception Score's 10 splits
LINE = re.compile(r"^FID (-?\d+\.\d{4})( \| IS \d+\.\d{4} \+- \d+\.\d{4})? \| .*\n$")


def _args(*argv: object) -> list[str]:
    return [str(a) for a in argv]


def _write_crops(folder: Path, photo: np.ndarray, count: int, seed: int) -> None:
    """``count`` crops of ``photo``: every third one 40x24 (the others 32x32), one JPEG,
    the last two in a sub-folder, plus files that are not images or are hidden."""
    rng = np.random.default_rng(seed)
    (folder / "sub").mkdir(parents=True)
    for i in range(count):
        top, left = rng.integers(0, photo.shape[0] - 96), rng.integers(0, photo.shape[1] - 96)
        crop = Image.fromarray(photo[top : top + 96, left : left + 96])
        size = (40, 24) if i % 3 == 0 else (32, 32)  # (W, H)
        where = folder / "sub" if i >= count - 2 else folder
        crop.resize(size, Image.BICUBIC).save(where / f"{i:02d}.{'jpg' if i == 4 else 'png'}")
    (folder / "notes.txt").write_text("not an image")
    (folder / "._00.png").write_bytes(b"macOS resource fork, not a PNG")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("folders")
    _write_crops(root / "a", data.astronaut(), N_A, seed=0)
    _write_crops(root / "b", data.chelsea(), N_B, seed=1)
    return root / "a", root / "b"


def _measure(argv: list[str]) -> tuple[dict[str, float], str]:
    """run_folders' numbers and the line it prints."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        results = run_folders(build_fid_parser().parse_args(argv))
    return results, out.getvalue()


@pytest.fixture(scope="module")
def runs(folders, random_inception, tmp_path_factory):
    """The folder runs the tests compare, each done once (Inception on CPU is the cost);
    batches of 4 over two image sizes."""
    a, b = folders
    saved = tmp_path_factory.mktemp("stats") / "a.npz"
    common = _args("--inception", random_inception, "--workers", 0, "--batch-size", 4)
    argvs = {
        "a_vs_b": _args("--images", a, "--reference", b, "--save-stats", saved),
        "b_vs_a": _args("--images", b, "--reference", a),
        "b_vs_a_npz": _args("--images", b, "--reference", saved),
        "a_vs_a": _args("--images", a, "--reference", a),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        found = {name: _measure([*argv, *common]) for name, argv in argvs.items()}
    finally:
        torch.set_num_threads(threads)
    return found, saved


@pytest.fixture(scope="module")
def direct(folders, random_inception) -> dict[str, dict[str, torch.Tensor]]:
    """Inception rows of each folder computed here, one image at a time, in path order."""
    network = InceptionFeatures(random_inception)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = {}
    try:
        for folder in folders:
            files = sorted(p for p in folder.rglob("[0-9]*.*") if p.suffix in (".png", ".jpg"))
            found = [
                network(
                    torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1)[None]
                )
                for f in files
            ]
            rows[folder.name] = {k: torch.cat([r[k] for r in found]) for k in (FEATURES, LOGITS)}
    finally:
        torch.set_num_threads(threads)
    return rows


# ------------------------------------------------------------------ the numbers -------


@pytest.mark.slow
def test_folder_fid_equals_frechet_distance_of_direct_statistics(runs, direct):
    """One 2048-d sqrtm (about 20 s on two cores): the reason this test is slow."""
    results, line = runs[0]["a_vs_b"]
    a = FIDStatistics.from_features(direct["a"][FEATURES])
    b = FIDStatistics.from_features(direct["b"][FEATURES])
    expected = frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    assert expected > 1.0  # random weights still separate two photos
    assert results["fid"] == pytest.approx(expected, rel=1e-5)
    match = LINE.match(line)
    assert match and float(match.group(1)) == pytest.approx(expected, rel=1e-5, abs=1e-4)
    assert match.group(2)  # 10 images: the Inception Score of --images is printed too
    assert f"| {N_A} images of " in line and f"vs {N_B} of " in line


@pytest.mark.slow
def test_saved_statistics_are_those_of_the_folder(runs, direct):
    _, saved = runs
    stats = FIDStatistics.load(saved)
    assert stats.metadata["image_count"] == N_A
    assert stats.metadata["preprocessing"] == FOLDER_PREPROCESSING
    assert stats.metadata["feature_extractor"] == FEATURE_EXTRACTOR
    expected = FIDStatistics.from_features(direct["a"][FEATURES])
    np.testing.assert_allclose(stats.mu, expected.mu, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats.sigma, expected.sigma, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_a_folder_against_its_saved_statistics_equals_against_the_folder(runs):
    found, _ = runs
    by_folder, by_npz = found["b_vs_a"][0]["fid"], found["b_vs_a_npz"][0]["fid"]
    assert by_npz == pytest.approx(by_folder, rel=1e-9)
    # Fréchet distance is symmetric: B against A's statistics is A against B's
    assert by_folder == pytest.approx(found["a_vs_b"][0]["fid"], rel=1e-6)
    assert "isc_mean" not in found["b_vs_a"][0]  # 5 images: fewer than the 10 IS splits
    assert LINE.match(found["b_vs_a_npz"][1]) and "a.npz" in found["b_vs_a_npz"][1]


@pytest.mark.slow
def test_a_folder_against_itself_is_zero(runs):
    results, line = runs[0]["a_vs_a"]
    assert abs(results["fid"]) < 1e-3
    assert line.startswith("FID 0.0000 | IS ")


# ------------------------------------------------------------------ batching ----------


class _FakeInception:
    """Rows that say which image they come from: ``features[:, 0]`` is the image's value."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, ...]] = []

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.batches.append(tuple(images.shape))  # (B, 3, H, W)
        value = images.float().mean(dim=(1, 2, 3))  # (B,)
        return {FEATURES: value[:, None].repeat(1, 3), LOGITS: value[:, None]}


def test_images_of_mixed_sizes_are_batched_by_size_and_come_back_in_file_order(tmp_path):
    sizes = [(8, 8), (6, 10), (12, 5), (7, 7)]  # (W, H)
    for i in range(13):
        Image.new("RGB", sizes[i % 4], (i, i, i)).save(tmp_path / f"{i:02d}.png")
    files = image_files(tmp_path, "--images")
    fake = _FakeInception()
    rows = folder_rows(files, fake, torch.device("cpu"), 3, 0, "test")  # type: ignore[arg-type]
    assert rows[FEATURES][:, 0].tolist() == [float(i) for i in range(13)]
    assert sum(b[0] for b in fake.batches) == 13 and max(b[0] for b in fake.batches) <= 3


def test_image_files_are_recursive_sorted_and_skip_hidden_and_other_files(tmp_path):
    (tmp_path / "z" / ".cache").mkdir(parents=True)
    for name in ("b.PNG", "a.jpeg", "z/c.webp", "z/.cache/d.png", ".e.png", "f.txt"):
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in image_files(tmp_path, "--images")]
    assert found == ["a.jpeg", "b.PNG", "z/c.webp"]


# ------------------------------------------------------------------ bad inputs --------


def _bad_inputs(root: Path, a: Path, b: Path, weights: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (argv, a fragment of the error line)."""
    (root / "empty").mkdir()
    (root / "empty" / "readme.txt").write_text("no images here")
    corrupt = root / "corrupt"
    corrupt.mkdir()
    for f in sorted(a.glob("*.png"))[:3]:
        (corrupt / f.name).write_bytes(f.read_bytes())
    (corrupt / "00_truncated.png").write_bytes((a / "01.png").read_bytes()[:60])
    (root / "stats.txt").write_text("mu sigma")
    (root / "garbage.npz").write_bytes(b"not a zip archive")
    np.savez(root / "samples.npz", arr_0=np.zeros((2, 8, 8, 3), np.uint8))  # ADM's layout
    small = FIDStatistics.from_features(torch.randn(4, 6), feature_extractor=FEATURE_EXTRACTOR)
    small.save(root / "small.npz")  # 6-d, not 2048
    FIDStatistics.from_features(torch.randn(4, 2048)).save(root / "unlabelled.npz")
    ok = ["--inception", str(weights), "--workers", "0"]
    return {
        "missing folder": (_args("--images", root / "nope", "--reference", b, *ok), "nope"),
        "empty folder": (_args("--images", root / "empty", "--reference", b, *ok), "no image"),
        "empty reference": (_args("--images", a, "--reference", root / "empty", *ok), "no image"),
        "corrupt image": (
            _args("--images", corrupt, "--reference", b, *ok[:2], "--workers", 1),
            "00_truncated.png",
        ),
        "reference not npz": (_args("--images", a, "--reference", root / "stats.txt", *ok), "txt"),
        "reference garbage": (
            _args("--images", a, "--reference", root / "garbage.npz", *ok),
            "npz",
        ),
        "reference samples": (
            _args("--images", a, "--reference", root / "samples.npz", *ok),
            "holds arr_0",
        ),
        "reference 6-d": (_args("--images", a, "--reference", root / "small.npz", *ok), "(6,)"),
        "reference of another network": (
            _args("--images", a, "--reference", root / "unlabelled.npz", *ok),
            "feature_extractor=None",
        ),
        "reference missing": (_args("--images", a, "--reference", root / "gone", *ok), "gone"),
        "inception missing": (
            _args("--images", a, "--reference", b, "--inception", root / "none.pth"),
            "none.pth",
        ),
        "no reference": (_args("--images", a, *ok), "--reference"),
        "--out with --images": (_args("--images", a, "--reference", b, "--out", "x.npz"), "--out"),
        "--reference with CONFIG": (_args("configs/x.py", "--reference", b), "--reference"),
        "--save-stats not npz": (
            _args("--images", a, "--reference", b, "--save-stats", root / "s.txt"),
            ".npz",
        ),
    }


@pytest.fixture(scope="module")
def bad_inputs(folders, random_inception, tmp_path_factory):
    return _bad_inputs(tmp_path_factory.mktemp("bad"), *folders, random_inception)


BAD_NAMES = [
    "missing folder",
    "empty folder",
    "empty reference",
    "corrupt image",
    "reference not npz",
    "reference garbage",
    "reference samples",
    "reference 6-d",
    "reference of another network",
    "reference missing",
    "inception missing",
    "no reference",
    "--out with --images",
    "--reference with CONFIG",
    "--save-stats not npz",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_input_is_one_error_line_and_exit_status_2(name, bad_inputs, capsys, one_thread):
    argv, fragment = bad_inputs[name]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert fragment in lines[0]


def test_config_and_images_exclude_each_other(folders, capsys):
    a, _ = folders
    for argv in (["configs/x.py", "--images", str(a)], []):
        with pytest.raises(SystemExit) as exit_info:
            build_fid_parser().parse_args(argv)
        assert exit_info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_eval_cli_still_dispatches_fid(folders, capsys):
    a, b = folders
    argv = _args("--images", a, "--reference", b, "--inception", "nowhere.pth")
    assert eval_cli.command_main("fid", argv) == 2
    assert "nowhere.pth" in capsys.readouterr().err
    assert _dataset_of(build_fid_parser().parse_args(argv)) is None
