"""Camera frame -> small JPEG for the operator page's tiles (OpenCV, no ROS)."""
from __future__ import annotations

import numpy as np

ENCODINGS = {"rgb8": 3, "bgr8": 3, "mono8": 1}


def thumbnail_jpeg(msg, width: int, quality: int = 70) -> bytes:
    """A ``width``-pixel-wide JPEG of a sensor_msgs/Image (rgb8, bgr8 or mono8); ValueError otherwise."""
    import cv2

    channels = ENCODINGS.get(msg.encoding)
    if channels is None:
        raise ValueError(f"image encoding {msg.encoding!r}; thumbnails take {', '.join(ENCODINGS)}")
    height, cols, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if height < 1 or cols < 1 or step < cols * channels or data.size < height * step:
        raise ValueError(f"inconsistent {msg.encoding} image: {cols}x{height}, step {step}, {data.size} bytes")
    frame = data[:height * step].reshape(height, step)[:, :cols * channels].reshape(height, cols, channels)
    if msg.encoding == "rgb8":
        frame = frame[:, :, ::-1]  # OpenCV writes BGR
    rows = max(1, round(height * width / cols))
    small = cv2.resize(frame, (width, rows), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the thumbnail")
    return jpeg.tobytes()
