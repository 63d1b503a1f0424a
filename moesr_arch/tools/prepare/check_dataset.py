"""Check a paired SR dataset (folders or LMDBs): missing pairs, size mismatches, corrupt files, bad labels.

Every HR image must decode and have an LR partner (same stem, or ``--filename_tmpl``) of exactly
``floor(HR / scale)`` pixels, and no LR image may lack its HR. With ``--labels`` (a folder of YOLO label
files; an HR LMDB's own ``labels.json`` is read automatically) every label file must parse the way the
datasets read it (``<category id>`` plus 4 box numbers or at least 3 polygon points, all in [0, 1], ids
from ``--categories``; every bad line is reported) and belong to an image. Prints each problem and exits
non-zero if there is any.
"""
import sys
from pathlib import Path

import cv2
import numpy as np

from moesr_arch.data.categories import load_categories
from moesr_arch.data.category_labels import label_problems
from moesr_arch.data.lmdb_util import read_lmdb_labels, read_meta_info
from moesr_arch.tools.common import error_text, report_problems, standalone
from moesr_arch.utils.image_io import list_images, read_raw
from moesr_arch.utils.progress import progress_bar


class FolderSource:
    """Images of a folder by stem."""

    def __init__(self, folder):
        self.name = str(folder)
        self.paths, self.problems = {}, []
        # Broken or looping symbolic links are listed: reading them reports the reason (instead of their
        # partners being reported as orphans).
        try:
            paths = list_images(folder)
        except ValueError as error:  # a folder without images is a problem of the dataset, not a clean one
            self.problems.append(str(error))
            paths = []
        for path in paths:
            if path.stem in self.paths:
                self.problems.append(f'{self.paths[path.stem]} and {path}: two images for one stem '
                                     f'{path.stem!r}; the datasets would pair only one of them')
                continue
            self.paths[path.stem] = path

    def keys(self):
        return set(self.paths)

    def shape(self, key):
        image = read_raw(self.paths[key])
        return image.shape[:2]

    def where(self, key):
        return str(self.paths[key])


class LmdbSource:
    """Images of an LMDB folder by key (decoded to check them)."""

    def __init__(self, path):
        import lmdb
        self.name = str(path)
        self.problems = []
        self.meta = dict(read_meta_info(path))
        if not self.meta:
            self.problems.append(f'{path}: no images (its meta_info.txt lists none)')
        self.env = lmdb.open(str(path), readonly=True, lock=False, readahead=False)

    def keys(self):
        return set(self.meta)

    def shape(self, key):
        with self.env.begin() as txn:
            content = txn.get(key.encode('ascii'))
        if content is None:
            raise ValueError(f'{self.where(key)}: listed in meta_info.txt but missing from the database')
        image = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f'{self.where(key)}: stored bytes are not a readable image')
        h, w, c = self.meta[key]
        if image.shape[:2] != (h, w):
            raise ValueError(f'{self.where(key)}: meta_info.txt says {w}x{h} but the image is '
                             f'{image.shape[1]}x{image.shape[0]}')
        return image.shape[:2]

    def where(self, key):
        return f'{self.name}[{key}]'


def open_source(path):
    return LmdbSource(path) if str(path).rstrip('/').endswith('.lmdb') else FolderSource(path)


def check_dataset(gt, lq=(), scales=(), labels=None, categories=None, filename_tmpl='{}', gt_size=None):
    """All problems found, as messages (empty list: the dataset is fine).

    ``gt_size`` (the training crop) also reports HR images smaller than it, which training would meet
    only when it draws them.
    """
    if len(lq) != len(scales):
        raise ValueError(f'give one --scale per --lq folder (got {len(lq)} folders and {len(scales)} scales)')
    problems = []
    gt_source = open_source(gt)
    lq_sources = [(open_source(folder), int(scale)) for folder, scale in zip(lq, scales)]
    num_categories = len(load_categories(categories)) if categories else None
    gt_keys = gt_source.keys()
    for source in [gt_source] + [source for source, _ in lq_sources]:
        problems += source.problems
    for source, _ in lq_sources:
        expected = {filename_tmpl.format(k) for k in gt_keys}
        for key in sorted(source.keys() - expected):
            problems.append(f'{source.where(key)}: LR image without an HR partner in {gt}')
    for key in progress_bar(sorted(gt_keys), desc='check_dataset', unit='img'):
        try:
            h, w = gt_source.shape(key)
        except Exception as error:
            problems.append(error_text(gt_source.where(key), error))
            continue
        if gt_size and min(h, w) < gt_size:
            problems.append(f'{gt_source.where(key)}: {w}x{h} is smaller than gt_size {gt_size}; training cannot '
                            'crop it')
        for source, scale in lq_sources:
            lq_key = filename_tmpl.format(key)
            if lq_key not in source.keys():
                problems.append(f'{gt_source.where(key)}: no LR partner {lq_key} in {source.name}')
                continue
            try:
                lh, lw = source.shape(lq_key)
            except Exception as error:
                problems.append(error_text(source.where(lq_key), error))
                continue
            if (lh, lw) != (h // scale, w // scale):
                problems.append(f'{source.where(lq_key)}: size mismatch at x{scale}: LR is {lw}x{lh} but HR is '
                                f'{w}x{h} (expected {w // scale}x{h // scale})')
    label_texts = {}
    if labels is not None:
        folder = Path(labels)
        if not folder.is_dir():
            problems.append(f'{labels}: no such label folder')
        else:
            label_texts = {p.stem: (str(p), p.read_text(encoding='utf-8')) for p in sorted(folder.glob('*.txt'))}
    elif isinstance(gt_source, LmdbSource):
        label_texts = {k: (f'{gt}/labels.json[{k}]', t) for k, t in read_lmdb_labels(gt).items()}
    for key, (where, text) in sorted(label_texts.items()):
        if key not in gt_keys:
            problems.append(f'{where}: label file without an HR image {key}')
        problems += label_problems(text, where, num_categories or sys.maxsize)
    return problems


def add_arguments(parser):
    parser.add_argument('--gt', required=True, help='HR folder or HR .lmdb')
    parser.add_argument('--lq', nargs='*', default=[], help='LR folder(s) or .lmdb(s)')
    parser.add_argument('-s', '--scale', type=int, nargs='*', default=[], help='scale of each --lq')
    parser.add_argument('--labels', help='folder of YOLO label files <name>.txt')
    parser.add_argument('--categories', help='categories file (id: name) the label ids must come from')
    parser.add_argument('--filename_tmpl', default='{}', help="LR stem from HR stem (default: '{}')")
    parser.add_argument('--gt_size', type=int, help='training crop size: HR images smaller than it are reported')


def main(args):
    problems = check_dataset(args.gt, args.lq, args.scale, args.labels, args.categories, args.filename_tmpl,
                             args.gt_size)
    return report_problems(problems, '{count} problem(s) found', 'no problems found')


def cli(argv=None):
    return standalone(__doc__, add_arguments, main, argv)
