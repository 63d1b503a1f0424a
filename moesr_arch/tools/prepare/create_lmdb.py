"""Pack an HR folder and its LR folders into LMDBs with identical keys (BasicSR's lmdb io_backend).

Each output ``<name>.lmdb`` holds the images as PNG bytes under the key ``<stem>`` (PNG files are stored
byte-for-byte after a decode check; other formats are re-encoded as PNG, EXIF rotation applied) and a
``meta_info.txt`` in BasicSR's format ``<stem>.png (h,w,c) <compress level>``. The map size is the sum over
all images (mixed sizes work) and grows if PNG re-encoding needs more. With ``--labels`` the YOLO label
files ``<stem>.txt`` are stored in ``<gt lmdb>/labels.json`` ({key: label text}), and ``--categories`` is
copied to ``<gt lmdb>/categories.yml``. Every LMDB is written as ``<name>.lmdb.partial`` and renamed when
complete, so an interrupted run never leaves a folder that passes for a finished LMDB.
"""
import json
import os
import shutil
from functools import partial
from pathlib import Path

import cv2
import lmdb

from moesr_arch.data.lmdb_util import CATEGORIES_FILE, LABELS_FILE
from moesr_arch.tools.common import error_text, get_tool_logger, report_problems, standalone, worker_pool
from moesr_arch.utils.image_io import list_images, read_raw
from moesr_arch.utils.atomic import atomic_write_text
from moesr_arch.utils.progress import progress_bar

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def encode_one(path, compress_level=1):
    """``(png bytes, (h, w, c), error message or None)`` for one image file."""
    try:
        content = Path(path).read_bytes()
        image = read_raw(path)
        h, w = image.shape[:2]
        c = 1 if image.ndim == 2 else image.shape[2]
        if not content.startswith(PNG_SIGNATURE):
            ok, encoded = cv2.imencode('.png', image, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
            if not ok:
                raise OSError('PNG encoding failed')
            content = encoded.tobytes()
        return content, (h, w, c), None
    except Exception as error:
        return None, None, error_text(path, error)


def image_keys(folder):
    """``{key: path}`` of a folder; keys are file stems (ASCII only: BasicSR's LMDB reader encodes keys as ASCII)."""
    keys = {}
    for path in list_images(folder):
        key = path.stem
        if not key.isascii():
            raise ValueError(f'{path}: LMDB keys must be ASCII (BasicSR reads keys with .encode("ascii")); '
                             'rename the file')
        if key in keys:
            raise ValueError(f'{folder}: {keys[key].name} and {path.name} would share the key {key!r}')
        keys[key] = path
    return keys


class LmdbWriter:
    """Writes ``(key, bytes)`` in batched transactions into ``<path>.partial``; :meth:`finish` renames it."""

    def __init__(self, path, map_size, batch=1000):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + '.partial')
        shutil.rmtree(self.partial, ignore_errors=True)  # leftovers of an interrupted run
        self.partial.mkdir(parents=True)
        self.map_size = int(map_size)
        self.env = lmdb.open(str(self.partial), map_size=self.map_size)
        self.batch, self.pending, self.meta = batch, [], []

    def put(self, key, content, shape, level):
        self.pending.append((key.encode('ascii'), content))
        self.meta.append(f'{key}.png ({shape[0]},{shape[1]},{shape[2]}) {level}')
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self):
        while self.pending:
            try:
                with self.env.begin(write=True) as txn:
                    for key, content in self.pending:
                        txn.put(key, content)
                self.pending = []
            except lmdb.MapFullError:  # an estimate can't foresee PNG re-encoding; grow and redo the batch
                self.map_size *= 2
                self.env.set_mapsize(self.map_size)

    def finish(self, extra_files=()):
        """Write everything into ``<path>.partial`` (still not in place: see :meth:`commit`)."""
        self.flush()
        self.env.sync()
        self.env.close()
        atomic_write_text(self.partial / 'meta_info.txt', '\n'.join(self.meta) + '\n')
        for name, text in extra_files:
            atomic_write_text(self.partial / name, text)

    def commit(self):
        os.replace(self.partial, self.path)

    def abort(self):
        self.env.close()  # closing twice is harmless in py-lmdb
        shutil.rmtree(self.partial, ignore_errors=True)


