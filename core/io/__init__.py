"""Frame sources (video file, camera, image folder, stream URL) and result sinks (H.264 MP4, COCO JSON,
OpenPose JSON, CSV). See ``sources`` and ``writers`` for the two interfaces."""
from core.io.sources import (CameraSource, ImageSource, LimitSource, LoopSource, PatternSource, Source,
                             SourceFrame, URLSource, VideoFileSource, open_source, pattern_index)
from core.io.video_writer import VideoWriter
from core.io.writers import (CocoJsonWriter, CsvWriter, OpenPoseJsonWriter, Sink, SourceInfo,
                             check_output_path)

__all__ = [
    "CameraSource", "ImageSource", "LimitSource", "LoopSource", "PatternSource", "Source", "SourceFrame",
    "URLSource", "VideoFileSource", "open_source", "pattern_index", "VideoWriter", "CocoJsonWriter",
    "CsvWriter", "OpenPoseJsonWriter", "Sink", "SourceInfo", "check_output_path",
]
