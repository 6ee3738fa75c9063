"""Typed experiment configuration.

Every key an experiment YAML may hold is a field here; anything else is refused with a message
naming the key (see :mod:`dflab.config.loader` and :mod:`dflab.experiment`). Paths are relative to the working directory
(the repository root when run through ``make``), never absolute in shipped configs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class SourceConfig:
    """One more dataset mixed into a run (``data.extra_sources``).

    Attributes:
        source: dataset adapter (as ``data.source``).
        root: dataset root folder (or CSV file for ``manifest``).
        options: the adapter's options (as ``data.options``).
        name: the name its videos carry in reports (default: ``source``); must be unique.
        weight: training sampling weight of this dataset relative to the others.
    """

    source: str = "folder"
    root: str = ""
    options: dict = field(default_factory=dict)
    name: str | None = None
    weight: float = 1.0


@dataclass
class DataConfig:
    """Where the videos are and how clips are cut from them.

    Attributes:
        source: dataset adapter: ``demo`` (the built-in dataset, generated on first use),
            ``folder`` (``real/``, ``fake/`` [, ``val/…``, ``test/…``]), ``manifest`` (CSV) or
            a public benchmark (``ffpp``, ``celebdf``, ``dfdc``, ...; ``dflab data list``).
        root: dataset root folder, or the CSV file for ``manifest``.
        options: the adapter's own settings (e.g. ``compression`` and ``methods`` for
            ``ffpp``), checked against its options dataclass.
        weight: training sampling weight of this dataset when ``extra_sources`` are mixed in.
        extra_sources: more datasets trained and evaluated in the same run, each with its own
            adapter, options and sampling weight; every video remembers its dataset.
        demo_seed: seed of the built-in demo dataset.
        val_fraction: share of groups moved to validation when the data names no val split.
        test_fraction: share of groups moved to test when the data names no test split.
        split_seed: seed of that group split.
        frames_per_clip: frames in one clip (1 for frame models).
        frame_stride: step between the frames of a clip.
        train_clips_per_video: random clips drawn from each training video per epoch.
        eval_clips_per_video: evenly spaced clips scored per validation/test video.
        self_blend: probability that a real training clip becomes a self-blended pseudo-fake
            (Shiohara & Yamasaki, CVPR 2022): the face blended with an altered copy of itself
            through a landmark mask, labelled fake. With ``1.0`` and no fakes in the training
            split, a detector trains from real videos alone.
        image_size: side of the square face crop fed to the model; ``null`` takes the
            backbone's own input size (timm's pretrained config, 256 for the MesoNets).
        batch_size: clips per batch (per process under DDP).
        num_workers: DataLoader worker processes.
        augment: training augmentation preset: ``none``, ``light`` or ``strong``.
    """

    source: str = "demo"
    root: str = "data/demo"
    options: dict = field(default_factory=dict)
    weight: float = 1.0
    extra_sources: list[SourceConfig] = field(default_factory=list)
    demo_seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    split_seed: int = 0
    frames_per_clip: int = 1
    frame_stride: int = 1
    train_clips_per_video: int = 8
    eval_clips_per_video: int = 8
    image_size: int | None = 96
    batch_size: int = 32
    num_workers: int = 2
    augment: str = "light"
    self_blend: float = 0.0


@dataclass
class FacesConfig:
    """Face detection, run once per video and cached, and how faces are cropped.

    With ``crop: aligned`` every frame is warped so that the five face landmarks (interpolated
    between the sampled frames) land on insightface's ArcFace template: eyes level and always
    at the same place, with about the context of a ``box`` crop of the same ``margin``.

    Attributes:
        detector: ``blazeface`` (MediaPipe BlazeFace, the offline default), ``scrfd``
            (insightface SCRFD from a local model pack), ``dlib_hog`` or ``dlib_cnn``.
        detector_options: the detector's own settings, e.g. ``{model: full_range}`` for
            ``blazeface`` or ``{root: models/insightface, pack: buffalo_l}`` for ``scrfd``;
            unknown keys are errors.
        num_frames: frames sampled per video for detection (evenly spaced, or at most this
            many with ``frame_step``).
        frame_step: ``0`` spreads ``num_frames`` over the whole video; ``k > 0`` detects on
            every ``k``-th frame from the start instead.
        margin: crop side relative to the face size: for ``box`` crops a multiple of the
            detected box's longer side; for ``aligned`` crops a multiple of ``112 / 1.3``
            ArcFace-template pixels around the template centre (about a face box's side).
        crop: ``box`` (square around the detected box) or ``aligned`` (landmark-aligned on the
            ArcFace template; videos without landmarks fall back to ``box``).
        cache_dir: where detections (and, with ``crop_cache``, face crops) are cached.
        crop_cache: keep every face crop cut for training and evaluation on disk (lossless
            ``.npy``) and reuse it instead of decoding the video again; validation and test
            clips repeat every epoch, training clips as often as random draws repeat.
        workers: processes used to build the face index.
        track_score: in validation and test every face track of a video is scored and a
            video's score combines its tracks' scores (each the mean of the track's clips):
            ``max`` (the most fake-looking face decides), ``mean``, or ``main`` (only track 0,
            the largest, most persistent face).
        min_track_coverage: tracks other than track 0 found on fewer than this share of the
            sampled frames are not scored (track 0 always is).
    """

    detector: str = "blazeface"
    detector_options: dict = field(default_factory=dict)
    num_frames: int = 16
    frame_step: int = 0
    margin: float = 1.3
    crop: str = "box"
    cache_dir: str = "cache/faces"
    crop_cache: bool = False
    workers: int = 2
    track_score: str = "max"
    min_track_coverage: float = 0.25


@dataclass
class ModelConfig:
    """The network.

    Attributes:
        backbone: a registered dflab model (``meso4``) or any timm model name.
        pretrained_file: local weights file for the backbone (no hub download), or ``null``.
        drop_rate: dropout before the classifier.
        temporal: ``none`` scores each frame (a clip's score is the mean of its frames');
            ``lstm``, ``gru`` (bidirectional) or ``transformer`` score a whole window of
            ``data.frames_per_clip`` frames from the backbone's embeddings.
        temporal_hidden: hidden size (per direction) of the recurrent head, or the
            transformer's width.
        temporal_layers: stacked layers of the temporal head.
    """

    backbone: str = "meso4"
    pretrained_file: str | None = None
    drop_rate: float = 0.0
    temporal: str = "none"
    temporal_hidden: int = 256
    temporal_layers: int = 1


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule.

    Attributes:
        name: ``adamw``, ``adam`` or ``sgd``.
        lr: peak learning rate.
        weight_decay: decoupled weight decay.
        momentum: SGD momentum.
        scheduler: ``cosine`` or ``none``.
        warmup_epochs: linear warm-up epochs before the schedule.
        freeze_backbone_epochs: epochs at the start during which only the classifier head
            (or the temporal head) trains; the backbone, batch-norm statistics included, is
            frozen.
    """

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    scheduler: str = "cosine"
    warmup_epochs: int = 0
    freeze_backbone_epochs: int = 0


@dataclass
class TrainerConfig:
    """Arguments passed to ``pytorch_lightning.Trainer`` (the ones dflab supports), plus
    ``early_stopping_patience``: stop after this many validation epochs without a better
    ``monitor`` value (0: never stop early). ``precision: auto`` trains with 16-bit mixed
    precision when the run uses a CUDA GPU and 32-bit otherwise; any Lightning precision
    string (``32-true``, ``16-mixed``, ``bf16-mixed``) forces one. ``num_threads``: CPU
    threads of each training process (torch and OpenCV); ``0`` takes the cores left over
    after one per DataLoader worker (``data.num_workers``), so that decoding and the model
    never oversubscribe the cores; loader workers always run one thread each.

    ``devices``: a count (``2``), ``auto``, ``-1`` (all) or a list of device indices (``[0, 1]``);
    ``num_nodes``: machines of a multi-node run (Lightning's own cluster environments, torchrun
    or SLURM, supply the ranks); ``sync_batchnorm``: BatchNorm statistics over every process.
    """

    max_epochs: int = 5
    accelerator: str = "auto"
    devices: int | str | list[int] = 1
    num_nodes: int = 1
    sync_batchnorm: bool = False
    strategy: str = "auto"
    precision: str = "auto"
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    log_every_n_steps: int = 10
    deterministic: bool = False
    enable_progress_bar: bool = True
    early_stopping_patience: int = 0
    num_threads: int = 0


DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
"""Where runs go when neither the config nor ``MLFLOW_TRACKING_URI`` names a tracking URI."""


def tracking_uri_or_default(uri: str | None = None) -> str:
    """``uri`` if given, else the ``MLFLOW_TRACKING_URI`` environment variable, else
    :data:`DEFAULT_TRACKING_URI`."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


@dataclass
class LoggingConfig:
    """Where runs and checkpoints go.

    Attributes:
        tracking_uri: MLflow tracking URI: a SQLite database, or an MLflow tracking server
            (``http://host:5000``, artifacts proxied by the server). Empty (the default): the
            ``MLFLOW_TRACKING_URI`` environment variable, else :data:`DEFAULT_TRACKING_URI`.
            Give passwords through MLflow's ``MLFLOW_TRACKING_USERNAME`` /
            ``MLFLOW_TRACKING_PASSWORD`` rather than inside the URI.
        artifact_location: root folder for MLflow artifacts of new experiments.
        experiment: MLflow experiment name.
        run_name: MLflow run name (default: the experiment ``name``).
        output_dir: local folder for checkpoints and reports.
        log_checkpoint: upload the best checkpoint to MLflow as an artifact.
    """

    tracking_uri: str = ""
    artifact_location: str = "mlruns/artifacts"
    experiment: str = "dflab"
    run_name: str | None = None
    output_dir: str = "outputs"
    log_checkpoint: bool = True


@dataclass
class TripletConfig:
    """Triplet-loss siamese training in two stages (see :mod:`dflab.training.triplet`).

    Attributes:
        enabled: train the embedding with a triplet loss first, then a linear head on it.
        margin: triplet margin (embeddings are unit length, distances in ``[0, 2]``).
        mining: ``batch_hard``, ``batch_all`` or ``random`` triplets within each batch.
        embed_dim: embedding size.
        embed_epochs: epochs of the embedding stage (the head stage runs
            ``trainer.max_epochs``).
    """

    enabled: bool = False
    margin: float = 0.3
    mining: str = "batch_hard"
    embed_dim: int = 128
    embed_epochs: int = 5


@dataclass
class CalibrationConfig:
    """What a run stores with its best checkpoint for scoring new files (``dflab predict``).

    At the end of training a temperature is fitted on the validation videos' logits (Guo et
    al., ICML 2017) and the verdict threshold is chosen on the calibrated validation scores.

    Attributes:
        enabled: fit and store the calibration (needs real and fake validation videos).
        threshold: ``eer`` (the equal-error-rate point) or ``fpr`` (the lowest threshold whose
            validation false-positive rate is at most ``target_fpr``).
        target_fpr: the false-positive budget of ``threshold: fpr``.
        bins: bins of the expected calibration error and the reliability diagram.
    """

    enabled: bool = True
    threshold: str = "eer"
    target_fpr: float = 0.05
    bins: int = 10


@dataclass
class ExperimentConfig:
    """One experiment: data, faces, model, optimisation, trainer and logging."""

    name: str = "experiment"
    seed: int = 42
    monitor: str = "val/video_auroc"
    data: DataConfig = field(default_factory=DataConfig)
    faces: FacesConfig = field(default_factory=FacesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    triplet: TripletConfig = field(default_factory=TripletConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
