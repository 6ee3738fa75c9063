"""dflab: an experiment framework for deepfake-video detection on PyTorch Lightning.

The package reads in data-flow order, one folder per stage; each imports only from the floors
below it (``docs/architecture.md``; checked by ``make lint``):

1. :mod:`dflab.config` (the typed schema and strict loader), :mod:`dflab.video` (exact frames
   from video files), :mod:`dflab.utils` (atomic writes, process pool, tables, logging);
2. :mod:`dflab.faces` (detect and track faces once per video, cached),
   :mod:`dflab.models` (networks and the one checkpoint loader), :mod:`dflab.tracking` (MLflow);
3. :mod:`dflab.datasets` (benchmark layouts and split files into labelled videos; the demo);
4. :mod:`dflab.clips` (face clips streamed from the videos: the Dataset and DataModule),
   :mod:`dflab.metrics` (scores, breakdowns, plots), :mod:`dflab.experiment` (a fully checked
   experiment config);
5. :mod:`dflab.training` (LightningModule and one run), :mod:`dflab.export` (ONNX, ``.pt2``);
6. :mod:`dflab.evaluate`, :mod:`dflab.sweeps` (Optuna ↔ MLflow);
7. :mod:`dflab.cli` (the ``dflab`` command).
"""

__version__ = "0.1.0"
