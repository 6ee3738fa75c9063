"""The ``deepfaketimit`` adapter on a small DeepfakeTIMIT tree with converted VidTIMIT reals."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path

import pytest

import dflab.datasets.timit  # noqa: F401  (registers the adapter)
from dflab.config import ConfigError
from dflab.datasets import scan_dataset
from dflab.datasets.check import check_dataset
from dflab.datasets.sources import DatasetLayoutError

# Six VidTIMIT subject pairs, two recordings each (DeepfakeTIMIT has 16 pairs, ten each).
PAIRS = [("fadg0", "fram1"), ("faks0", "fcft0"), ("fcmh0", "fcmr0"), ("mabw0", "mbdg0"),
         ("mccs0", "mcem0"), ("mdab0", "mdbb0")]
SENTENCES = ["sa1", "si1279"]
OPTIONS = {"vidtimit_root": "../VidTIMIT"}


def build_tree(tmp_path: Path, place_video) -> Path:
    """``DeepfakeTIMIT/`` (root) next to ``VidTIMIT/<subject>/<sentence>.mp4`` (converted)."""
    root = tmp_path / "DeepfakeTIMIT"
    for a, b in PAIRS:
        for subject, face in ((a, b), (b, a)):
            for sentence in SENTENCES:
                for quality in ("lower_quality", "higher_quality"):
                    place_video(root / quality / subject / f"{sentence}-video-{face}.avi")
                    (root / quality / subject / f"{sentence}.wav").write_bytes(b"RIFF")  # audio: not read
                place_video(tmp_path / "VidTIMIT" / subject / f"{sentence}.mp4")
            place_video(tmp_path / "VidTIMIT" / subject / "head.mp4")  # no fake made from it
    return root


def subject_splits(items) -> dict[str, set[str]]:
    """Subject -> splits of every video showing it (folder subject and swapped-in face)."""
    out: dict[str, set[str]] = {}
    for it in items:
        parts = it.key.split("/")
        shown = {parts[1]} if it.label == 0 else {parts[1], parts[2].split("-video-")[1]}
        for subject in shown:
            out.setdefault(subject, set()).add(it.split)
    return out


def test_layout_counts_labels_sources_and_pair_split(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    items = scan_dataset("deepfaketimit", root, OPTIONS)
    per_quality = len(PAIRS) * 2 * len(SENTENCES)
    assert Counter((it.label, it.method) for it in items) == Counter(
        {(0, ""): per_quality, (1, "DeepfakeTIMIT-LQ"): per_quality, (1, "DeepfakeTIMIT-HQ"): per_quality})
    # 6 pairs of 12 videos: 20 % test and 10 % validation round to one pair each
    assert Counter(it.split for it in items) == Counter({"train": 48, "val": 12, "test": 12})
    by_key = {it.key: it for it in items}
    fake = by_key["higher_quality/fadg0/sa1-video-fram1"]
    assert fake.path == str(root / "higher_quality/fadg0/sa1-video-fram1.avi")
    assert (fake.label, fake.group, fake.sources) == (1, "fadg0+fram1", ("VidTIMIT/fadg0/sa1",))
    real = by_key["VidTIMIT/fadg0/sa1"]
    assert real.path == str(tmp_path / "VidTIMIT/fadg0/sa1.mp4")
    assert (real.label, real.method, real.group, real.split) == (0, "", "fadg0+fram1", fake.split)
    assert by_key["lower_quality/fram1/si1279-video-fadg0"].sources == ("VidTIMIT/fram1/si1279",)
    assert "VidTIMIT/fadg0/head" not in by_key and not any(it.path.endswith(".wav") for it in items)
    splits = subject_splits(items)
    assert len(splits) == 12 and all(len(s) == 1 for s in splits.values())  # no subject in two splits
    assert {it.dataset for it in items} == {"deepfaketimit"}
    report = check_dataset(items, "deepfaketimit")
    assert report.ok, report.message()


def test_quality_seed_and_fractions(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    hq = scan_dataset("deepfaketimit", root, {**OPTIONS, "quality": "higher"})
    assert {it.method for it in hq if it.label} == {"DeepfakeTIMIT-HQ"}
    assert Counter(it.label for it in hq) == Counter({0: 24, 1: 24})
    tests = {frozenset(it.group for it in scan_dataset("deepfaketimit", root, {**OPTIONS, "seed": s})
                       if it.split == "test") for s in range(8)}
    assert len(tests) > 1 and all(len(t) == 1 for t in tests)
    wide = scan_dataset("deepfaketimit", root, {**OPTIONS, "val_fraction": 0.3, "test_fraction": 0.3})
    assert Counter(it.split for it in wide) == Counter({"train": 24, "val": 24, "test": 24})
    assert all(len(s) == 1 for s in subject_splits(wide).values())
    assert check_dataset(wide).ok


def test_without_vidtimit_only_fakes(tmp_path, place_video, caplog):
    root = build_tree(tmp_path, place_video)
    with caplog.at_level(logging.WARNING, logger="dflab.datasets.timit"):
        items = scan_dataset("deepfaketimit", root, {})
    assert {it.label for it in items} == {1} and len(items) == 48
    assert all(it.sources == () for it in items)
    assert "vidtimit_root is not set" in caplog.text


@pytest.mark.parametrize(("options", "expected"), [
    ({"quality": ["medium"]}, r"quality: 'medium' is not one of lower, higher"),
    ({"quality": []}, r"quality: name at least one of lower, higher"),
    ({"val_fraction": 0.5, "test_fraction": 0.6}, r"val_fraction \+ test_fraction: 0\.5 \+ 0\.6 is more than 1"),
    ({"vidtimit": "x"}, r"data\.options\.vidtimit.*did you mean 'vidtimit_root'"),
])
def test_invalid_options_are_refused_by_name(tmp_path, options, expected):
    with pytest.raises(ConfigError, match=expected):
        scan_dataset("deepfaketimit", tmp_path, options)


def test_missing_folders_frames_and_bad_names_are_named(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    with pytest.raises(DatasetLayoutError, match=r"/elsewhere/: VidTIMIT folder \(vidtimit_root\) does not exist"):
        scan_dataset("deepfaketimit", root, {"vidtimit_root": str(tmp_path / "elsewhere")})
    frames = tmp_path / "VidTIMIT-frames"
    (frames / "fadg0/video/sa1").mkdir(parents=True)
    (frames / "fadg0/video/sa1/001").write_bytes(b"\xff\xd8")
    with pytest.raises(DatasetLayoutError, match=r"holds no <subject>/<sentence> video.*JPEG frame folders"):
        scan_dataset("deepfaketimit", root, {"vidtimit_root": str(frames)})
    place_video(root / "lower_quality/fadg0/sa1_fram1.avi")
    with pytest.raises(DatasetLayoutError, match=r"lower_quality/fadg0/sa1_fram1\.avi: not a DeepfakeTIMIT name"):
        scan_dataset("deepfaketimit", root, OPTIONS)
    (root / "lower_quality").rename(root / "LQ")
    with pytest.raises(DatasetLayoutError, match=r"DeepfakeTIMIT/lower_quality/: folder of DeepfakeTIMIT"):
        scan_dataset("deepfaketimit", root, OPTIONS)
    assert scan_dataset("deepfaketimit", root, {**OPTIONS, "quality": ["higher"]})


def test_empty_and_missing_videos_are_reported(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    empty = root / "lower_quality/mccs0/si1279-video-mcem0.avi"
    empty.write_bytes(b"")
    gone = tmp_path / "VidTIMIT/faks0/sa1.mp4"
    gone.unlink()
    items = scan_dataset("deepfaketimit", root, OPTIONS)
    report = check_dataset(items, "deepfaketimit")
    assert {(p.kind, p.path) for p in report.problems} == {("empty", str(empty)), ("missing", str(gone))}
    assert "faks0/sa1.mp4: listed but not on disk" in report.message()


def test_fake_moved_away_from_its_source_is_a_leak(tmp_path, place_video):
    items = scan_dataset("deepfaketimit", build_tree(tmp_path, place_video), OPTIONS)
    index, fake = next((i, it) for i, it in enumerate(items) if it.key == "lower_quality/fram1/sa1-video-fadg0")
    moved = "test" if fake.split != "test" else "train"
    items[index] = dataclasses.replace(fake, split=moved)
    report = check_dataset(items, "deepfaketimit")
    problems = {(p.kind, p.path) for p in report.problems}
    assert ("source-leak", fake.path) in problems
    assert any(kind == "group-leak" for kind, _ in problems)
    assert "group 'fadg0+fram1' is in 2 splits" in report.message()
