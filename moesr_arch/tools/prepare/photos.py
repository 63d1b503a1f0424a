"""Build a photo corpus for SR training, the way DIV2K is built: from Debian's wallpaper photos or your own.

``basicsr prepare photos --output datasets/photos`` fetches ``lomiri-wallpapers-16.04``,
``lomiri-wallpapers-20.04`` and ``plasma-workspace-wallpapers`` with ``apt-get download`` (no install, no
root) and keeps the photographs listed in ``photos.tsv`` beside this module, one line per photo with its
split, scene, package, file, author and licence; the rest of those packages are drawings and renders.
``--input DIR`` takes the photos in DIR instead (a sub-folder holds the photos of one scene). Then:

1. ``<split>/HR/<name>.png``: each photo downscaled with the area filter to at most ``--max_side`` (2040)
   pixels on its long side, as DIV2K, and cropped at the bottom/right to a multiple of every scale;
2. ``val/LR_bicubic/X<s>/<name>.png``: MATLAB-bicubic LR of the validation photos (``generate_lr``);
3. ``train_sub/HR/<name>_sNNN.png``: 480x480 sub-images every 240 pixels (``extract_subimages``);
4. ``train_sub/LR_bicubic/X<s>/<name>_sNNN.png``: the sub-images' LR (``generate_lr``);
5. ``lmdb/train_sub_HR.lmdb`` and ``lmdb/train_sub_LR_X<s>.lmdb`` (``create_lmdb``).

``photos.tsv`` in the output lists the photos used and the settings; ``licenses/`` holds the packages'
copyright files and ``packages/`` the downloaded .deb files. A re-run reuses what is complete: every file
is written atomically, each of steps 2-5 is built in a hidden folder and renamed into place when complete.
"""
import io
import math
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import astuple, dataclass
from pathlib import Path

import cv2
import numpy as np

from moesr_arch.errors import UserError
from moesr_arch.tools.common import get_tool_logger, standalone
from moesr_arch.tools.prepare.create_lmdb import create_lmdb
from moesr_arch.tools.prepare.extract_subimages import extract_subimages
from moesr_arch.tools.prepare.generate_lr import generate_lr
from moesr_arch.utils.atomic import atomic_write_bytes, atomic_write_text, make_folders
from moesr_arch.utils.image_io import decode_raw, file_bytes, is_image_file, split_channels, write_png

PHOTO_LIST = Path(__file__).with_name('photos.tsv')
COLUMNS = ('name', 'split', 'scene', 'package', 'file', 'author', 'licence')
SPLITS = ('train', 'val')
UNKNOWN = '-'  # package, author and licence of a photo given with --input


class PhotoError(UserError):
    """The photos can't be had or listed as asked (no apt-get, no registry, a bad list, another corpus)."""


@dataclass(frozen=True)
class Photo:
    """One line of a photo list: ``file`` is a path inside ``package``, or inside the --input folder."""
    name: str
    split: str
    scene: str
    package: str
    file: str
    author: str = UNKNOWN
    licence: str = UNKNOWN


def read_photo_list(path=PHOTO_LIST):
    """The photos of a tab-separated list (``#`` lines are comments), split checked."""
    photos = []
    for number, line in enumerate(Path(path).read_text(encoding='utf-8').splitlines(), 1):
        if not line.strip() or line.startswith('#'):
            continue
        fields = line.split('\t')
        if len(fields) != len(COLUMNS):
            raise PhotoError(f'{path}:{number}: {len(fields)} tab-separated fields, expected {len(COLUMNS)} '
                             f'({", ".join(COLUMNS)})')
        photos.append(Photo(*fields))
    check_split(photos, path)
    return photos


