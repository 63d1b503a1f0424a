"""Small helpers shared by the tools: writing images losslessly, output plans, errors, logging.

Images are listed and read by :mod:`moesr_arch.utils.image_io` (the package's one reader)."""
import logging
import os
import signal
import sys
from pathlib import Path

from moesr_arch.errors import UserError


# The shell's code for a command ended by SIGINT (128 + 2).
INTERRUPTED = 130


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to ``sys.stderr`` as it is at each record: the tools run in-process from tests and
    from other tools that redirect it, and a handler bound to the first stream would write to a closed file."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def get_tool_logger():
    """A console logger for the tools (BasicSR's own logger writes to run folders; tools have none)."""
    logger = logging.getLogger('moesr.tools')
    if not logger.handlers:
        handler = _StderrHandler()
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


def leave_interrupts_to_the_parent():
    """A pool worker's start. Ctrl-C reaches every process of the terminal's group: only the parent answers it
    (one line, :func:`guarded`) and ends the pool, whose SIGTERM then ends a worker by a normal exit, so a
    write it had begun removes its temporary file (a plain SIGTERM would leave it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(INTERRUPTED))


def worker_pool(processes):
    """A ``multiprocessing.Pool`` of ``processes`` workers that leave Ctrl-C to the parent."""
    from multiprocessing import Pool
    return Pool(processes, initializer=leave_interrupts_to_the_parent)


def run_parallel(work, items, n_thread, desc, unit='img'):
    """``[work(item) for item in items]`` with a progress bar, in ``n_thread`` processes when > 1.

    Results come back in the order of ``items``.
    """
    from moesr_arch.utils.progress import progress_bar
    items = list(items)
    with progress_bar(total=len(items), desc=desc, unit=unit) as progress:
        if n_thread <= 1 or len(items) <= 1:
            results = []
            for item in items:
                results.append(work(item))
                progress.update()
            return results
        with worker_pool(min(n_thread, len(items))) as pool:
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


def interrupted(prog):
    """Report Ctrl-C as one line and return :data:`INTERRUPTED`. Every file is written whole or not at all
    (:mod:`moesr_arch.utils.atomic`), so what was finished stays and no temporary is left."""
    print(f'{prog}: interrupted; the files finished so far are kept', file=sys.stderr)
    return INTERRUPTED


def guarded(main, args, prog='basicsr'):
    """``main(args)``, turning a user error into one line ``<prog>: error: <cause>`` and exit code 2, and
    Ctrl-C into one line and exit code 130."""
    try:
        return main(args)
    except USER_ERRORS as error:
        print(f'{prog}: error: {describe_error(error)}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted(prog)


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
    ``hint`` ends the message; ``clash_hint``, when given, replaces it for two sources of the run (what moves
    an output off an input, another folder or a suffix, moves both of two clashing outputs alike).
    """

    def __init__(self, inputs=()):
        self.claimed = {same_file_key(path): (Path(path), None) for path in inputs}

    def claim(self, target, source, hint='', clash_hint=None):
        key = same_file_key(target)
        if key in self.claimed:
            other, other_source = self.claimed[key]
            if other_source is None:
                raise OutputCollision(f'{source}: its output {target} would overwrite the input {other}{hint}')
            if Path(other_source) != Path(source):
                raise OutputCollision(f'{other_source} and {source} would both be written to {target}'
                                      f'{hint if clash_hint is None else clash_hint}')
        self.claimed[key] = (Path(target), source)
        return target


def add_speed_arguments(parser):
    """``--channels_last`` and ``--compile`` of ``basicsr infer`` and ``basicsr benchmark`` (the inference layer's
    :class:`moesr_arch.inference.Upscaler` applies them)."""
    from moesr_arch.inference.device import COMPILE_MODES
    parser.add_argument('--channels_last', action='store_true',
                        help='weights and tiles channels-last (NHWC in memory): often faster convolutions')
    parser.add_argument('--compile', choices=COMPILE_MODES, default='none',
                        help='torch.compile the network (plain networks; each new tile size compiles first, tens of '
                        'seconds on a CPU); outputs as without, within rounding (default: none)')


def standalone(doc, add_arguments, main, argv=None):
    """Run a tool as its own script: parser from the module docstring, then :func:`guarded` ``main``."""
    import argparse
    parser = argparse.ArgumentParser(description=doc.strip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return guarded(main, parser.parse_args(argv), parser.prog)
