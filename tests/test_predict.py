"""`dflab predict` end to end: a real trained MesoNet (checkpoint with its calibration), its ONNX
export registered in a real MLflow database, real H.264 videos, packaged face photos and broken
files."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from dflab.cli.main import main
from dflab.experiment import load_experiment
from dflab.export.export import export_run
from dflab.models.checkpoint import read_checkpoint
from dflab.predict.models import ModelLoadError, load_models
from dflab.predict.run import predict
from dflab.training.train import run_experiment
from dflab.video import probe, write_video
from dflab.video.faults import damage_bytes

pytestmark = pytest.mark.slow

PHOTOS = Path(__import__("insightface").__file__).parent / "data" / "images"


@pytest.fixture(scope="module")
def trained(small_manifest, face_cache, tmp_path_factory):
    """One trained run (1 epoch) with a test split, its export and the store it is logged to."""
    root = tmp_path_factory.mktemp("predict_run")
    overrides = [
        "data.source=manifest", f"data.root={small_manifest}", "data.options={}", "data.image_size=64",
        "data.batch_size=8", "data.train_clips_per_video=2", "data.eval_clips_per_video=3",
        "data.num_workers=0", "data.test_fraction=0.25", f"faces.cache_dir={face_cache}", "faces.num_frames=4",
        "faces.workers=0", "trainer.max_epochs=2", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
        f"logging.tracking_uri=sqlite:///{root}/mlflow.db", f"logging.artifact_location={root}/artifacts",
        f"logging.output_dir={root}/outputs", "logging.experiment=dflab-unit",
    ]
    cfg = load_experiment("experiments/mesonet4_demo.yaml", overrides)
    result = run_experiment(cfg, progress=False)
    uri = f"sqlite:///{root}/mlflow.db"
    export = export_run(result.run_id, uri, root / "export")
    return {"root": root, "uri": uri, "run": result, "cfg": cfg, "export": root / "export" / result.run_id,
            "registered": export.registered}


def _test_videos(trained) -> dict[str, float]:
    """Test videos and the fake probability evaluation logged for each."""
    client = MlflowClient(trained["uri"])
    folder = Path(client.download_artifacts(trained["run"].run_id, "predictions", str(trained["root"] / "dl")))
    rows = list(csv.DictReader((folder / "predictions_test.csv").read_text().splitlines()))
    root = Path(trained["cfg"].data.root).parent
    return {str(root / r["path"]) if not Path(r["path"]).is_absolute() else r["path"]: float(r["fake_probability"])
            for r in rows}


def test_training_stores_calibration_in_checkpoint_and_run(trained):
    run = trained["run"]
    stored = read_checkpoint(run.best_checkpoint)["dflab_calibration"]
    assert stored["temperature"] > 0 and 0.0 <= stored["threshold"] <= 1.0 and stored["rule"] == "eer"
    assert stored["n_videos"] == len(stored["val_keys"]) == len(stored["val_logits"]) > 0
    client = MlflowClient(trained["uri"])
    metrics = client.get_run(run.run_id).data.metrics
    for key in ("temperature", "threshold", "ece_before", "ece_after"):
        assert metrics[f"calibration/{key}"] == pytest.approx(stored[key])
    assert metrics["calibration/ece_after"] <= metrics["calibration/ece_before"] + 1e-6
    files = {a.path for a in client.list_artifacts(run.run_id, "plots")}
    assert "plots/reliability.png" in files
    assert "calibration.json" in {a.path for a in client.list_artifacts(run.run_id)}


@pytest.mark.parametrize("which", ["checkpoint", "export"])
def test_predict_scores_test_videos_exactly_as_evaluation(trained, tmp_path, which):
    """The file score before calibration is the number evaluation logged for the same video."""
    expected = _test_videos(trained)
    model = trained["run"].best_checkpoint if which == "checkpoint" else str(trained["export"])
    out = predict(sorted(expected), [model], out=tmp_path, progress=False)
    assert [r.status for r in out.results] == ["scored"] * len(expected)
    tol = 2e-6 if which == "checkpoint" else 1e-4
    cal = read_checkpoint(trained["run"].best_checkpoint)["dflab_calibration"]
    for r in out.results:
        assert r.raw_score == pytest.approx(expected[r.path], abs=tol)
        logit = math.log(r.raw_score / (1 - r.raw_score))
        assert r.score == pytest.approx(1 / (1 + math.exp(-logit / cal["temperature"])), abs=1e-6)
        assert r.verdict == ("fake" if r.score >= cal["threshold"] else "real")
    assert out.threshold.value == pytest.approx(cal["threshold"])

    rows = list(csv.DictReader((tmp_path / "predictions.csv").read_text().splitlines()))
    assert [row["path"] for row in rows] == sorted(expected)
    assert all(float(row["score"]) == pytest.approx(r.score, abs=1e-6) for row, r in zip(rows, out.results, strict=True))
    doc = json.loads((tmp_path / "predictions.json").read_text())
    assert doc["threshold"] == pytest.approx(cal["threshold"]) and doc["temperature"] == pytest.approx(cal["temperature"])
    first = doc["files"][0]
    info = probe(first["path"])
    frames = first["tracks"][0]["frames"]
    assert len(frames) == 3  # data.eval_clips_per_video clips of one frame
    for f in frames:
        assert 0 <= f["frame"] < info.num_frames and f["time_s"] == pytest.approx(info.timestamps[f["frame"]], abs=1e-3)
        x1, y1, x2, y2 = f["box"]
        assert 0 <= x1 < x2 <= info.width + 1 and 0 <= y1 < y2 <= info.height + 1
        assert 0.0 <= f["score"] <= 1.0


def _multi_face_video(path: Path, frames: int = 12) -> Path:
    """A video of the packaged group photo (six people) drifting slowly."""
    rgb = cv2.cvtColor(cv2.imread(str(PHOTOS / "t1.jpg")), cv2.COLOR_BGR2RGB)
    h, w = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
    rgb = rgb[:h, :w]
    shifted = (cv2.warpAffine(rgb, np.float32([[1, 0, t], [0, 1, 0]]), (w, h), borderMode=cv2.BORDER_REFLECT)
               for t in range(frames))
    return write_video(path, shifted, fps=10)


def test_mixed_inputs_list_every_failure_with_its_reason(trained, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    group = _multi_face_video(media / "group.mp4")
    shutil.copy(PHOTOS / "t1.jpg", media / "group.jpg")
    cv2.imwrite(str(media / "wall.png"), np.full((120, 160, 3), 128, np.uint8))  # no face
    (media / "empty.mp4").write_bytes(b"")
    (media / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (media / "notes.txt").write_text("not media")  # folders contribute only media files
    damaged = tmp_path / "damaged.mp4"
    shutil.copy(group, damaged)
    damage_bytes(damaged, start=0.2, length=0.6)
    out = predict([str(media), str(tmp_path / "dam*.mp4")], [str(trained["export"])], out=tmp_path / "out",
                  progress=False)
    by_name = {Path(r.path).name: r for r in out.results}
    assert set(by_name) == {"group.mp4", "group.jpg", "wall.png", "empty.mp4", "garbage.mp4", "damaged.mp4"}
    assert by_name["group.mp4"].scored and len(by_name["group.mp4"].tracks) >= 3
    assert by_name["group.jpg"].scored and len(by_name["group.jpg"].tracks) >= 4
    assert by_name["group.jpg"].kind == "image" and by_name["group.jpg"].tracks[0].frames[0].frame == 0
    assert by_name["wall.png"].status == "no_face" and by_name["wall.png"].score is None
    for name in ("empty.mp4", "garbage.mp4"):
        r = by_name[name]
        assert r.status == "unreadable" and r.score is None and r.verdict is None and name in r.reason
    assert by_name["damaged.mp4"].status != "scored" or by_name["damaged.mp4"].score is not None
    rows = {Path(row["path"]).name: row for row in csv.DictReader((tmp_path / "out" / "predictions.csv").read_text().splitlines())}
    assert rows["garbage.mp4"]["score"] == "" and rows["garbage.mp4"]["verdict"] == ""
    assert rows["wall.png"]["reason"] == "no face found"
    # a file score combines its tracks as at evaluation (max by default)
    video = by_name["group.mp4"]
    assert video.score == pytest.approx(max(t.score for t in video.tracks), abs=1e-6)


def test_annotated_video_and_image_with_grad_cam(trained, tmp_path):
    video = sorted(_test_videos(trained))[0]
    out = predict([video, str(PHOTOS / "t1.jpg")], [trained["run"].best_checkpoint], out=tmp_path,
                  annotate=True, cam=True, progress=False)
    mp4, png = out.annotated[video], out.annotated[str(PHOTOS / "t1.jpg")]
    src, drawn = probe(video), probe(mp4)
    assert drawn.num_frames == src.num_frames and drawn.codec == "h264"
    assert (drawn.width, drawn.height) == (src.width + src.width % 2, src.height + src.height % 2)
    image = cv2.imread(str(png))
    assert image.shape[:2] == cv2.imread(str(PHOTOS / "t1.jpg")).shape[:2]
    plain = predict([str(PHOTOS / "t1.jpg")], [trained["run"].best_checkpoint], out=tmp_path / "plain",
                    annotate=True, progress=False)
    assert not np.array_equal(cv2.imread(str(plain.annotated[str(PHOTOS / "t1.jpg")])), image)  # the heat maps


def test_ensemble_mean_of_logits_and_refused_mismatch(trained, tmp_path):
    ckpt, export = trained["run"].best_checkpoint, str(trained["export"])
    single = load_models([ckpt])
    pair = load_models([ckpt, export])
    clips = torch.rand(4, 1, 3, 64, 64).numpy()
    assert np.allclose(pair.logits(clips), single.logits(clips), atol=1e-4)
    assert pair.calibration is not None and len(pair.members) == 2
    assert pair.calibration.temperature == pytest.approx(single.calibration.temperature, rel=1e-3)
    # a member that reads other crops is refused, naming the setting
    other = torch.load(ckpt, weights_only=True)
    other["dflab_config"]["faces"]["margin"] = 1.6
    torch.save(other, tmp_path / "other.ckpt")
    with pytest.raises(ModelLoadError, match=r"margin: 1\.3 != 1\.6"):
        load_models([ckpt, str(tmp_path / "other.ckpt")])


@contextmanager
def process_wide_uris(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking and registry URIs set to ``uri`` for a while (and its
    environment variables restored: ``set_registry_uri(None)`` leaves ``MLFLOW_REGISTRY_URI``)."""
    import mlflow

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_registry_round_trip_pyfunc_and_champion(trained, tmp_path):
    import mlflow.pyfunc
    import pandas as pd

    from dflab.export.registry import register

    client = MlflowClient(trained["uri"])
    reg = trained["registered"]
    assert reg is not None and reg.name == "dflab-unit" and reg.champion
    champion = f"models:/{reg.name}@champion"
    videos = sorted(_test_videos(trained))[:2]
    # the store named by tracking_uri is read, whatever MLflow's process-wide URIs say
    with process_wide_uris(f"sqlite:///{tmp_path}/elsewhere.db"):
        out = predict(videos, [champion], out=tmp_path, tracking_uri=trained["uri"], progress=False)
    assert out.model_id == f"models:/{reg.name}/{reg.version}"
    with process_wide_uris(trained["uri"]):
        model = mlflow.pyfunc.load_model(champion)
    frame = model.predict(pd.DataFrame({"path": [*videos, str(trained["root"] / "missing.mp4")]}))
    assert list(frame["path"][:2]) == videos
    assert np.allclose(frame["score"][:2], [r.score for r in out.results], atol=1e-6)
    assert frame["status"][2] == "unreadable" and math.isnan(frame["score"][2])
    assert model.metadata.signature.inputs.input_names() == ["path"]

    # the alias moves only to a better model on the same metric
    source = f"{client.get_run(trained['run'].run_id).info.artifact_uri}/model"
    worse = register(client, reg.name, trained["run"].run_id, source, reg.metric, reg.value - 0.1)
    assert not worse.champion and str(client.get_model_version_by_alias(reg.name, "champion").version) == reg.version
    better = register(client, reg.name, trained["run"].run_id, source, reg.metric, reg.value + 0.1)
    assert better.champion and str(client.get_model_version_by_alias(reg.name, "champion").version) == better.version
    other = register(client, reg.name, trained["run"].run_id, source, "best/val/loss", 0.0, higher_is_better=False)
    assert not other.champion


