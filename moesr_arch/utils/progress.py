"""Progress bars where someone watches: tqdm on a terminal, nothing in a log file or a pipe.

Every bar of the package is made by :func:`progress_bar`; lines that must reach a log too (one per finished
image, the training iterations) go through the logger or ``tqdm.write`` instead.
"""
from tqdm import tqdm


def progress_bar(iterable=None, show=True, **kwargs):
    """``tqdm(iterable, **kwargs)``, drawn only when ``show`` and its stream (stderr) is a terminal.

    tqdm's ``disable=None`` is that test: a bar redrawn with carriage returns is noise in a log file.
    """
    return tqdm(iterable, disable=None if show else True, **kwargs)
