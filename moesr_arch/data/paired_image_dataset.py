import os

from basicsr.data.data_util import paired_paths_from_meta_info_file
from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import FileClient, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from moesr_arch.data.lmdb_util import paired_paths_from_lmdb
from moesr_arch.utils.image_io import IMAGE_EXTENSIONS, decode_image, list_images

def image_names(folder):
    """Sorted image names of ``folder``; an entry that cannot be opened (a looping or broken symbolic link)
    stops here, at start, naming it and the reason, instead of mid-training."""
    paths = list_images(folder, allow_empty=True)
    for path in paths:
        try:
            path.stat()
        except OSError as error:
            raise ValueError(f'{path}: {error.strerror}') from None
    return [path.name for path in paths]


def paired_paths_from_image_folders(gt_folder, lq_folder, filename_tmpl='{}'):
    """Pairs ``gt_folder/<stem><ext>`` with ``lq_folder/<tmpl(stem)><ext>``; other files are ignored.

    Raises a ValueError naming the folder when it holds no image, and naming the GT file whose LR
    partner is missing.
    """
    for folder in (gt_folder, lq_folder):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f'no such data folder: {folder}')
    gt_names = image_names(gt_folder)
    if not gt_names:
        raise ValueError(f'{gt_folder}: no image files (looked for {", ".join(IMAGE_EXTENSIONS)})')
    lq_names = {}
    for name in image_names(lq_folder):
        stem = os.path.splitext(name)[0]
        if stem in lq_names:
            raise ValueError(f'{os.path.join(lq_folder, lq_names[stem])} and {os.path.join(lq_folder, name)}: two LR '
                             f'images for one stem {stem!r}; remove one')
        lq_names[stem] = name
    pairs = []
    for gt_name in gt_names:
        stem = os.path.splitext(gt_name)[0]
        lq_stem = filename_tmpl.format(stem)
        if lq_stem not in lq_names:
            raise ValueError(f'{os.path.join(gt_folder, gt_name)}: no LR partner {lq_stem}.* in {lq_folder}')
        pairs.append({'gt_path': os.path.join(gt_folder, gt_name), 'lq_path': os.path.join(lq_folder, lq_names[lq_stem])})
    return pairs


def check_pair_sizes(img_gt, img_lq, scale, gt_path, lq_path):
    """Crop GT to ``scale`` x LR; fail naming both files when LR is not floor(GT / scale)."""
    h_lq, w_lq = img_lq.shape[:2]
    h_gt, w_gt = img_gt.shape[:2]
    if h_gt // scale != h_lq or w_gt // scale != w_lq:
        raise ValueError(f'size mismatch at x{scale}: LR {lq_path} is {w_lq}x{h_lq} but HR {gt_path} is '
                         f'{w_gt}x{h_gt} (expected LR {w_gt // scale}x{h_gt // scale})')
    return img_gt[:h_lq * scale, :w_lq * scale]


@DATASET_REGISTRY.register()
class CheckedPairedImageDataset(data.Dataset):
    """HR/LR pairs for SR, like BasicSR's ``PairedImageDataset`` but strict and tolerant of real files.

    Reads folders (non-image files ignored), a meta_info file, or LMDB. Grey, RGBA and 16-bit images all
    become 3-channel float (see :mod:`moesr_arch.utils.image_io`). An unreadable file or an LR image
    whose size is not HR / scale raises an error naming the file(s), instead of a shape error later.

    Options: BasicSR's loader keys and those of its PairedImageDataset (``dataroot_gt``, ``dataroot_lq``,
    ``io_backend``, ...); their types and defaults are in
    docs/options.md#checkedpairedimagedataset-pairedimagedataset. ``opt`` is the dataset section checked and
    filled with those defaults, as ``basicsr train|test`` give it (docs/options.md#datasets); from Python,
    :func:`moesr_arch.options.check_dataset` fills a hand-written dict.

    Returns ``lq``, ``gt`` (RGB CHW float in [0, 1]), ``lq_path``, ``gt_path``.
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.file_client = None
        self.io_backend_opt = dict(opt['io_backend'])
        self.gt_folder, self.lq_folder = opt['dataroot_gt'], opt['dataroot_lq']
        self.filename_tmpl = opt['filename_tmpl']
        self.scale = int(opt['scale'])
        if self.io_backend_opt['type'] == 'lmdb':
            self.io_backend_opt['db_paths'] = [self.lq_folder, self.gt_folder]
            self.io_backend_opt['client_keys'] = ['lq', 'gt']
            # Our own key parsing: BasicSR's cuts keys at the first dot ('a.b.png' -> 'a').
            self.paths = paired_paths_from_lmdb(self.gt_folder, self.lq_folder)
        elif opt.get('meta_info_file'):
            self.paths = paired_paths_from_meta_info_file([self.lq_folder, self.gt_folder], ['lq', 'gt'],
                                                          opt['meta_info_file'], self.filename_tmpl)
        else:
            self.paths = paired_paths_from_image_folders(self.gt_folder, self.lq_folder, self.filename_tmpl)
        if not self.paths:
            raise ValueError(f'{self.gt_folder}: the dataset {opt.get("name")} is empty')

    def read_pair(self, index):
        """The HR and LR images of ``index`` as float32 HWC BGR, HR cropped to scale x LR, and their paths.

        ``self.last_hr_size`` keeps the HR size before the crop (labels are normalised to it).
        """
        if self.file_client is None:
            backend = dict(self.io_backend_opt)
            self.file_client = FileClient(backend.pop('type'), **backend)
        gt_path, lq_path = self.paths[index]['gt_path'], self.paths[index]['lq_path']
        img_gt = decode_image(self.file_client.get(gt_path, 'gt'), gt_path)
        img_lq = decode_image(self.file_client.get(lq_path, 'lq'), lq_path)
        self.last_hr_size = img_gt.shape[:2]
        return check_pair_sizes(img_gt, img_lq, self.scale, gt_path, lq_path), img_lq, gt_path, lq_path

    def __getitem__(self, index):
        img_gt, img_lq, gt_path, lq_path = self.read_pair(index)
        if self.opt['phase'] == 'train':
            img_gt, img_lq = paired_random_crop(img_gt, img_lq, self.opt['gt_size'], self.scale, gt_path)
            img_gt, img_lq = augment([img_gt, img_lq], self.opt['use_hflip'], self.opt['use_rot'])
        img_gt, img_lq = img2tensor([img_gt, img_lq], bgr2rgb=True, float32=True)
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': lq_path, 'gt_path': gt_path}

    def __len__(self):
        return len(self.paths)
