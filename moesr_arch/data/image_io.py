"""Reading images for SR: every file becomes 3-channel float32 BGR in [0, 1], or a clear error.

Grey images are repeated to three channels, an alpha channel is dropped, 16-bit images keep their
precision (divided by 65535), EXIF orientation is applied. A file that can't be decoded raises
:class:`ImageReadError` naming it.
"""
import cv2
import numpy as np


class ImageReadError(ValueError):
    """An image file that is missing, empty or not decodable."""


def decode_image(content, name, keep_alpha=False):
    """Decode ``content`` (bytes) to float32 HWC BGR in [0, 1]; ``name`` is used in errors.

    With ``keep_alpha`` a 4th channel is returned when the image has one.
    """
    if content is None or len(content) == 0:
        raise ImageReadError(f'{name}: empty file (0 bytes)')
    buffer = np.frombuffer(content, np.uint8)
    # IMREAD_UNCHANGED keeps 16 bits and alpha; IMREAD_COLOR would cut both to 8-bit BGR.
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if image is None:
        raise ImageReadError(f'{name}: not a readable image (truncated, corrupt or not an image)')
    image = _apply_exif_orientation(image, buffer)
    if image.dtype == np.uint16:
        image = image.astype(np.float32) / 65535.
    elif image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.
    else:
        image = np.clip(image.astype(np.float32), 0, None)
        if image.max() > 1:
            image /= max(float(image.max()), 1.0)
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels == 1:
        image = np.repeat(image, 3, axis=2)
    elif channels == 2:  # grey + alpha
        image = np.concatenate([np.repeat(image[:, :, :1], 3, axis=2), image[:, :, 1:]], axis=2)
    if image.shape[2] == 4 and not keep_alpha:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


def read_image(path, keep_alpha=False):
    """Read ``path`` from disk with :func:`decode_image`."""
    try:
        with open(path, 'rb') as f:
            content = f.read()
    except OSError as error:
        raise ImageReadError(f'{path}: cannot read: {error.strerror}') from error
    return decode_image(content, str(path), keep_alpha=keep_alpha)


_EXIF_ROTATIONS = {
    3: lambda im: cv2.rotate(im, cv2.ROTATE_180),
    6: lambda im: cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE),
    8: lambda im: cv2.rotate(im, cv2.ROTATE_90_COUNTERCLOCKWISE),
    2: lambda im: cv2.flip(im, 1),
    4: lambda im: cv2.flip(im, 0),
    5: lambda im: cv2.flip(cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE), 1),
    7: lambda im: cv2.flip(cv2.rotate(im, cv2.ROTATE_90_COUNTERCLOCKWISE), 1),
}


def _apply_exif_orientation(image, buffer):
    if buffer[:2].tobytes() != b'\xff\xd8':  # EXIF orientation matters for JPEG only
        return image
    try:
        import io

        from PIL import Image
        orientation = Image.open(io.BytesIO(buffer.tobytes())).getexif().get(0x0112, 1)
    except Exception:
        return image
    rotate = _EXIF_ROTATIONS.get(orientation)
    return rotate(image) if rotate else image
