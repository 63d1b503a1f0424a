"""Build ``datasets/demo``: a small paired SR set from real photos shipped inside installed packages.

Photos come from scikit-image (``skimage/data``) and ultralytics (``ultralytics/assets``); nothing is
downloaded. Each HR image is cropped to a multiple of 12 so that x2, x3 and x4 LR images (MATLAB-style
bicubic, as in the SR literature) have exact sizes. Category labels drawn by hand for these photos
(``scripts/data_preparation/demo_labels``) are copied beside the images.

Layout::

    datasets/demo/{train,val}/HR/<name>.png
    datasets/demo/{train,val}/LR_bicubic/X{2,3,4}/<name>.png
    datasets/demo/{train,val}/labels/<name>.txt        (YOLO polygons, when drawn)
    datasets/demo/categories.yml
    datasets/demo/meta_info/demo_{train,val}_HR.txt     (BasicSR format: name.png (h,w,c))

Usage: ``python scripts/data_preparation/make_demo_dataset.py [--output datasets/demo]``
"""
import argparse
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
SCALES = (2, 3, 4)
MULTIPLE = 12

# name: (package, file, split, (y0, y1, x0, x1) crop in source pixels or None, downscale factor)
# Downscaled photos are resized with area averaging (anti-aliased) before becoming HR.
PHOTOS = {
    'astronaut': ('skimage', 'astronaut.png', 'train', None, 1),
    'coffee': ('skimage', 'coffee.png', 'train', None, 1),
    'rocket': ('skimage', 'rocket.jpg', 'train', None, 1),
    'motorcycle': ('skimage', 'motorcycle_left.png', 'train', None, 1),
    'bus': ('ultralytics', 'bus.jpg', 'train', None, 2),
    'chelsea_left': ('skimage', 'chelsea.png', 'train', (0, 300, 0, 228), 1),
    'zidane': ('ultralytics', 'zidane.jpg', 'val', None, 2),
    'motorcycle_right': ('skimage', 'motorcycle_right.png', 'val', None, 2),
    'chelsea_right': ('skimage', 'chelsea.png', 'val', (0, 300, 228, 451), 1),
}

CATEGORIES = {0: 'people', 1: 'cat', 2: 'vehicle'}


def package_folder(package):
    if package == 'skimage':
        import skimage
        return Path(skimage.__file__).parent / 'data'
    import ultralytics
    return Path(ultralytics.__file__).parent / 'assets'


def load_photo(package, file_name, crop, downscale):
    path = package_folder(package) / file_name
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f'{path}: photo missing; is {package} installed?')
    if crop is not None:
        y0, y1, x0, x1 = crop
        image = image[y0:y1, x0:x1]
    if downscale != 1:
        h, w = image.shape[:2]
        image = cv2.resize(image, (w // downscale, h // downscale), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    return image[:h - h % MULTIPLE, :w - w % MULTIPLE]


def bicubic_downscale(image, scale):
    """MATLAB ``imresize(img, 1/scale, 'bicubic')`` on a uint8 BGR image."""
    from moesr_arch.compat import install_functional_tensor_alias
    install_functional_tensor_alias()
    from basicsr.utils.matlab_functions import imresize
    low = imresize(image.astype(np.float32) / 255., 1 / scale)
    return np.clip(np.round(low * 255.), 0, 255).astype(np.uint8)


def write_categories(path):
    lines = ['# category id: name (ids used in the YOLO label files; unlabelled pixels are background)']
    lines += [f'{i}: {name}' for i, name in CATEGORIES.items()]
    path.write_text('\n'.join(lines) + '\n')


def is_complete(output):
    """True when ``output`` holds every photo and every label file this script would write."""
    if not (output / 'meta_info').is_dir():
        return False
    for name, (_, _, split, _, _) in PHOTOS.items():
        if not (output / split / 'HR' / f'{name}.png').is_file():
            return False
        if (HERE / 'demo_labels' / f'{name}.txt').is_file() and not (output / split / 'labels' / f'{name}.txt').is_file():
            return False  # built before the labels existed
    return True


def build(output, force=False):
    from tqdm import tqdm
    output = Path(output)
    if output.exists():
        if not force and is_complete(output):
            print(f'{output} exists; use --force to rebuild it')
            return output
        shutil.rmtree(output)
    tmp = output.with_name(output.name + '.partial')
    shutil.rmtree(tmp, ignore_errors=True)
    meta = {'train': [], 'val': []}
    for name, (package, file_name, split, crop, downscale) in tqdm(PHOTOS.items(), desc='demo photos', unit='photo'):
        hr = load_photo(package, file_name, crop, downscale)
        (tmp / split / 'HR').mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp / split / 'HR' / f'{name}.png'), hr)
        for scale in SCALES:
            folder = tmp / split / 'LR_bicubic' / f'X{scale}'
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f'{name}.png'), bicubic_downscale(hr, scale))
        label = HERE / 'demo_labels' / f'{name}.txt'
        if label.is_file():
            (tmp / split / 'labels').mkdir(exist_ok=True)
            shutil.copy(label, tmp / split / 'labels' / label.name)
        meta[split].append(f'{name}.png ({hr.shape[0]},{hr.shape[1]},{hr.shape[2]})')
    (tmp / 'meta_info').mkdir()
    for split, lines in meta.items():
        (tmp / 'meta_info' / f'demo_{split}_HR.txt').write_text('\n'.join(lines) + '\n')
    write_categories(tmp / 'categories.yml')
    os.replace(tmp, output)  # the folder appears complete or not at all
    return output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--output', default='datasets/demo', help='output folder (default: datasets/demo)')
    parser.add_argument('--force', action='store_true', help='rebuild even if the folder exists')
    args = parser.parse_args(argv)
    out = build(args.output, args.force)
    print(f'demo dataset ready in {out}')


if __name__ == '__main__':
    sys.path.insert(0, str(HERE.parents[1]))
    main()
