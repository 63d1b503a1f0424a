"""Reading the LMDB folders written by ``basicsr prepare create_lmdb`` (and BasicSR's own).

An image LMDB is a folder ``<name>.lmdb`` with ``data.mdb``, ``lock.mdb`` and ``meta_info.txt`` (one line
per image, BasicSR's format ``<key>.png (<h>,<w>,<c>) <compress level>``). BasicSR takes the key as the
text before the FIRST dot, so ``img.v2.png`` becomes ``img``; here the key is everything before the last
``.png``, so names with extra dots (and spaces) work.

Category labels live beside the images in ``<name>.lmdb/labels.json``: a JSON object mapping each key to
the text of its YOLO label file (``class x1 y1 x2 y2 ...`` polygons or ``class cx cy w h`` boxes, one object
per line, coordinates normalised to [0, 1]); a key without an entry has no labelled object (all
background). ``<name>.lmdb/categories.yml`` (category id: name), when present, is the categories file.
"""
import json
import os
import re

_META_LINE = re.compile(r'^(?P<key>.+)\.png \((?P<h>\d+),(?P<w>\d+),(?P<c>\d+)\)(?: (?P<level>-?\d+))?$')

LABELS_FILE = 'labels.json'
CATEGORIES_FILE = 'categories.yml'


def read_meta_info(lmdb_path):
    """``[(key, (h, w, c))]`` from ``<lmdb_path>/meta_info.txt``; errors name the file and line."""
    meta_path = os.path.join(lmdb_path, 'meta_info.txt')
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f'{lmdb_path}: not an image LMDB (no meta_info.txt); an interrupted '
                                'create_lmdb leaves only <name>.lmdb.partial')
    entries = []
    with open(meta_path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if not line.strip():
                continue
            match = _META_LINE.match(line)
            if match is None:
                raise ValueError(f'{meta_path}:{number}: expected "<key>.png (h,w,c) level", got {line!r}')
            entries.append((match['key'], (int(match['h']), int(match['w']), int(match['c']))))
    return entries


def read_keys(lmdb_path):
    """The image keys of an LMDB folder, in meta_info order."""
    return [key for key, _ in read_meta_info(lmdb_path)]


def paired_paths_from_lmdb(gt_lmdb, lq_lmdb):
    """``[{'gt_path': key, 'lq_path': key}]`` for two LMDBs with the same keys (dots in keys allowed).

    Replaces BasicSR's ``paired_paths_from_lmdb``, which cuts keys at the first dot.
    """
    for path in (gt_lmdb, lq_lmdb):
        if not str(path).endswith('.lmdb'):
            raise ValueError(f'{path}: an LMDB folder name ends with .lmdb')
    gt_keys, lq_keys = read_keys(gt_lmdb), read_keys(lq_lmdb)
    if set(gt_keys) != set(lq_keys):
        only_gt = sorted(set(gt_keys) - set(lq_keys))[:5]
        only_lq = sorted(set(lq_keys) - set(gt_keys))[:5]
        raise ValueError(f'{gt_lmdb} and {lq_lmdb} hold different keys (only in GT: {only_gt}, only in LQ: '
                         f'{only_lq})')
    return [{'gt_path': key, 'lq_path': key} for key in sorted(gt_keys)]


def read_lmdb_labels(lmdb_path):
    """``{key: YOLO label text}`` from ``<lmdb_path>/labels.json`` ({} when the LMDB has no labels)."""
    path = os.path.join(lmdb_path, LABELS_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding='utf-8') as f:
        try:
            labels = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f'{path}: not valid JSON: {error}') from error
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ValueError(f'{path}: expected a JSON object {{key: label text}}')
    return labels