def estimate_map_size(paths):
    """Bytes to reserve: every file's size (PNG re-encoding of JPEGs is covered by a x4 margin) plus slack."""
    total = 0
    for path in paths:
        size = os.path.getsize(path)
        total += size if str(path).lower().endswith('.png') else 4 * size
    return int(total * 1.1) + (64 << 20)


def make_lmdb(folder, lmdb_path, keys=None, n_thread=1, compress_level=1, batch=1000, extra_files=(), desc=None,
              commit=True):
    """Pack the images of ``folder`` (or ``keys``: {key: path}) into ``lmdb_path``.

    Returns ``(error messages, writer)``. When an image fails nothing is kept; with ``commit=False`` a
    complete LMDB stays in ``<lmdb_path>.partial`` until the caller calls ``writer.commit()``.
    """
    keys = keys if keys is not None else image_keys(folder)
    lmdb_path = Path(lmdb_path)
    if not lmdb_path.name.endswith('.lmdb'):
        raise ValueError(f'{lmdb_path}: the LMDB folder name must end with .lmdb (BasicSR checks this)')
    if lmdb_path.exists():
        raise FileExistsError(f'{lmdb_path} exists; remove it or choose another name')
    ordered = sorted(keys)
    try:
        writer = LmdbWriter(lmdb_path, estimate_map_size(keys.values()), batch)
    except lmdb.Error as error:
        raise lmdb_os_error(lmdb_path, error) from None
    errors = []
    work = partial(encode_one, compress_level=compress_level)
    paths = [keys[k] for k in ordered]
    pool = None
    try:
        progress = progress_bar(total=len(ordered), desc=desc or lmdb_path.name, unit='img')
        if n_thread > 1:
            pool = worker_pool(n_thread)
            results = pool.imap(work, paths, chunksize=4)
        else:
            results = map(work, paths)
        for key, (content, shape, error) in zip(ordered, results):
            if error:
                errors.append(error)
            else:
                writer.put(key, content, shape, compress_level)
            progress.update()
        progress.close()
        if pool is not None:
            pool.close()
            pool.join()
        if errors:
            writer.abort()
        else:
            writer.finish(extra_files)
            if commit:
                writer.commit()
    except lmdb.Error as error:  # a full disk, a read-only folder: the operating system's reason, not a traceback
        writer.abort()
        raise lmdb_os_error(lmdb_path, error) from None
    except BaseException:
        writer.abort()
        if pool is not None:
            pool.terminate()
        raise
    return errors, writer


def lmdb_os_error(lmdb_path, error):
    """An ``lmdb.Error`` as an OSError naming the LMDB (py-lmdb's messages carry the OS reason as text)."""
    return OSError(f'{lmdb_path}: could not write the LMDB: {error}')


def commit_journal(gt_lmdb):
    """The file that lists a set of complete ``.partial`` LMDBs while they are renamed into place."""
    return Path(f'{gt_lmdb}.commit.json')


def commit_all(writers, gt_lmdb):
    """Rename every complete ``.partial`` into place, all or nothing even if killed half-way.

    Several renames cannot be one atomic step, so the list of renames is written first (atomically): a run
    killed between two renames leaves that journal, and the next run finishes the renames
    (:func:`finish_interrupted_commit`) instead of finding one LMDB of the set complete and the other not.
    """
    journal = commit_journal(gt_lmdb)
    atomic_write_text(journal, json.dumps([[str(w.partial.resolve()), str(w.path.resolve())] for w in writers]))
    done = []
    try:
        for writer in writers:
            writer.commit()
            done.append(writer)
    except BaseException:  # a rename refused (not a kill): put the renamed ones back, so none is in place
        for writer in done:
            os.replace(writer.path, writer.partial)
        journal.unlink()
        raise
    journal.unlink()


def finish_interrupted_commit(gt_lmdb):
    """Finish the renames a run killed inside :func:`commit_all` left undone; the LMDBs of that set."""
    journal = commit_journal(gt_lmdb)
    if not journal.exists():
        return []
    renames = json.loads(journal.read_text(encoding='utf-8'))
    for partial_path, final in renames:
        if os.path.exists(partial_path) and not os.path.exists(final):
            os.replace(partial_path, final)
    journal.unlink()
    finals = [final for _, final in renames if os.path.exists(final)]
    get_tool_logger().warning('finished the renames of an interrupted run; complete: ' + ', '.join(finals))
    return finals


