"""Small helpers shared by the tools: writing images losslessly, output plans, errors, logging.

Images are listed and read by :mod:`moesr_arch.utils.image_io` (the package's one reader)."""
import logging
import os
import sys
from pathlib import Path

from moesr_arch.errors import UserError


def get_tool_logger():
    """A console logger for the tools (BasicSR's own logger writes to run folders; tools have none)."""
    logger = logging.getLogger('moesr.tools')
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter('%(levelname)s: %(message)s'))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def report_problems(problems, summary, success):
    """Log each problem, then ``summary`` (with ``{count}``) or ``success``; the tool's exit code."""
    logger = get_tool_logger()
    for problem in problems:
        logger.error(problem)
    if problems:
        logger.error(summary.format(count=len(problems)))
        return 1
    logger.info(success)
    return 0


def run_parallel(work, items, n_thread, desc, unit='img'):
    """``[work(item) for item in items]`` with a progress bar, in ``n_thread`` processes when > 1.

    Results come back in the order of ``items``.
    """
    from multiprocessing import Pool

    from tqdm import tqdm
    items = list(items)
    with tqdm(total=len(items), desc=desc, unit=unit) as progress:
        if n_thread <= 1 or len(items) <= 1:
            results = []
            for item in items:
                results.append(work(item))
                progress.update()
            return results
        with Pool(min(n_thread, len(items))) as pool:
            results = []
            for result in pool.imap(work, items):
                results.append(result)
                progress.update()
            return results


# What the command line reports as one line: the user's mistakes and the operating system's refusals.
# Anything else is a bug in the package and keeps its traceback.
USER_ERRORS = (OSError, ValueError, UserError)


def describe_error(error):
    """One line naming the cause: ``<file>: <OS reason>`` for OSErrors, the message otherwise."""
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
        if error.filename is not None:
            text = f'{error.filename}: {text}'
            if error.filename2 is not None:
                text += f' (-> {error.filename2})'
    else:
        text = str(error) or type(error).__name__
    return ' '.join(text.split('\n'))


def error_text(path, error):
    """``error`` as a message that names ``path`` once (and the exception type when it is not a user error)."""
    text = describe_error(error)
    if not isinstance(error, USER_ERRORS):  # a bug, not bad input: say what kind of failure it was
        text = f'{type(error).__name__}: {text}'
    return text if str(path) in text else f'{path}: {text}'


def guarded(main, args, prog='basicsr'):
    """``main(args)``, turning a user error into one line ``<prog>: error: <cause>`` and exit code 2."""
    try:
        return main(args)
    except USER_ERRORS as error:
        print(f'{prog}: error: {describe_error(error)}', file=sys.stderr)
        return 2


class OutputCollision(ValueError):
    """Two outputs of a run, or an output and an input, are the same file."""


def same_file_key(path):
    """Identity of a path for collision checks: absolute, symlinks resolved, case folded (a case-insensitive
    file system, e.g. on macOS or Windows, maps ``a.PNG`` and ``A.png`` to one file)."""
    return os.path.normcase(os.path.realpath(os.path.abspath(path))).casefold()


class OutputPlan:
    """Every target of a run, worked out before any work starts.

    ``claim(target, source)`` raises :class:`OutputCollision` naming both files when ``target`` is an input
    of the run or was already claimed for another source, so nothing is written before the clash is known.
    """

    def __init__(self, inputs=()):
        self.claimed = {same_file_key(path): (Path(path), None) for path in inputs}

    def claim(self, target, source, hint=''):
        key = same_file_key(target)
        if key in self.claimed:
            other, other_source = self.claimed[key]
            if other_source is None:
                raise OutputCollision(f'{source}: its output {target} would overwrite the input {other}{hint}')
            if Path(other_source) != Path(source):
                raise OutputCollision(f'{other_source} and {source} would both be written to {target}{hint}')
        self.claimed[key] = (Path(target), source)
        return target


def standalone(doc, add_arguments, main, argv=None):
    """Run a tool as its own script: parser from the module docstring, then :func:`guarded` ``main``."""
    import argparse
    parser = argparse.ArgumentParser(description=doc.strip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return guarded(main, parser.parse_args(argv), parser.prog)
