"""`basicsr prepare ...`: LR generation, sub-images, LMDB, dataset checks, on tiny images made here."""
from argparse import Namespace

import subprocess
import sys

import cv2
import lmdb
import numpy as np
import pytest
from basicsr.utils.matlab_functions import imresize

from conftest import ROOT, checked_dataset, cli_env, run_cli
from moesr_arch.cli import main as cli_main
from moesr_arch.data.category_labels import rasterize_category_map, read_labels
from moesr_arch.data.lmdb_util import paired_paths_from_lmdb, read_lmdb_labels, read_meta_info
from moesr_arch.data.paired_image_dataset import CheckedPairedImageDataset
from moesr_arch.tools.prepare import PREPARE_TOOLS, check_dataset, create_lmdb, extract_subimages, generate_lr


def photo(h, w, seed=0, channels=3, dtype=np.uint8):
    """A smooth random picture (compresses like a photo, unlike noise)."""
    rng = np.random.RandomState(seed)
    small = rng.rand(max(h // 8, 2), max(w // 8, 2), channels)
    image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    peak = 65535 if dtype == np.uint16 else 255
    image = (image * peak).round().astype(dtype)
    return image[:, :, 0] if image.ndim == 3 and channels == 1 else image


def write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


@pytest.mark.parametrize('tool', PREPARE_TOOLS)
def test_every_tool_has_help(tool, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(['prepare', tool, '--help'])
    assert exit_info.value.code == 0
    assert 'usage:' in capsys.readouterr().out


def test_generate_lr_matlab_bicubic_mod_crop_and_bit_depth(tmp_path):
    hr = write(tmp_path / 'HR' / 'rgb.png', photo(50, 37))
    write(tmp_path / 'HR' / 'deep.png', photo(30, 26, seed=1, channels=1, dtype=np.uint16))
    (tmp_path / 'HR' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\nnot really')
    (tmp_path / 'HR' / 'notes.txt').write_text('ignored')
    errors = generate_lr.generate_lr(tmp_path / 'HR', tmp_path / 'out', scales=(2, 3))
    assert len(errors) == 1 and 'broken.png' in errors[0]
    for scale in (2, 3):
        mod = cv2.imread(str(tmp_path / 'out' / 'HR_mod' / f'X{scale}' / 'rgb.png'))
        lr = cv2.imread(str(tmp_path / 'out' / 'LR_bicubic' / f'X{scale}' / 'rgb.png'))
        assert mod.shape[:2] == (50 - 50 % scale, 37 - 37 % scale)
        assert lr.shape[:2] == (50 // scale, 37 // scale)
        expected = imresize(cv2.imread(str(hr))[:mod.shape[0], :mod.shape[1]] / 255., 1 / scale).clip(0, 1)
        assert np.abs(lr / 255. - expected).max() <= 0.5 / 255 + 1e-6
    deep = cv2.imread(str(tmp_path / 'out' / 'LR_bicubic' / 'X2' / 'deep.png'), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (15, 13)


def test_generate_lr_without_hr_mod_writes_lr_only_and_refuses_a_size_that_is_no_multiple(tmp_path):
    write(tmp_path / 'HR' / 'even.png', photo(48, 36))
    assert generate_lr.generate_lr(tmp_path / 'HR', tmp_path / 'out', scales=(2, 3), hr_mod=False) == []
    assert not (tmp_path / 'out' / 'HR_mod').exists()
    assert cv2.imread(str(tmp_path / 'out' / 'LR_bicubic' / 'X3' / 'even.png')).shape == (16, 12, 3)
    write(tmp_path / 'HR' / 'odd.png', photo(50, 37))
    errors = generate_lr.generate_lr(tmp_path / 'HR', tmp_path / 'out2', scales=(2, ), hr_mod=False)
    assert len(errors) == 1 and 'odd.png: 37x50 is not a multiple of the scale 2' in errors[0]
    assert not (tmp_path / 'out2' / 'LR_bicubic' / 'X2' / 'odd.png').exists()


def test_extract_subimages_pairs_stay_aligned(tmp_path):
    hr = photo(100, 84, channels=3)
    write(tmp_path / 'HR' / 'img.png', hr)
    write(tmp_path / 'LR' / 'img.png', hr[::2, ::2])  # nearest-neighbour LR: HR[::2, ::2] must equal LR
    count, errors = extract_subimages.extract_subimages(tmp_path / 'HR', tmp_path / 'sub_hr', crop_size=40, step=20,
                                                        lq=tmp_path / 'LR', lq_output=tmp_path / 'sub_lr', scale=2,
                                                        n_thread=2)
    assert errors == []
    # BasicSR's rule: starts 0,20,40,60 (100 = 60 + 40, nothing left) and 0,20,40 + flush 44 across 84.
    assert count == 4 * 4
    names = sorted(p.name for p in (tmp_path / 'sub_hr').iterdir())
    assert names == sorted(p.name for p in (tmp_path / 'sub_lr').iterdir())
    assert names[0] == 'img_s001.png'
    for name in names:
        gt = cv2.imread(str(tmp_path / 'sub_hr' / name))
        lq = cv2.imread(str(tmp_path / 'sub_lr' / name))
        assert gt.shape == (40, 40, 3) and lq.shape == (20, 20, 3)
        np.testing.assert_array_equal(gt[::2, ::2], lq)
    last = cv2.imread(str(tmp_path / 'sub_hr' / names[-1]))
    np.testing.assert_array_equal(last, hr[60:100, 44:84])
    with pytest.raises(FileExistsError):
        extract_subimages.extract_subimages(tmp_path / 'HR', tmp_path / 'sub_hr')
    with pytest.raises(ValueError, match='divisible'):
        extract_subimages.extract_subimages(tmp_path / 'HR', tmp_path / 'x', crop_size=41, lq=tmp_path / 'LR',
                                            lq_output=tmp_path / 'y', scale=2)


def test_extract_subimages_cuts_category_labels_with_the_images(tmp_path):
    hr = photo(100, 84)
    write(tmp_path / 'HR' / 'img.png', hr)
    write(tmp_path / 'LR' / 'img.png', hr[::2, ::2])
    write(tmp_path / 'HR' / 'empty.png', photo(40, 40, seed=1))
    write(tmp_path / 'LR' / 'empty.png', photo(20, 20, seed=1))
    (tmp_path / 'cats.yml').write_text('0: people\n1: cat\n')
    (tmp_path / 'labels').mkdir()
    # A concave L (people) across several crops and a box (cat); vertices off the pixel centres.
    (tmp_path / 'labels' / 'img.txt').write_text(
        '0 0.052 0.031 0.451 0.031 0.451 0.452 0.853 0.452 0.853 0.733 0.052 0.733\n1 0.75 0.2 0.3 0.22\n')
    count, errors = extract_subimages.extract_subimages(
        tmp_path / 'HR', tmp_path / 'sub_hr', crop_size=40, step=20, lq=tmp_path / 'LR', lq_output=tmp_path / 'sub_lr',
        scale=2, labels=tmp_path / 'labels', labels_output=tmp_path / 'sub_labels', categories=tmp_path / 'cats.yml',
        min_label_area=0)
    assert errors == [] and count == 16 + 1
    whole = rasterize_category_map(read_labels(tmp_path / 'labels' / 'img.txt', 2), 100, 84, 2)
    label_files = sorted((tmp_path / 'sub_labels').iterdir())
    assert [p.stem for p in label_files] == sorted(p.stem for p in (tmp_path / 'sub_hr').iterdir())
    seen = set()
    for index, (y, x) in enumerate([(y, x) for y in (0, 20, 40, 60) for x in (0, 20, 40, 44)], 1):
        regions = read_labels(tmp_path / 'sub_labels' / f'img_s{index:03d}.txt', 2, required=True)
        crop_map = rasterize_category_map(regions, 40, 40, 2)
        np.testing.assert_array_equal(crop_map, whole[y:y + 40, x:x + 40], err_msg=f'sub-image {index} at {y},{x}')
        seen |= set(np.unique(crop_map).tolist())
    assert seen == {0, 1, 2}
    assert (tmp_path / 'sub_labels' / 'empty_s001.txt').read_text() == ''  # background only, file present

    with pytest.raises(ValueError, match='--labels needs --labels_output and --categories'):
        extract_subimages.extract_subimages(tmp_path / 'HR', tmp_path / 'x', labels=tmp_path / 'labels')
    (tmp_path / 'labels' / 'img.txt').write_text('5 0.5 0.5 0.2 0.2\n')
    count, errors = extract_subimages.extract_subimages(tmp_path / 'HR', tmp_path / 'x', crop_size=40, step=20,
                                                        labels=tmp_path / 'labels', labels_output=tmp_path / 'y',
                                                        categories=tmp_path / 'cats.yml', labels_required=True)
    assert len(errors) == 2
    assert any('img.txt:1: unknown class id 5' in error for error in errors)
    assert any('empty.txt: label file missing' in error for error in errors)
    assert count == 0 and not list((tmp_path / 'x').glob('*')), 'sub-images written without their labels'


def make_pairs(root, names_sizes, scale=2):
    for index, (name, (h, w)) in enumerate(names_sizes.items()):
        hr = photo(h, w, seed=index)
        write(root / 'HR' / f'{name}.png', hr)
        write(root / 'LR' / f'{name}.png', cv2.resize(hr, (w // scale, h // scale), interpolation=cv2.INTER_AREA))


def test_create_lmdb_dotted_names_mixed_sizes_labels_and_dataset_reads_it(tmp_path):
    # A tiny first image and a large noisy last one: BasicSR sizes the map from the first image only.
    make_pairs(tmp_path, {'a_tiny': (8, 8), 'img.v2.final': (40, 30)})
    noise = np.random.RandomState(0).randint(0, 256, (400, 300, 3), np.uint8)
    write(tmp_path / 'HR' / 'z_noise.png', noise)
    write(tmp_path / 'LR' / 'z_noise.png', noise[::2, ::2])
    write(tmp_path / 'HR' / 'photo.jpg', photo(24, 20, seed=5))  # re-encoded as PNG
    write(tmp_path / 'LR' / 'photo.png', photo(12, 10, seed=5))
    (tmp_path / 'labels').mkdir()
    (tmp_path / 'labels' / 'img.v2.final.txt').write_text('1 0.1 0.1 0.5 0.1 0.5 0.5\n')
    (tmp_path / 'cats.yml').write_text('0: people\n1: cat\n')
    errors = create_lmdb.create_lmdb(tmp_path / 'HR', tmp_path / 'hr.lmdb', [tmp_path / 'LR'], [tmp_path / 'lr.lmdb'],
                                     labels=tmp_path / 'labels', categories=tmp_path / 'cats.yml')
    assert errors == []
    meta = (tmp_path / 'hr.lmdb' / 'meta_info.txt').read_text().splitlines()
    assert meta == ['a_tiny.png (8,8,3) 1', 'img.v2.final.png (40,30,3) 1', 'photo.png (24,20,3) 1',
                    'z_noise.png (400,300,3) 1']
    assert [k for k, _ in read_meta_info(tmp_path / 'lr.lmdb')] == ['a_tiny', 'img.v2.final', 'photo', 'z_noise']
    assert read_lmdb_labels(tmp_path / 'hr.lmdb') == {'img.v2.final': '1 0.1 0.1 0.5 0.1 0.5 0.5\n'}
    assert (tmp_path / 'hr.lmdb' / 'categories.yml').read_text() == '0: people\n1: cat\n'
    with lmdb.open(str(tmp_path / 'hr.lmdb'), readonly=True, lock=False) as env, env.begin() as txn:
        stored = cv2.imdecode(np.frombuffer(txn.get(b'z_noise'), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(stored, noise)

    dataset = CheckedPairedImageDataset(checked_dataset({
        'name': 'lmdb', 'type': 'CheckedPairedImageDataset', 'phase': 'val', 'scale': 2,
        'dataroot_gt': str(tmp_path / 'hr.lmdb'), 'dataroot_lq': str(tmp_path / 'lr.lmdb'),
        'io_backend': {'type': 'lmdb'}}))
    assert [p['gt_path'] for p in dataset.paths] == ['a_tiny', 'img.v2.final', 'photo', 'z_noise']
    item = dataset[1]
    disk = cv2.imread(str(tmp_path / 'HR' / 'img.v2.final.png'))[:, :, ::-1] / 255.
    np.testing.assert_allclose(item['gt'].permute(1, 2, 0).numpy(), disk, atol=1e-6)
    assert paired_paths_from_lmdb(tmp_path / 'hr.lmdb', tmp_path / 'lr.lmdb')[0] == {'gt_path': 'a_tiny',
                                                                                      'lq_path': 'a_tiny'}


def test_create_lmdb_is_all_or_nothing(tmp_path, monkeypatch):
    make_pairs(tmp_path, {'one': (16, 16), 'two': (16, 20)})
    (tmp_path / 'LR' / 'two.png').write_bytes(b'garbage')
    errors = create_lmdb.create_lmdb(tmp_path / 'HR', tmp_path / 'hr.lmdb', [tmp_path / 'LR'], [tmp_path / 'lr.lmdb'])
    assert len(errors) == 1 and 'two.png' in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ['HR', 'LR']  # neither LMDB, no .partial left

    def interrupted(path, compress_level=1):
        raise KeyboardInterrupt
    monkeypatch.setattr(create_lmdb, 'encode_one', interrupted)
    with pytest.raises(KeyboardInterrupt):
        create_lmdb.create_lmdb(tmp_path / 'HR', tmp_path / 'hr.lmdb')
    assert not (tmp_path / 'hr.lmdb').exists() and not (tmp_path / 'hr.lmdb.partial').exists()
    with pytest.raises(FileNotFoundError, match='interrupted'):
        read_meta_info(tmp_path / 'hr.lmdb')


def test_create_lmdb_grows_a_small_map_and_refuses_to_overwrite(tmp_path, monkeypatch):
    noise = np.random.RandomState(1).randint(0, 256, (300, 300, 3), np.uint8)  # ~270 KB as PNG
    write(tmp_path / 'HR' / 'noise.png', noise)
    monkeypatch.setattr(create_lmdb, 'estimate_map_size', lambda paths: 64 << 10)
    errors, _ = create_lmdb.make_lmdb(tmp_path / 'HR', tmp_path / 'hr.lmdb')
    assert errors == [] and read_meta_info(tmp_path / 'hr.lmdb') == [('noise', (300, 300, 3))]
    with pytest.raises(FileExistsError):
        create_lmdb.make_lmdb(tmp_path / 'HR', tmp_path / 'hr.lmdb')


def test_create_lmdb_rejects_different_names(tmp_path):
    make_pairs(tmp_path, {'one': (16, 16), 'two': (16, 20)})
    (tmp_path / 'LR' / 'two.png').rename(tmp_path / 'LR' / 'three.png')
    with pytest.raises(ValueError, match=r"missing in .*\['two'\]; extra: \['three'\]"):
        create_lmdb.create_lmdb(tmp_path / 'HR', tmp_path / 'hr.lmdb', [tmp_path / 'LR'], [tmp_path / 'lr.lmdb'])


def check_args(root, **extra):
    args = dict(gt=str(root / 'HR'), lq=[str(root / 'LR')], scale=[2], labels=str(root / 'labels'),
                categories=str(root / 'cats.yml'), filename_tmpl='{}', gt_size=None)
    args.update(extra)
    return Namespace(**args)


def test_check_dataset_finds_every_kind_of_problem(tmp_path):
    make_pairs(tmp_path, {'good': (16, 16), 'lonely': (16, 16), 'wrong_size': (20, 20), 'corrupt': (16, 16)})
    (tmp_path / 'cats.yml').write_text('0: people\n1: cat\n')
    (tmp_path / 'labels').mkdir()
    (tmp_path / 'labels' / 'good.txt').write_text('0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.9 0.1 0.5 0.9\n')
    assert check_dataset.main(check_args(tmp_path)) == 0

    (tmp_path / 'LR' / 'lonely.png').unlink()
    write(tmp_path / 'LR' / 'orphan.png', photo(8, 8))
    write(tmp_path / 'LR' / 'wrong_size.png', photo(9, 10))
    (tmp_path / 'HR' / 'corrupt.png').write_bytes((tmp_path / 'HR' / 'corrupt.png').read_bytes()[:60])
    (tmp_path / 'labels' / 'good.txt').write_text('0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n')
    (tmp_path / 'labels' / 'lonely.txt').write_text('0 0.1 0.2 0.3 0.4 0.5\n')
    (tmp_path / 'labels' / 'wrong_size.txt').write_text('1 0.5 0.5 0.2 0.2\n0 0.5 0.5 1.5 0.2\n')
    (tmp_path / 'labels' / 'corrupt.txt').write_text('x 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n')
    (tmp_path / 'labels' / 'ghost.txt').write_text('0 0.5 0.5 0.2 0.2\n')
    problems = check_dataset.check_dataset(tmp_path / 'HR', [tmp_path / 'LR'], [2], tmp_path / 'labels',
                                           tmp_path / 'cats.yml')
    text = '\n'.join(problems)
    assert 'orphan.png: LR image without an HR partner' in text
    assert 'lonely.png: no LR partner lonely' in text
    assert 'wrong_size.png: size mismatch at x2: LR is 10x9 but HR is 20x20 (expected 10x10)' in text
    assert 'corrupt.png: not a readable image' in text
    assert 'good.txt:2: unknown class id 7 (the categories file has ids 0..1)' in text
    assert 'lonely.txt:1: odd number of coordinates (5)' in text
    assert 'wrong_size.txt:2: coordinates must be normalised to [0, 1]' in text
    assert 'corrupt.txt:1: class id must be an integer' in text
    assert 'corrupt.txt:3: odd number of coordinates (3)' in text  # every bad line of a file, not only the first
    assert 'ghost.txt: label file without an HR image ghost' in text
    assert len(problems) == 10
    assert check_dataset.main(check_args(tmp_path)) == 1


def test_check_dataset_fails_on_folders_without_images(tmp_path):
    (tmp_path / 'HR').mkdir()
    (tmp_path / 'LR').mkdir()
    (tmp_path / 'LR' / 'notes.txt').write_text('not an image')
    proc = run_cli(['prepare', 'check_dataset', '--gt', 'HR', '--lq', 'LR', '-s', '2'], tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    assert 'HR: no image files' in proc.stderr and 'LR: no image files' in proc.stderr
    assert '2 problem(s) found' in proc.stderr and 'no problems found' not in proc.stderr


def test_check_dataset_reads_lmdbs_and_their_labels(tmp_path):
    make_pairs(tmp_path, {'one': (16, 16), 'two': (16, 20)})
    (tmp_path / 'labels').mkdir()
    (tmp_path / 'labels' / 'one.txt').write_text('3 0.5 0.5 0.2 0.2\n')
    assert create_lmdb.create_lmdb(tmp_path / 'HR', tmp_path / 'hr.lmdb', [tmp_path / 'LR'], [tmp_path / 'lr.lmdb'],
                                   labels=tmp_path / 'labels') == []
    (tmp_path / 'cats.yml').write_text('0: people\n')
    problems = check_dataset.check_dataset(tmp_path / 'hr.lmdb', [tmp_path / 'lr.lmdb'], [2],
                                           categories=tmp_path / 'cats.yml')
    assert len(problems) == 1 and 'labels.json[one]:1: unknown class id 3' in problems[0]


def test_prepare_command_line_end_to_end(tmp_path):
    write(tmp_path / 'HR' / 'pic.png', photo(48, 40))
    script = ROOT / 'scripts' / 'data_preparation' / 'generate_lr.py'
    subprocess.run([sys.executable, str(script), '-i', 'HR', '-o', 'gen', '-s', '2'], cwd=tmp_path, check=True,
                   env=cli_env(tmp_path), capture_output=True)
    assert create_lmdb.cli(['--gt', str(tmp_path / 'gen/HR_mod/X2'), '--gt_lmdb', str(tmp_path / 'hr.lmdb'),
                            '--lq', str(tmp_path / 'gen/LR_bicubic/X2'), '--lq_lmdb', str(tmp_path / 'lr.lmdb')]) == 0
    assert check_dataset.cli(['--gt', str(tmp_path / 'hr.lmdb'), '--lq', str(tmp_path / 'lr.lmdb'), '-s', '2']) == 0
    assert check_dataset.cli(['--gt', str(tmp_path / 'nowhere')]) == 2
    (tmp_path / 'gen' / 'LR_bicubic' / 'X2' / 'pic.png').unlink()
    proc = run_cli(['prepare', 'check_dataset', '--gt', 'gen/HR_mod/X2', '--lq', 'gen/LR_bicubic/X2', '-s', '2'],
                   tmp_path, check=False)
    assert proc.returncode == 1 and 'no LR partner pic' in proc.stderr


def test_category_dataset_reads_labels_from_the_lmdb(tmp_path):
    make_pairs(tmp_path, {'cat.photo.v2': (32, 32), 'empty': (32, 32)})
    (tmp_path / 'labels').mkdir()
    (tmp_path / 'labels' / 'cat.photo.v2.txt').write_text('1 0 0 0.5 0 0.5 0.5 0 0.5\n')  # top-left quarter
    (tmp_path / 'cats.yml').write_text('0: people\n1: cat\n')
    assert create_lmdb.create_lmdb(tmp_path / 'HR', tmp_path / 'hr.lmdb', [tmp_path / 'LR'], [tmp_path / 'lr.lmdb'],
                                   labels=tmp_path / 'labels', categories=tmp_path / 'cats.yml') == []
    from moesr_arch.data.category_paired_image_dataset import CategoryPairedImageDataset
    dataset = CategoryPairedImageDataset(checked_dataset({
        'name': 'lmdb', 'type': 'CategoryPairedImageDataset', 'phase': 'val', 'scale': 2,
        'dataroot_gt': str(tmp_path / 'hr.lmdb'), 'dataroot_lq': str(tmp_path / 'lr.lmdb'),
        'io_backend': {'type': 'lmdb'}, 'categories_file': str(tmp_path / 'hr.lmdb' / 'categories.yml')}))
    item = dataset[0]
    assert item['gt_path'] == 'cat.photo.v2'
    category_map = item['category_map'].numpy()
    assert (category_map[:8, :8] == 1).all() and (category_map[8:, 8:] == 2).all()  # cat, background
    assert dataset[1]['category_map'].eq(2).all()


def test_generate_lr_replaces_files_only_when_told_and_refuses_an_output_inside_its_input(tmp_path):
    write(tmp_path / 'HR' / 'pic.png', photo(24, 24))
    write(tmp_path / 'HR' / 'other.png', photo(24, 24, seed=1))
    assert generate_lr.generate_lr(tmp_path / 'HR', tmp_path / 'gen', scales=[2]) == []
    assert generate_lr.generate_lr(tmp_path / 'HR', tmp_path / 'gen', scales=[3]) == []  # another scale: new files
    old = (tmp_path / 'gen' / 'LR_bicubic' / 'X2' / 'pic.png').read_bytes()
    write(tmp_path / 'HR' / 'pic.png', photo(24, 24, seed=2))
    proc = run_cli(['prepare', 'generate_lr', '-i', 'HR', '-o', 'gen', '-s', '2', '4'], tmp_path, check=False)
    assert proc.returncode == 2 and 'gen: 4 of the 8 files to write exist already (e.g. gen/HR_mod/X2/other.png); ' \
        'pass --overwrite to replace them' in proc.stderr, proc.stderr
    assert (tmp_path / 'gen' / 'LR_bicubic' / 'X2' / 'pic.png').read_bytes() == old
    assert not (tmp_path / 'gen' / 'LR_bicubic' / 'X4').exists()  # nothing was written
    run_cli(['prepare', 'generate_lr', '-i', 'HR', '-o', 'gen', '-s', '2', '4', '--overwrite'], tmp_path)
    assert (tmp_path / 'gen' / 'LR_bicubic' / 'X2' / 'pic.png').read_bytes() != old
    for inside in ('HR', 'HR/gen', './HR/../HR/sub/'):
        with pytest.raises(ValueError, match='is inside the input folder'):
            generate_lr.generate_lr(tmp_path / 'HR', tmp_path / inside, scales=[2])
    assert sorted(p.name for p in (tmp_path / 'HR').iterdir()) == ['other.png', 'pic.png']
