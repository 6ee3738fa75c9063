"""The built-in demo dataset: real and face-swapped H.264 videos generated from photographs that
installed packages ship (nothing is downloaded).

``spec`` (settings and the plan of videos) <- ``portraits`` (faces from the photographs) <-
``render`` (frames) <- ``build`` (files, manifest, stamp) <- ``adapter`` (``data.source: demo``,
which generates the videos on first use like any other adapter's ``prepare`` step).
"""
