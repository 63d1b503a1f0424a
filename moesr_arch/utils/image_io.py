"""The one image reader, writer and image lister of the package (datasets, tools and inference all use these).

:func:`decode_raw` turns file bytes into the pixels as stored: uint8 or uint16 (float32 where the caller
accepts it), 1, 2, 3 or 4 channels in OpenCV's BGR order, EXIF orientation applied. Everything else is
built on it: :func:`read_raw` reads a file, :func:`split_channels` separates colour, alpha and greyness,
:func:`decode_image` gives the datasets' 3-channel float32 in [0, 1]. A file that can't be read or decoded
raises :class:`ImageReadError` naming it. :func:`to_uint8` is the one float-to-8-bit conversion of LR
tensors (gate overlays, detectors).
"""
import io
from pathlib import Path

import cv2
import numpy as np

from moesr_arch.utils.atomic import atomic_write_bytes

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')


class ImageReadError(ValueError):
    """An image file that is missing, empty or not decodable."""


def is_image_file(name):
    return str(name).lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder, allow_empty=False):
    """Sorted paths of the image files in ``folder`` (other files and sub-folders are ignored).

    A broken or looping symbolic link is kept: reading it reports the reason instead of a silent skip.
    Raises FileNotFoundError when ``folder`` is not a folder and, unless ``allow_empty``, ValueError when
    it holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'no such folder: {folder}')
    paths = sorted(p for p in folder.iterdir() if is_image_file(p.name) and (p.is_file() or p.is_symlink()))
    if not paths and not allow_empty:
        raise ValueError(f'{folder}: no image files (looked for {", ".join(IMAGE_EXTENSIONS)})')
    return paths


def decode_raw(content, name, allow_float=False):
    """The pixels of the encoded image ``content`` (bytes) as stored, EXIF-rotated; ``name`` is used in errors.

    uint8 or uint16 only, unless ``allow_float`` (float32 TIFF/EXR samples, for the datasets).
    """
    if content is None or len(content) == 0:
        raise ImageReadError(f'{name}: empty file (0 bytes)')
    buffer = np.frombuffer(content, np.uint8)
    # IMREAD_UNCHANGED keeps 16 bits and alpha; IMREAD_COLOR would cut both to 8-bit BGR.
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(f'{name}: not a readable image (truncated, corrupt or not an image)')
    if image.dtype not in (np.uint8, np.uint16) and not (allow_float and image.dtype.kind == 'f'):
        raise ImageReadError(f'{name}: unsupported sample type {image.dtype} (8- or 16-bit images only)')
    return _apply_exif_orientation(image, buffer)


def file_bytes(path):
    """The content of ``path``; an :class:`ImageReadError` naming it and the reason when it can't be read."""
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError as error:
        raise ImageReadError(f'{path}: cannot read: {error.strerror}') from error


def read_raw(path, allow_float=False):
    """:func:`decode_raw` of the file ``path``."""
    return decode_raw(file_bytes(path), str(path), allow_float)


def peak_value(image):
    """The value of full intensity of ``image``'s samples: 65535 (16-bit), 255 (8-bit) or 1 (float)."""
    return {np.dtype(np.uint16): 65535., np.dtype(np.uint8): 255.}.get(image.dtype, 1.)


def split_channels(image):
    """``(colour, alpha, grey)`` of raw pixels: BGR colour (h, w, 3; grey repeated), the alpha plane or None,
    and whether the image was grey."""
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    alpha = image[:, :, -1] if channels in (2, 4) else None
    colour = image[:, :, :1] if channels in (1, 2) else image[:, :, :3]
    grey = colour.shape[2] == 1
    if grey:
        colour = np.repeat(colour, 3, axis=2)
    return np.ascontiguousarray(colour), alpha, grey


def to_float(image):
    """float32 in [0, 1]: integer samples divided by their peak, float samples clipped at 0 and scaled to a
    maximum of at most 1."""
    if image.dtype.kind != 'f':
        return image.astype(np.float32) / peak_value(image)
    image = np.clip(image.astype(np.float32), 0, None)
    if image.max() > 1:
        image /= float(image.max())
    return image


def decode_image(content, name, keep_alpha=False):
    """Encoded image bytes as float32 HWC BGR in [0, 1], 3 channels (a 4th with ``keep_alpha`` when the image
    has alpha); grey is repeated to three channels, 16-bit keeps its precision."""
    colour, alpha, _ = split_channels(decode_raw(content, name, allow_float=True))
    if keep_alpha and alpha is not None:
        colour = np.dstack([colour, alpha])
    return np.ascontiguousarray(to_float(colour))


def read_image(path, keep_alpha=False):
    """:func:`decode_image` of the file ``path``."""
    return decode_image(file_bytes(path), str(path), keep_alpha=keep_alpha)


def write_png(path, image, compression=3):
    """Write ``image`` (uint8 or uint16) as PNG all-or-nothing, creating the folder.

    Encoded in memory and written through :func:`atomic_write_bytes`: a kill never leaves a truncated PNG
    under the final name, and a failing write raises the operating system's reason naming the file
    (``cv2.imwrite`` only says that it failed).
    """
    ok, encoded = cv2.imencode('.png', np.ascontiguousarray(image), [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:
        raise ValueError(f'{path}: PNG encoding failed for a {image.dtype} image of shape {image.shape}')
    atomic_write_bytes(path, encoded)


def to_uint8(tensor):
    """A float image tensor in [0, 1], ``(C, h, w)`` or ``(B, C, h, w)``, as uint8 channel-last numpy (same
    channel order), rounded: what detectors and overlays are given."""
    tensor = tensor.detach().float().clamp(0, 1).mul(255).round().byte()
    return np.ascontiguousarray(tensor.movedim(-3, -1).cpu().numpy())


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
        from PIL import Image
        orientation = Image.open(io.BytesIO(buffer.tobytes())).getexif().get(0x0112, 1)
    except Exception:
        return image
    rotate = _EXIF_ROTATIONS.get(orientation)
    return rotate(image) if rotate else image
