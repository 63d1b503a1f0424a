"""All-or-nothing file writes: a file is either its complete new version or absent, never truncated.

Everything the package writes for a user (images, checkpoints, training states, ONNX files, LMDB
metadata) goes through :func:`atomic_write`: the bytes go to a hidden temporary file in the target's
folder (same file system, so the final ``os.replace`` is atomic), are flushed to disk, and only then
replace the target. A kill at any moment leaves the old file or the new one, plus at most a hidden
``.<name>.*.tmp`` that :func:`remove_stale_temporaries` (or the next training resume) deletes.
"""
import contextlib
import errno
import io
import os
import tempfile

TMP_SUFFIX = '.tmp'


def umask_mode(mode=0o666):
    """``mode`` filtered by the process umask, as ``open()`` would create the file.

    ``tempfile.mkstemp`` always creates 0600 files; renamed into place they would be unreadable for the
    other users of a shared machine, so the temporary file is given this mode before the rename.
    """
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def temporary_name(path):
    """A fresh hidden file beside ``path``: ``(fd, temporary path)``."""
    folder = os.path.dirname(os.path.abspath(path))
    return tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix=TMP_SUFFIX, dir=folder)


def make_folders(folder):
    """``os.makedirs(folder, exist_ok=True)``, naming the file that stands where a folder is needed (makedirs
    says only ``File exists``)."""
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        blocker = folder
        while blocker and not os.path.exists(blocker):
            blocker = os.path.dirname(blocker)
        raise NotADirectoryError(errno.ENOTDIR, f'{os.strerror(errno.ENOTDIR)} (a file is in the way)',
                                 blocker or folder) from error


@contextlib.contextmanager
def atomic_write(path, make_folder=True):
    """Open a binary file object whose content replaces ``path`` only when the block ends without error.

    OSErrors (no space, permission denied, a file where a folder should be) propagate with the target
    path as their ``filename``, so the message names the file the user asked for.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp_path = None
    try:
        if make_folder:
            make_folders(folder)
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        handle, tmp_path = temporary_name(path)
        with os.fdopen(handle, 'wb') as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, umask_mode())
        os.replace(tmp_path, path)
        tmp_path = None
    except OSError as error:
        if error.filename is None or (tmp_path and error.filename == tmp_path):
            raise type(error)(error.errno, error.strerror or str(error), path) from error
        raise
    finally:
        if tmp_path is not None and os.path.exists(tmp_path):
            os.remove(tmp_path)


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes or a buffer) to ``path`` all-or-nothing."""
    with atomic_write(path) as f:
        f.write(data)
    return path


def atomic_write_text(path, text, encoding='utf-8'):
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_torch_save(obj, path):
    """``torch.save`` all-or-nothing.

    The object is serialised in memory first: torch's file writer turns a failing write (a full disk)
    into ``unexpected pos ...``, while a plain write of the bytes raises the operating system's error
    (``No space left on device``) naming the file.
    """
    import torch
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getbuffer())


def check_writable(folder):
    """Create ``folder`` and a file in it (removed at once), so a read-only or full place fails before hours of
    work, naming the folder and the operating system's reason."""
    make_folders(folder)
    try:
        handle, tmp_path = temporary_name(os.path.join(folder, 'write-check'))
    except OSError as error:
        raise type(error)(error.errno, error.strerror, os.fspath(folder)) from None
    os.close(handle)
    os.remove(tmp_path)


def remove_stale_temporaries(folder):
    """Delete the temporary files an interrupted write left in ``folder``; return their paths."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    for name in os.listdir(folder):
        if name.startswith('.') and name.endswith(TMP_SUFFIX):
            os.remove(os.path.join(folder, name))
            removed.append(os.path.join(folder, name))
    return removed