def check_split(photos, where):
    """Names unique and ASCII (LMDB keys), splits known, and no scene on both sides of the split."""
    names, scene_splits = {}, {}
    for photo in photos:
        if photo.split not in SPLITS:
            raise PhotoError(f'{where}: {photo.name}: split {photo.split!r} is not one of {", ".join(SPLITS)}')
        if not photo.name.isascii() or not photo.name or '/' in photo.name:
            raise PhotoError(f'{where}: {photo.file}: the name {photo.name!r} must be ASCII (it becomes an LMDB '
                             'key); rename the file')
        if photo.name.casefold() in names:
            raise PhotoError(f'{where}: {names[photo.name.casefold()].file} and {photo.file} have one name '
                             f'{photo.name!r}; rename one')
        names[photo.name.casefold()] = photo
        other = scene_splits.setdefault(photo.scene, photo)
        if other.split != photo.split:
            raise PhotoError(f'{where}: {other.name} ({other.split}) and {photo.name} ({photo.split}) show one scene '
                             f'{photo.scene!r}: a scene must be on one side of the split')


def photos_from_folder(folder, val_count=None):
    """The photos of ``folder``: each image file is a scene, each sub-folder one scene of several photos
    (named ``<sub-folder>_<stem>``). ``val_count`` scenes (default: one in eight, at least one when there
    are two), evenly spaced in name order, are the validation set."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'--input {folder}: no such folder')
    scenes = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            files = sorted(p for p in entry.iterdir() if p.is_file() and is_image_file(p.name))
            scenes[entry.name] = [(f'{entry.name}_{p.stem}', p) for p in files]
        elif is_image_file(entry.name):
            scenes.setdefault(entry.stem, []).append((entry.stem, entry))
    scenes = {scene: files for scene, files in scenes.items() if files}
    if not scenes:
        raise PhotoError(f'--input {folder}: no image files')
    order = sorted(scenes)
    if val_count is None:
        val_count = max(1, round(len(order) / 8)) if len(order) >= 2 else 0
    if not 0 <= val_count < len(order):
        raise PhotoError(f'--val_count {val_count}: {folder} has {len(order)} scene(s) and training needs one')
    val = {order[int((i + 0.5) * len(order) / val_count)] for i in range(val_count)}
    photos = [Photo(name, 'val' if scene in val else 'train', scene, UNKNOWN, path.relative_to(folder).as_posix())
              for scene in order for name, path in scenes[scene]]
    check_split(photos, folder)
    return photos


# ---------------------------------------------------------------------------------------------------------
# The packages: download, read the listed files, check their licences.

def download_packages(packages, folder):
    """``apt-get download`` the packages into ``folder``; each .deb is moved in only when complete."""
    if shutil.which('apt-get') is None:
        raise PhotoError('apt-get not found: the photo packages come from a Debian or Ubuntu package registry; '
                         'on this system give --input DIR, a folder of your own photos')
    make_folders(folder)
    with tempfile.TemporaryDirectory(prefix='.download-', dir=folder) as tmp:
        proc = subprocess.run(['apt-get', 'download', *packages], cwd=tmp, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines() if line.startswith('E:')] or [proc.stderr.strip()]
            raise PhotoError(f'apt-get download {" ".join(packages)} failed ({errors[-1]}): is a package registry '
                             'reachable? Run apt-get update, or give --input DIR, a folder of your own photos')
        for deb in Path(tmp).glob('*.deb'):
            os.replace(deb, Path(folder) / deb.name)


def find_deb(folder, package):
    """The downloaded .deb of ``package`` in ``folder``, or None."""
    found = sorted(Path(folder).glob(f'{package}_*.deb')) if Path(folder).is_dir() else []
    if len(found) > 1:
        raise PhotoError(f'{folder}: several .deb files of {package} ({", ".join(p.name for p in found)}); keep one')
    return found[0] if found else None


def ar_member(deb, prefix):
    """The bytes of the first member of the ar archive ``deb`` whose name starts with ``prefix``, and its name."""
    with open(deb, 'rb') as f:
        if f.read(8) != b'!<arch>\n':
            raise PhotoError(f'{deb}: not a .deb (ar) archive')
        while True:
            header = f.read(60)
            if len(header) < 60:
                raise PhotoError(f'{deb}: no {prefix}* member')
            name, size = header[:16].decode('ascii').strip().rstrip('/'), int(header[48:58])
            if name.startswith(prefix):
                return f.read(size), name
            f.seek(size + size % 2, os.SEEK_CUR)  # members are padded to an even size


def read_deb_files(deb, wanted, photo_list=PHOTO_LIST):
    """``{path: bytes}`` of the regular files ``wanted`` (paths as ``usr/share/...``) in the data of ``deb``.

    The data archive comes from ``dpkg-deb --fsys-tarfile`` where dpkg is installed (any compression), else
    from Python's tarfile (gz, bz2, xz); only the wanted files are read, nothing else is unpacked.
    """
    wanted, found = set(wanted), {}

    def collect(tar):
        for member in tar:
            name = member.name[2:] if member.name.startswith('./') else member.name
            if name in wanted:
                if not member.isfile():
                    raise PhotoError(f'{deb}: {name} is not a regular file')
                found[name] = tar.extractfile(member).read()

    if shutil.which('dpkg-deb'):
        with subprocess.Popen(['dpkg-deb', '--fsys-tarfile', str(deb)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) as proc:
            try:
                with tarfile.open(fileobj=proc.stdout, mode='r|') as tar:
                    collect(tar)
                proc.stdout.read()  # the end-of-archive padding, so that dpkg-deb is not killed by a closed pipe
            except BaseException:
                proc.kill()
                raise
            if proc.wait() != 0:
                raise PhotoError(f'{deb}: dpkg-deb --fsys-tarfile failed: {proc.stderr.read().decode().strip()}')
    else:
        data, member = ar_member(deb, 'data.tar')
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode='r:*') as tar:
                collect(tar)
        except tarfile.ReadError as error:
            raise PhotoError(f'{deb}: Python cannot read its {member} ({error}); install dpkg (dpkg-deb) or give '
                             '--input DIR') from None
    missing = sorted(wanted - set(found))
    if missing:
        raise PhotoError(f'{deb} has no {", ".join(missing)}: {photo_list} was made for the package versions '
                         'its header names')
    return found


def copyright_licence(text, file):
    """The licence a Debian copyright file gives the installed ``file``: the last stanza whose ``Files`` names
    it (source paths are compared by file name), else the ``Files: *`` stanza."""
    named, everything = None, None
    for stanza in text.split('\n\n'):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line[:1].isspace() and key:
                continue  # a continuation line (licence text)
            key, _, value = line.partition(':')
            fields[key] = value.strip()
        if 'Files' not in fields or 'License' not in fields:
            continue
        patterns = fields['Files'].split()
        if '*' in patterns:
            everything = fields['License']
        if any(not any(c in p for c in '*?[') and Path(p).name == Path(file).name for p in patterns):
            named = fields['License']
    return named or everything


def package_photos(photos, output, download, photo_list):
    """``{name: encoded bytes}`` of the listed photos, read from the packages (downloaded when absent).

    Each package's copyright file goes to ``output/licenses/<package>.copyright``, and each photo's licence
    in the list must be what that file says.
    """
    folder = Path(output) / 'packages'
    packages = sorted({photo.package for photo in photos})
    absent = [package for package in packages if find_deb(folder, package) is None]
    if absent:
        get_tool_logger().info(f'downloading {", ".join(absent)} with apt-get into {folder}')
        download(absent, folder)
    contents = {}
    for package in packages:
        deb = find_deb(folder, package)
        if deb is None:
            raise PhotoError(f'apt-get download {package} gave no {package}_*.deb in {folder}')
        copyright_file = f'usr/share/doc/{package}/copyright'
        files = read_deb_files(deb, [copyright_file] + [p.file for p in photos if p.package == package], photo_list)
        copyright_text = files[copyright_file].decode('utf-8')
        atomic_write_bytes(Path(output) / 'licenses' / f'{package}.copyright', files[copyright_file])
        for photo in (p for p in photos if p.package == package):
            licence = copyright_licence(copyright_text, photo.file)
            if licence != photo.licence:
                raise PhotoError(f'{deb.name}: its copyright file gives {photo.file} the licence {licence}, '
                                 f'{photo_list} says {photo.licence}; the list needs updating')
            contents[photo.name] = files[photo.file]
    return contents


# ---------------------------------------------------------------------------------------------------------
# The corpus.

def fit_photo(image, max_side, multiple):
    """8-bit BGR ``image`` downscaled (area filter) to at most ``max_side`` pixels on its long side, then cropped
    at the bottom/right to a multiple of ``multiple``."""
    colour, _, _ = split_channels(image)
    if colour.dtype == np.uint16:
        colour = np.round(colour / 257.).astype(np.uint8)
    h, w = colour.shape[:2]
    if max(h, w) > max_side:
        factor = max_side / max(h, w)
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        colour = cv2.resize(colour, size, interpolation=cv2.INTER_AREA)
        h, w = colour.shape[:2]
    if h < multiple or w < multiple:
        raise ValueError(f'{w}x{h} is smaller than {multiple}, the multiple of every scale')
    return colour[:h - h % multiple, :w - w % multiple]


def manifest_text(photos, settings):
    lines = ['# The photos of this corpus (basicsr prepare photos) and its settings; licences: licenses/',
             f'# settings: {settings}', '# ' + '\t'.join(COLUMNS)]
    return '\n'.join(lines + ['\t'.join(astuple(photo)) for photo in photos]) + '\n'


def claim_output(output, text):
    """Write the manifest of a new corpus; refuse a folder that holds a corpus of other photos or settings."""
    manifest = Path(output) / 'photos.tsv'
    if manifest.is_file():
        if manifest.read_text(encoding='utf-8') != text:
            raise PhotoError(f'{output} holds a corpus of other photos or settings ({manifest} differs); give a new '
                             '--output or delete it')
    elif Path(output).is_dir() and any(p.name != 'packages' for p in Path(output).iterdir()):
        raise PhotoError(f'{output} exists and holds no {manifest.name}; give a new --output')
    else:
        atomic_write_text(manifest, text)


def make_hr(photos, output, read_source, max_side, multiple):
    """``<split>/HR/<name>.png`` of every photo that has none yet."""
    from tqdm import tqdm
    missing = [photo for photo in photos if not hr_path(output, photo).is_file()]
    if not missing:
        get_tool_logger().info(f'reusing the {len(photos)} HR photos in {output}/{{train,val}}/HR')
        return
    sources = read_source(missing)
    for photo in tqdm(missing, desc='photos', unit='img'):
        where = f'{photo.package}:{photo.file}' if photo.package != UNKNOWN else photo.file
        try:
            hr = fit_photo(decode_raw(sources[photo.name], where), max_side, multiple)
        except ValueError as error:
            raise PhotoError(str(error) if where in str(error) else f'{where}: {error}') from None
        write_png(hr_path(output, photo), hr)


def hr_path(output, photo):
    return Path(output) / photo.split / 'HR' / f'{photo.name}.png'


def stage(final, build):
    """``build(staging)`` into a hidden folder beside ``final``, then rename what it returns to ``final``;
    nothing to do when ``final`` exists (a complete earlier run)."""
    final = Path(final)
    if final.exists():
        get_tool_logger().info(f'reusing {final}')
        return
    staging = final.with_name(f'.{final.name}.partial')
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted run
    built = build(staging)
    os.replace(built, final)
    shutil.rmtree(staging, ignore_errors=True)


def raise_failures(failures, what):
    if failures:
        raise PhotoError(f'{what}: {len(failures)} image(s) failed, first: {failures[0]}')


def lr_stage(hr_folder, final, scales, n_thread):
    def build(staging):
        raise_failures(generate_lr(hr_folder, staging, scales, n_thread, hr_mod=False), f'LR of {hr_folder}')
        return staging / 'LR_bicubic'
    stage(final, build)


def build_corpus(output, input_folder=None, val_count=None, scales=(2, 3, 4), max_side=2040, crop_size=480,
                 step=240, n_thread=1, photo_list=PHOTO_LIST, download=download_packages):
    """Build (or finish) the corpus in ``output``; return ``(photos, number of training sub-images)``."""
    output = Path(output)
    scales = sorted(set(int(s) for s in scales))
    multiple = math.lcm(*scales)
    if crop_size % multiple:
        raise PhotoError(f'--crop_size {crop_size} must be a multiple of {multiple} (every scale), so that each '
                         'sub-image has exact LR partners')
    if input_folder is not None:
        photos = photos_from_folder(input_folder, val_count)

        def read_source(missing):
            return {photo.name: file_bytes(Path(input_folder) / photo.file) for photo in missing}
    else:
        if val_count is not None:
            raise PhotoError(f'--val_count goes with --input; the packages\' photos are split in {photo_list}')
        photos = read_photo_list(photo_list)

        def read_source(missing):
            return package_photos(missing, output, download, photo_list)
    settings = (f'max_side={max_side} multiple={multiple} crop_size={crop_size} step={step} '
                f'scales={",".join(map(str, scales))}')
    claim_output(output, manifest_text(photos, settings))
    make_hr(photos, output, read_source, max_side, multiple)
    if any(photo.split == 'val' for photo in photos):
        lr_stage(output / 'val' / 'HR', output / 'val' / 'LR_bicubic', scales, n_thread)

    def cut(staging):
        _, failures = extract_subimages(output / 'train' / 'HR', staging, crop_size, step, n_thread=n_thread)
        raise_failures(failures, 'sub-images')
        return staging
    sub = output / 'train_sub'
    stage(sub / 'HR', cut)
    lr_stage(sub / 'HR', sub / 'LR_bicubic', scales, n_thread)
    lmdbs = [output / 'lmdb' / 'train_sub_HR.lmdb'] + [output / 'lmdb' / f'train_sub_LR_X{s}.lmdb' for s in scales]
    if all(path.exists() for path in lmdbs):
        get_tool_logger().info(f'reusing {output / "lmdb"}')
    else:
        raise_failures(create_lmdb(sub / 'HR', lmdbs[0], [sub / 'LR_bicubic' / f'X{s}' for s in scales], lmdbs[1:],
                                   n_thread=n_thread), 'LMDB')
    return photos, len(list((sub / 'HR').iterdir()))


def add_arguments(parser):
    parser.add_argument('-o', '--output', required=True, help='corpus folder, e.g. datasets/photos')
    parser.add_argument('-i', '--input', help='a folder of your own photos instead of the Debian packages '
                        '(a sub-folder: the photos of one scene)')
    parser.add_argument('--val_count', type=int, help='with --input: validation scenes (default: one in eight)')
    parser.add_argument('-s', '--scale', type=int, nargs='+', default=[2, 3, 4], help='LR scales (default: 2 3 4)')
    parser.add_argument('--max_side', type=int, default=2040, help='long side of the HR photos, as DIV2K (2040)')
    parser.add_argument('--crop_size', type=int, default=480, help='HR sub-image size (default: 480, DIV2K recipe)')
    parser.add_argument('--step', type=int, default=240, help='HR step between sub-images (default: 240)')
    parser.add_argument('--n_thread', type=int, default=min(4, os.cpu_count() or 1),
                        help='worker processes (default: the CPU count, at most 4)')


def main(args):
    photos, count = build_corpus(args.output, args.input, args.val_count, args.scale, args.max_side, args.crop_size,
                                 args.step, args.n_thread)
    train = sum(photo.split == 'train' for photo in photos)
    get_tool_logger().info(f'{len(photos)} photos ({train} train, {len(photos) - train} val), {count} training '
                           f'sub-images: {args.output}')
    return 0


def cli(argv=None):
    return standalone(__doc__, add_arguments, main, argv)