def test_cli_reports_bad_model_and_missing_input(trained, tmp_path, capsys):
    video = sorted(_test_videos(trained))[0]
    assert main(["predict", video, "--model", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path)]) == 2
    assert "nope.ckpt: no such file or folder" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "absent.mp4"), "--model", str(trained["export"]),
                 "--out", str(tmp_path)]) == 2
    assert "absent.mp4: no such file or folder" in capsys.readouterr().err
    code = main(["predict", video, "--model", str(trained["export"]), "--out", str(tmp_path / "o"),
                 "--target-fpr", "0.2", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and "false-positive rate <= 0.2" in printed and "1 files: " in printed


def test_mlflow_models_serve_scores_posted_paths(trained):
    """The registered model behind MLflow's own scoring server (`mlflow models serve`)."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    # the scoring server starts `uvicorn` from PATH: the environment's bin folder comes first
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained["uri"],
           "PATH": f"{mlflow_cli.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([str(mlflow_cli), "models", "serve", "-m", trained["registered"].uri, "--env-manager",
                             "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"mlflow models serve did not come up:\n{proc.stdout.read()[-3000:]}")
                time.sleep(1)
        video = sorted(_test_videos(trained))[0]
        body = json.dumps({"dataframe_split": {"columns": ["path"], "data": [[video]]}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body,
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as r:
            rows = json.loads(r.read())["predictions"]
        assert rows[0]["path"] == video and rows[0]["status"] == "scored"
        assert 0.0 <= rows[0]["score"] <= 1.0 and rows[0]["verdict"] in ("fake", "real")
    finally:
        proc.terminate()
        proc.wait(30)


def test_phone_footage_rotated_and_variable_frame_rate(trained, tmp_path):
    """A portrait phone video (rotation flag) and a variable-frame-rate file: boxes are in the
    displayed frame, timestamps are the container's."""
    from dflab.video.faults import write_vfr_video
    from footage import face_frames

    frames = list(face_frames(24, size=128))
    wide = [np.ascontiguousarray(np.pad(f, ((0, 0), (32, 32), (0, 0)), mode="edge")) for f in frames]  # 192x128
    rotated = write_video(tmp_path / "phone.mp4", wide, fps=24, rotation=90)
    durations = [40 if i % 3 else 120 for i in range(len(frames))]
    vfr = write_vfr_video(tmp_path / "vfr.mp4", frames, durations)
    out = predict([str(rotated), str(vfr)], [str(trained["export"])], out=tmp_path / "out", progress=False)
    phone, varying = out.results
    assert phone.scored and (phone.width, phone.height) == (128, 192)
    for f in phone.tracks[0].frames:
        assert f.box[2] <= 128 + 1 and f.box[3] <= 192 + 1
    assert varying.scored
    starts = np.concatenate([[0], np.cumsum(durations)[:-1]]) / 1000.0
    for f in varying.tracks[0].frames:
        assert f.time_s == pytest.approx(starts[f.frame], abs=2e-3)


def test_temporal_model_scores_clips_and_refuses_still_images(trained, tmp_path, face_cache):
    """A backbone + GRU over 4-frame windows: exported with a clips input, scored per window."""
    cfg = trained["cfg"]
    root = tmp_path
    overrides = ["data.source=manifest", f"data.root={cfg.data.root}", "data.options={}", "data.image_size=64",
                 "data.batch_size=4", "data.train_clips_per_video=1", "data.eval_clips_per_video=2",
                 "data.frames_per_clip=4", "data.frame_stride=2", "data.num_workers=0", "data.test_fraction=0.25",
                 "model.temporal=gru", "model.temporal_hidden=16", f"faces.cache_dir={face_cache}",
                 "faces.num_frames=4", "faces.workers=0", "trainer.max_epochs=1", "trainer.accelerator=cpu",
                 "trainer.enable_progress_bar=false", f"logging.tracking_uri=sqlite:///{root}/mlflow.db",
                 f"logging.artifact_location={root}/artifacts", f"logging.output_dir={root}/outputs"]
    run = run_experiment(load_experiment("experiments/mesonet4_demo.yaml", overrides), progress=False)
    export_run(run.run_id, f"sqlite:///{root}/mlflow.db", root / "export", register=False)
    meta = json.loads((root / "export" / run.run_id / "export.json").read_text())
    assert meta["input_name"] == "clips" and meta["predict"]["temporal"] and meta["predict"]["frames_per_clip"] == 4
    video = sorted(_test_videos(trained))[0]
    for model in (run.best_checkpoint, str(root / "export" / run.run_id)):
        out = predict([video, str(PHOTOS / "t1.jpg")], [model], out=root / "out", progress=False)
        clip, image = out.results
        assert clip.scored and image.status == "failed" and "still image" in image.reason
        frames = [f.frame for f in clip.tracks[0].frames]
        assert len(frames) == 2 * 4  # two windows of four frames, each frame with its window's score
        assert frames[1] - frames[0] == 2


def test_broken_models_and_options_are_refused_in_one_line(trained, tmp_path, capsys):
    video = sorted(_test_videos(trained))[0]
    export = trained["export"]

    def run(*args: str) -> tuple[int, str]:
        code = main(["predict", video, "--out", str(tmp_path / "out"), "--no-progress", *args])
        return code, capsys.readouterr().err

    broken = tmp_path / "broken_onnx"
    shutil.copytree(export, broken)
    (broken / "model.onnx").write_bytes((export / "model.onnx").read_bytes()[:5000])
    code, err = run("--model", str(broken))
    assert code == 2 and f"{broken / 'model.onnx'}: not a model ONNX Runtime can load" in err

    typed = tmp_path / "typed"
    shutil.copytree(export, typed)
    meta = json.loads((typed / "export.json").read_text())
    meta["calibration"]["temperature"] = "abc"
    (typed / "export.json").write_text(json.dumps(meta))
    code, err = run("--model", str(typed))
    assert code == 2 and "export.json" in err and "temperature" in err

    plain = tmp_path / "uncalibrated"
    shutil.copytree(export, plain)
    meta["calibration"] = None
    (plain / "export.json").write_text(json.dumps(meta))
    code, err = run("--model", str(plain), "--target-fpr", "0.1")
    assert code == 2 and "records no validation scores" in err
    assert run("--model", str(plain))[0] == 0  # scored, uncalibrated, and said so
    assert json.loads((tmp_path / "out" / "predictions.json").read_text())["threshold"] == 0.5

    missing_store = tmp_path / "nowhere" / "mlflow.db"
    code, err = run("--tracking-uri", f"sqlite:///{missing_store}")
    assert code == 2 and "no MLflow store" in err and not missing_store.parent.exists()
    for command in (["export", "--out-dir", str(tmp_path / "exp")], ["evaluate", "experiments/mesonet4_demo.yaml"]):
        assert main([*command, "--tracking-uri", f"sqlite:///{missing_store}"]) == 2  # reading creates no store
        assert "no MLflow store" in capsys.readouterr().err and not missing_store.parent.exists()

    with pytest.raises(SystemExit):
        main(["predict", video, "--model", str(export), "--threshold", "0.5", "--target-fpr", "0.1"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_output_folder_inside_inputs_and_empty_folders_are_skipped(trained, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(PHOTOS / "t1.jpg", media / "group.jpg")
    (tmp_path / "nothing").mkdir()
    for _ in range(2):  # the second run finds the first run's annotated PNG under media/out
        out = predict([str(media), str(tmp_path / "nothing")], [str(trained["export"])], out=media / "out",
                      annotate=True, progress=False)
        assert [Path(r.path).name for r in out.results] == ["group.jpg"]
    doc = json.loads((media / "out" / "predictions.json").read_text())
    assert doc["skipped_inputs"] == [f"{tmp_path / 'nothing'}: a folder with no video or image files"]
    assert doc["interrupted"] is False


def test_ctrl_c_keeps_the_files_already_scored(trained, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "many"
    folder.mkdir()
    videos = sorted(_test_videos(trained))
    for i in range(60):
        (folder / f"v{i:02d}.mp4").symlink_to(videos[i % len(videos)])
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "dflab", "predict", str(folder), "--model", str(trained["export"]),
                             "--out", str(out), "--annotate", "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while len([p for p in (out / "annotated").glob("*.mp4") if not p.name.startswith(".")]) < 2:  # two done
        assert proc.poll() is None and time.monotonic() < deadline, "predict ended before it was interrupted"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, rest
    assert "Traceback" not in rest and "interrupted: " in rest
    doc = json.loads((out / "predictions.json").read_text())
    rows = list(csv.DictReader((out / "predictions.csv").read_text().splitlines()))
    assert doc["interrupted"] is True and 2 <= len(doc["files"]) == len(rows) < 60
    assert all(f["status"] == "scored" for f in doc["files"])
