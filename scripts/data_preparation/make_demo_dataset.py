"""Build ``datasets/demo``: a small paired SR set from real photos shipped inside installed packages.

Photos come from scikit-image (``skimage/data``), ultralytics (``ultralytics/assets``), matplotlib
(``mpl-data/sample_data``), scikit-learn (``sklearn/datasets/images``) and mahotas (``mahotas/demos/data``);
nothing is downloaded. ``PHOTOS`` below lists each image, its source, its split and its scene. The split is
fair: no scene (photo, or stereo pair) is in two of train, val and heldout. ``heldout`` holds real photos that
no recipe trains or is tuned on. Each HR image is cropped to a multiple of 12 so that x2, x3 and x4 LR images
(MATLAB-style bicubic, as in the SR literature) have exact sizes. Category labels drawn by hand for these
photos (``scripts/data_preparation/demo_labels``) are copied beside the images.

Layout::

    datasets/demo/{train,val,heldout}/HR/<name>.png
    datasets/demo/{train,val,heldout}/LR_bicubic/X{2,3,4}/<name>.png
    datasets/demo/{train,val,heldout}/labels/<name>.txt        (YOLO polygons, when drawn)
    datasets/demo/categories.yml
    datasets/demo/meta_info/demo_{train,val,heldout}_HR.txt     (BasicSR format: name.png (h,w,c))

Usage: ``python scripts/data_preparation/make_demo_dataset.py [--output datasets/demo]``
"""
import argparse
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
SCALES = (2, 3, 4)
MULTIPLE = 12

# The packages whose wheels ship the photos, and the folder inside each that holds them.
PACKAGES = {
    'skimage': 'data',                     # scikit-image
    'ultralytics': 'assets',
    'matplotlib': 'mpl-data/sample_data',
    'sklearn': 'datasets/images',          # scikit-learn
    'mahotas': 'demos/data',
}

SPLITS = ('train', 'val', 'heldout')

# Source files that show one scene: the two views of scikit-image's stereo pair.
SHARED_SCENES = {
    'skimage/motorcycle_left.png': 'skimage/motorcycle (stereo pair)',
    'skimage/motorcycle_right.png': 'skimage/motorcycle (stereo pair)',
}


def photo(package, file_name, split, crop=None, downscale=1):
    """One demo image: ``crop`` is (y0, y1, x0, x1) in source pixels. Its ``scene`` is the source file
    (``package/file``, or the name of its pair in ``SHARED_SCENES``): crops of one photo share it, and no scene
    is in two splits (``tests/test_demo_split.py``). Downscaled photos are resized with area averaging
    (anti-aliased) before becoming HR."""
    source = f'{package}/{file_name}'
    return {'package': package, 'file': file_name, 'split': split, 'crop': crop, 'downscale': downscale,
            'scene': SHARED_SCENES.get(source, source)}


# train: what the demo recipes learn on; val: what they validate (and are tuned) on; heldout: real photos
# that no recipe trains or is tuned on, for honest checks. Natural colour photos only in val and heldout.
PHOTOS = {
    # train: people 3 photos (astronaut, bus, grace_hopper), vehicle 3 (astronaut, bus, rocket)
    'astronaut': photo('skimage', 'astronaut.png', 'train'),
    'bus': photo('ultralytics', 'bus.jpg', 'train', downscale=2),
    'grace_hopper': photo('matplotlib', 'grace_hopper.jpg', 'train', crop=(0, 504, 0, 512)),
    'rocket': photo('skimage', 'rocket.jpg', 'train'),
    'coffee': photo('skimage', 'coffee.png', 'train'),
    # val: people (zidane), vehicle (motorcycle: the left view; the right view of the stereo pair is unused)
    'zidane': photo('ultralytics', 'zidane.jpg', 'val', downscale=2),
    'motorcycle': photo('skimage', 'motorcycle_left.png', 'val', downscale=2),
    # heldout: a person (luispedro), a cat, a pagoda over a lake, a dahlia
    'luispedro': photo('mahotas', 'luispedro.jpg', 'heldout'),
    'chelsea_left': photo('skimage', 'chelsea.png', 'heldout', crop=(0, 300, 0, 228)),
    'chelsea_right': photo('skimage', 'chelsea.png', 'heldout', crop=(0, 300, 228, 451)),
    'china_roofs': photo('sklearn', 'china.jpg', 'heldout', crop=(0, 216, 0, 324)),
    'china_pagoda': photo('sklearn', 'china.jpg', 'heldout', crop=(216, 427, 0, 324)),
    'china_lake': photo('sklearn', 'china.jpg', 'heldout', crop=(120, 427, 324, 640)),  # the sky above: flat
    'flower_left': photo('sklearn', 'flower.jpg', 'heldout', crop=(0, 427, 0, 324)),
    'flower_right': photo('sklearn', 'flower.jpg', 'heldout', crop=(0, 427, 324, 640)),
}

CATEGORIES = {0: 'people', 1: 'vehicle'}


def package_folder(package):
    """The photo folder inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f'{package} is not installed (pip install -e . installs it)')
    return Path(list(spec.submodule_search_locations)[0]) / PACKAGES[package]


def load_photo(package, file_name, crop=None, downscale=1):
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


def categories_text():
    lines = ['# category id: name (ids used in the YOLO label files; unlabelled pixels are background)']
    lines += [f'{i}: {name}' for i, name in CATEGORIES.items()]
    return '\n'.join(lines) + '\n'


def is_complete(output):
    """True when ``output`` holds every photo and every label file this script would write."""
    for split in SPLITS:
        meta = output / 'meta_info' / f'demo_{split}_HR.txt'
        expected = sorted(name for name, entry in PHOTOS.items() if entry['split'] == split)
        built = sorted(line.split('.png')[0] for line in meta.read_text().split('\n') if line) if meta.is_file() else []
        if built != expected:
            return False  # built by an older version of this script (other photos or split)
    for name, entry in PHOTOS.items():
        split = entry['split']
        if not (output / split / 'HR' / f'{name}.png').is_file():
            return False
        label, built_label = HERE / 'demo_labels' / f'{name}.txt', output / split / 'labels' / f'{name}.txt'
        if label.is_file() and not (built_label.is_file() and built_label.read_bytes() == label.read_bytes()):
            return False  # built before the labels existed, or with older ones
    categories = output / 'categories.yml'
    return categories.is_file() and categories.read_text() == categories_text()


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
    meta = {split: [] for split in SPLITS}
    for name, entry in tqdm(PHOTOS.items(), desc='demo photos', unit='photo'):
        split = entry['split']
        hr = load_photo(entry['package'], entry['file'], entry['crop'], entry['downscale'])
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
    (tmp / 'categories.yml').write_text(categories_text())
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