def read_labels(label_folder, keys):
    """``({key: text}, warnings)`` from ``<label_folder>/<key>.txt``."""
    label_folder = Path(label_folder)
    if not label_folder.is_dir():
        raise FileNotFoundError(f'no such label folder: {label_folder}')
    labels, warnings = {}, []
    for path in sorted(label_folder.glob('*.txt')):
        if path.stem in keys:
            labels[path.stem] = path.read_text(encoding='utf-8')
        else:
            warnings.append(f'{path}: no image with key {path.stem!r}; label not stored')
    return labels, warnings


def _few(names, count=5):
    return str(names[:count]) + (f' and {len(names) - count} more' if len(names) > count else '')


def create_lmdb(gt, gt_lmdb, lq=(), lq_lmdb=(), labels=None, categories=None, n_thread=1, compress_level=1,
                batch=1000):
    """Create the GT LMDB and one LMDB per LR folder with identical keys; return error messages."""
    logger = get_tool_logger()
    if len(lq) != len(lq_lmdb):
        raise ValueError(f'give one --lq_lmdb per --lq folder (got {len(lq)} folders and {len(lq_lmdb)} outputs)')
    finished = finish_interrupted_commit(gt_lmdb)
    wanted = [str(Path(out).resolve()) for out in [gt_lmdb, *lq_lmdb]]
    if finished and sorted(finished) == sorted(wanted):
        return []  # the interrupted run had written every LMDB asked for; only its renames were missing
    gt_keys = image_keys(gt)
    jobs = [(gt, gt_lmdb, gt_keys)]
    for folder, out in zip(lq, lq_lmdb):
        keys = image_keys(folder)
        if set(keys) != set(gt_keys):
            missing, extra = sorted(set(gt_keys) - set(keys)), sorted(set(keys) - set(gt_keys))
            raise ValueError(f'{folder} and {gt} must hold the same names: missing in {folder}: {_few(missing)}; '
                             f'extra: {_few(extra)}')
        jobs.append((folder, out, keys))
    for _, out, _ in jobs:
        if Path(out).exists():
            raise FileExistsError(f'{out} exists; remove it or choose another name')
    extra_files = []
    if labels is not None:
        texts, warnings = read_labels(labels, gt_keys)
        for warning in warnings:
            logger.warning(warning)
        extra_files.append((LABELS_FILE, json.dumps(texts, indent=0, sort_keys=True)))
    if categories is not None:
        extra_files.append((CATEGORIES_FILE, Path(categories).read_text(encoding='utf-8')))
    writers = []
    try:
        for index, (folder, out, keys) in enumerate(jobs):
            errors, writer = make_lmdb(folder, out, keys, n_thread, compress_level, batch,
                                       extra_files if index == 0 else (), desc=Path(out).name, commit=False)
            writers.append(writer)
            if errors:
                return errors
        commit_all(writers, gt_lmdb)  # all or nothing: the set appears only when every LMDB is complete
        writers = []
        return []
    finally:
        for writer in writers:
            writer.abort()


def add_arguments(parser):
    parser.add_argument('--gt', required=True, help='folder of HR images')
    parser.add_argument('--gt_lmdb', required=True, help='output HR LMDB folder (name ends with .lmdb)')
    parser.add_argument('--lq', nargs='*', default=[], help='folder(s) of LR images with the same names')
    parser.add_argument('--lq_lmdb', nargs='*', default=[], help='output LMDB folder per --lq folder')
    parser.add_argument('--labels', help='folder of YOLO label files <name>.txt, stored in <gt_lmdb>/labels.json')
    parser.add_argument('--categories', help='categories file (id: name), copied to <gt_lmdb>/categories.yml')
    parser.add_argument('--n_thread', type=int, default=1, help='worker processes that read images (default: 1)')
    parser.add_argument('--compress_level', type=int, default=1, help='PNG level for re-encoded images (default: 1)')
    parser.add_argument('--batch', type=int, default=1000, help='images per LMDB transaction (default: 1000)')


def main(args):
    errors = create_lmdb(args.gt, args.gt_lmdb, args.lq, args.lq_lmdb, args.labels, args.categories, args.n_thread,
                         args.compress_level, args.batch)
    return report_problems(errors, '{count} image(s) could not be read; no LMDB was completed for the folder(s) '
                           'holding them', 'LMDB ready: ' + ', '.join([args.gt_lmdb] + list(args.lq_lmdb)))


def cli(argv=None):
    return standalone(__doc__, add_arguments, main, argv)
