"""Video files: probing, exact frame reading, seek checks, damage scans, H.264 writing.

Frame ``i`` is the ``i``-th frame in presentation order, as playback shows it. Every frame
:func:`read_frames` returns equals the frame a sequential decode from the start of the file
gives (see :mod:`dflab.video.access` for how, and why seeking alone is not enough).
"""

from dflab.video.access import (
    CheckedDecode,
    SeekCheck,
    Undecoded,
    check_decode,
    format_ranges,
    iter_frames,
    read_frames,
)
from dflab.video.backend import VideoStream, backend_names, open_stream, register_backend
from dflab.video.info import VideoDecodeError, VideoInfo, probe
from dflab.video.write import write_video

__all__ = [
    "CheckedDecode",
    "SeekCheck",
    "Undecoded",
    "VideoDecodeError",
    "VideoInfo",
    "VideoStream",
    "backend_names",
    "check_decode",
    "format_ranges",
    "iter_frames",
    "open_stream",
    "probe",
    "read_frames",
    "register_backend",
    "write_video",
]
