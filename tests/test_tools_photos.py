"""`basicsr prepare photos`: the photo corpus, from a folder of photos and from (tiny, home-made) Debian packages."""
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest
import skimage
from basicsr.utils.matlab_functions import imresize

from conftest import ROOT
from moesr_arch.cli import main as cli_main
from moesr_arch.data.lmdb_util import read_meta_info
from moesr_arch.tools.prepare import photos
from moesr_arch.tools.prepare.extract_subimages import crop_starts

SKIMAGE = Path(skimage.__file__).parent / 'data'
# Photos the demo set already uses; the two motorcycle views are one scene (a stereo pair).
INPUT_PHOTOS = {'astronaut.png': 'astronaut.png', 'coffee.png': 'coffee.png', 'rocket.jpg': 'rocket.jpg',
                'chelsea.png': 'chelsea.png', 'moto/left.png': 'motorcycle_left.png',
                'moto/right.png': 'motorcycle_right.png'}
SMALL = dict(max_side=240, crop_size=96, step=48, n_thread=1)  # seconds, not minutes
DOWNLOADED = ROOT / 'datasets' / 'photos' / 'packages'


def photo_folder(tmp_path):
    folder = tmp_path / 'mine'
    for target, source in INPUT_PHOTOS.items():
        (folder / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SKIMAGE / source, folder / target)
    return folder


def names(folder):
    return sorted(p.stem for p in Path(folder).iterdir() if not p.name.startswith('.'))


def lr_of(hr, scale):
    return np.clip(np.round(imresize(hr / 255., 1 / scale) * 255.), 0, 255).astype(np.uint8)


def test_corpus_from_a_folder_split_by_scene_lr_by_imresize_lmdb_keys(tmp_path):
    out = tmp_path / 'photos'
    corpus, count = photos.build_corpus(out, photo_folder(tmp_path), val_count=2, **SMALL)
    # Scenes in name order: astronaut, chelsea, coffee, moto, rocket; two validation scenes, evenly spaced.
    assert names(out / 'val' / 'HR') == ['chelsea', 'moto_left', 'moto_right']
    assert names(out / 'train' / 'HR') == ['astronaut', 'coffee', 'rocket']
    assert (out / 'photos.tsv').read_text().count('\n') == 3 + len(INPUT_PHOTOS)
    # Downscaled with the area filter to 240 px on the long side, then cropped to a multiple of 12.
    coffee = cv2.imread(str(SKIMAGE / 'coffee.png'))  # 400x600
    expected = cv2.resize(coffee, (240, 160), interpolation=cv2.INTER_AREA)[:156]
    np.testing.assert_array_equal(cv2.imread(str(out / 'train' / 'HR' / 'coffee.png')), expected)
    for hr in (out / 'val' / 'HR').iterdir():
        image = cv2.imread(str(hr))
        assert max(image.shape[:2]) <= 240 and image.shape[0] % 12 == 0 and image.shape[1] % 12 == 0
        for scale in (2, 3, 4):
            lr = cv2.imread(str(out / 'val' / 'LR_bicubic' / f'X{scale}' / hr.name))
            assert np.abs(lr.astype(int) - lr_of(image, scale)).max() <= 1
    # DIV2K's sub-images, cut from the training photos; their LR made from each sub-image.
    expected_count = 0
    for hr in (out / 'train' / 'HR').iterdir():
        h, w = cv2.imread(str(hr)).shape[:2]
        expected_count += len(crop_starts(h, 96, 48, 0)) * len(crop_starts(w, 96, 48, 0))
    sub = out / 'train_sub'
    assert count == expected_count == len(names(sub / 'HR'))
    for scale in (2, 3, 4):
        assert names(sub / 'LR_bicubic' / f'X{scale}') == names(sub / 'HR')
    piece = cv2.imread(str(sub / 'HR' / 'rocket_s003.png'))
    assert piece.shape == (96, 96, 3)
    assert cv2.imread(str(sub / 'LR_bicubic' / 'X4' / 'rocket_s003.png')).shape == (24, 24, 3)
    assert np.abs(cv2.imread(str(sub / 'LR_bicubic' / 'X3' / 'rocket_s003.png')).astype(int)
                  - lr_of(piece, 3)).max() <= 1
    # LMDBs with the sub-images' names as keys, the PNG files stored byte for byte.
    for name in ['train_sub_HR'] + [f'train_sub_LR_X{s}' for s in (2, 3, 4)]:
        keys = [key for key, _ in read_meta_info(out / 'lmdb' / f'{name}.lmdb')]
        assert sorted(keys) == names(sub / 'HR')
    with lmdb.open(str(out / 'lmdb' / 'train_sub_LR_X2.lmdb'), readonly=True, lock=False) as env:
        with env.begin() as txn:
            assert txn.get(b'coffee_s001') == (sub / 'LR_bicubic' / 'X2' / 'coffee_s001.png').read_bytes()
    assert {p.split for p in corpus} == {'train', 'val'}


def test_a_rerun_reuses_what_is_complete_and_a_changed_request_is_refused(tmp_path, caplog):
    mine, out = photo_folder(tmp_path), tmp_path / 'photos'
    photos.build_corpus(out, mine, **SMALL)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob('*') if p.is_file()}
    photos.build_corpus(out, mine, **SMALL)
    assert {p: p.stat().st_mtime_ns for p in out.rglob('*') if p.is_file()} == stamps  # nothing rewritten
    # An interrupted run: one photo missing, the LR stage half-built in its hidden folder, no LMDB.
    (out / 'train' / 'HR' / 'rocket.png').unlink()
    shutil.rmtree(out / 'train_sub' / 'LR_bicubic')
    (out / 'train_sub' / '.LR_bicubic.partial' / 'LR_bicubic' / 'X2').mkdir(parents=True)
    (out / 'train_sub' / '.LR_bicubic.partial' / 'LR_bicubic' / 'X2' / 'stale.png').write_bytes(b'half')
    shutil.rmtree(out / 'lmdb')
    photos.build_corpus(out, mine, **SMALL)
    assert (out / 'train' / 'HR' / 'rocket.png').is_file()
    assert (out / 'val' / 'HR' / 'coffee.png').stat().st_mtime_ns == stamps[out / 'val' / 'HR' / 'coffee.png']
    assert names(out / 'train_sub' / 'LR_bicubic' / 'X2') == names(out / 'train_sub' / 'HR')
    assert not (out / 'train_sub' / '.LR_bicubic.partial').exists()
    assert (out / 'lmdb' / 'train_sub_HR.lmdb' / 'meta_info.txt').is_file()
    with pytest.raises(photos.PhotoError, match='holds a corpus of other photos or settings'):
        photos.build_corpus(out, mine, **dict(SMALL, step=96))


def test_split_rules_are_checked(tmp_path):
    with pytest.raises(photos.PhotoError, match=r"a \(train\) and b \(val\) show one scene 'lake'"):
        photos.check_split([photos.Photo('a', 'train', 'lake', 'p', 'a.jpg'),
                            photos.Photo('b', 'val', 'lake', 'p', 'b.jpg')], 'list.tsv')
    with pytest.raises(photos.PhotoError, match="split 'test' is not one of train, val"):
        photos.check_split([photos.Photo('a', 'test', 'a', 'p', 'a.jpg')], 'list.tsv')
    (tmp_path / 'one').mkdir()
    shutil.copy(SKIMAGE / 'coffee.png', tmp_path / 'one')
    with pytest.raises(photos.PhotoError, match='has 1 scene'):
        photos.photos_from_folder(tmp_path / 'one', val_count=1)


def test_grey_16_bit_and_rgba_photos_become_8_bit_colour():
    grey = np.arange(30 * 50, dtype=np.uint16).reshape(30, 50) * 40
    fitted = photos.fit_photo(grey, max_side=2040, multiple=12)
    assert fitted.dtype == np.uint8 and fitted.shape == (24, 48, 3)
    np.testing.assert_array_equal(fitted[..., 0], np.round(grey[:24, :48] / 257.))
    rgba = np.dstack([np.full((40, 40, 3), 7, np.uint8), np.zeros((40, 40), np.uint8)])
    assert photos.fit_photo(rgba, max_side=24, multiple=12).shape == (24, 24, 3)
    with pytest.raises(ValueError, match='5x40 is smaller than 12'):
        photos.fit_photo(np.zeros((40, 5, 3), np.uint8), 2040, 12)


# ---------------------------------------------------------------------------------------------------------
# The package path, on a tiny package made here and a stand-in apt-get.

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2020 Somebody
License: GPL-2+

Files: pictures/rocket_by_Nasa.jpg
Copyright: NASA
License: CC0-1.0
 No rights reserved.

Files: debian/*
Copyright: a packager
License: Expat
"""


def tiny_deb(tmp_path):
    """``moesr-test-photos_1.0_all.deb``: two photos, a copyright file and a link, laid out as dpkg-deb builds it
    (an ar archive of debian-binary, control.tar.xz and data.tar.xz, paths ``./usr/...`` owned by root)."""
    root = tmp_path / 'pkg'
    pictures = root / 'usr' / 'share' / 'backgrounds'
    pictures.mkdir(parents=True)
    shutil.copy(SKIMAGE / 'rocket.jpg', pictures / 'rocket_by_Nasa.jpg')
    shutil.copy(SKIMAGE / 'coffee.png', pictures / 'coffee.png')
    (pictures / 'link.jpg').symlink_to('rocket_by_Nasa.jpg')
    (root / 'usr' / 'share' / 'doc' / 'moesr-test-photos').mkdir(parents=True)
    (root / 'usr' / 'share' / 'doc' / 'moesr-test-photos' / 'copyright').write_text(COPYRIGHT)
    (tmp_path / 'control').mkdir()
    (tmp_path / 'control' / 'control').write_text('Package: moesr-test-photos\nVersion: 1.0\nArchitecture: all\n'
                                                  'Maintainer: tests <t@example.org>\nDescription: test photos\n')

    def tar_xz(folder):
        def as_root(info):
            info.uid = info.gid = 0
            info.uname = info.gname = 'root'
            return info
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode='w:xz') as tar:
            tar.add(folder, arcname='.', filter=as_root)
        return buffer.getvalue()

    members = [('debian-binary', b'2.0\n'), ('control.tar.xz', tar_xz(tmp_path / 'control')),
               ('data.tar.xz', tar_xz(root))]
    deb = tmp_path / 'moesr-test-photos_1.0_all.deb'
    with open(deb, 'wb') as f:
        f.write(b'!<arch>\n')
        for name, data in members:  # ar headers: name, mtime, uid, gid, mode, size, magic; even-size padding
            f.write(f'{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n'.encode('ascii') + data
                    + b'\n' * (len(data) % 2))
    return deb


def fake_apt_get(tmp_path, monkeypatch, script):
    """A stand-in ``apt-get`` first on PATH, running the shell ``script``."""
    bin_folder = tmp_path / 'bin'
    bin_folder.mkdir(exist_ok=True)
    (bin_folder / 'apt-get').write_text('#!/bin/sh\n' + script)
    (bin_folder / 'apt-get').chmod(0o755)
    monkeypatch.setenv('PATH', f'{bin_folder}{os.pathsep}{os.environ["PATH"]}')


def photo_list(tmp_path, licence='CC0-1.0'):
    rows = [('rocket', 'train', 'rocket', 'usr/share/backgrounds/rocket_by_Nasa.jpg', 'NASA', licence),
            ('coffee', 'val', 'coffee', 'usr/share/backgrounds/coffee.png', 'Somebody', 'GPL-2+')]
    path = tmp_path / 'list.tsv'
    path.write_text('# name\tsplit\t...\n' + ''.join(f'{n}\t{s}\t{c}\tmoesr-test-photos\t{f}\t{a}\t{lic}\n'
                                                       for n, s, c, f, a, lic in rows))
    return path


def test_package_path_downloads_with_apt_get_keeps_the_listed_photos_and_their_licences(tmp_path, monkeypatch):
    deb = tiny_deb(tmp_path)
    fake_apt_get(tmp_path, monkeypatch, f'[ "$1 $2" = "download moesr-test-photos" ] || exit 100\ncp {deb} .\n')
    out = tmp_path / 'photos'
    photos.build_corpus(out, photo_list=photo_list(tmp_path), **SMALL)
    assert (out / 'packages' / deb.name).read_bytes() == deb.read_bytes()
    assert not [p for p in (out / 'packages').iterdir() if p.name.startswith('.download')]
    assert (out / 'licenses' / 'moesr-test-photos.copyright').read_text() == COPYRIGHT
    rocket = cv2.imread(str(SKIMAGE / 'rocket.jpg'))  # 427x640 -> 160x240 -> 156x240
    np.testing.assert_array_equal(cv2.imread(str(out / 'train' / 'HR' / 'rocket.png')),
                                  cv2.resize(rocket, (240, 160), interpolation=cv2.INTER_AREA)[:156])
    assert names(out / 'val' / 'LR_bicubic' / 'X4') == ['coffee']
    # Python's own .deb reader (no dpkg-deb) reads the same files.
    wanted = ['usr/share/backgrounds/coffee.png', 'usr/share/doc/moesr-test-photos/copyright']
    with_dpkg = photos.read_deb_files(deb, wanted)
    monkeypatch.setattr(photos.shutil, 'which', lambda name: None)
    assert photos.read_deb_files(deb, wanted) == with_dpkg
    with pytest.raises(photos.PhotoError, match='link.jpg is not a regular file'):
        photos.read_deb_files(deb, ['usr/share/backgrounds/link.jpg'])


def test_package_path_errors_say_what_to_do(tmp_path, monkeypatch, capsys):
    deb = tiny_deb(tmp_path)
    fake_apt_get(tmp_path, monkeypatch, f'cp {deb} .\n')
    with pytest.raises(photos.PhotoError, match='gives usr/share/backgrounds/rocket_by_Nasa.jpg the licence '
                                                'CC0-1.0, .*list.tsv says CC-BY-4.0'):
        photos.build_corpus(tmp_path / 'a', photo_list=photo_list(tmp_path, 'CC-BY-4.0'), **SMALL)
    fake_apt_get(tmp_path, monkeypatch, 'echo "E: Unable to locate package moesr-test-photos" >&2\nexit 100\n')
    with pytest.raises(photos.PhotoError, match=r'\(E: Unable to locate package moesr-test-photos\): is a package '
                                                'registry reachable\\? Run apt-get update, or give --input DIR'):
        photos.build_corpus(tmp_path / 'b', photo_list=photo_list(tmp_path), **SMALL)
    monkeypatch.setenv('PATH', str(tmp_path / 'empty'))  # no apt-get: not Debian or Ubuntu
    assert cli_main(['prepare', 'photos', '-o', str(tmp_path / 'c')]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the line saying what it tried
    assert error == ('basicsr prepare photos: error: apt-get not found: the photo packages come from a Debian or '
                     'Ubuntu package registry; on this system give --input DIR, a folder of your own photos')


def test_copyright_stanzas():
    assert photos.copyright_licence(COPYRIGHT, 'usr/share/backgrounds/rocket_by_Nasa.jpg') == 'CC0-1.0'
    assert photos.copyright_licence(COPYRIGHT, 'usr/share/backgrounds/coffee.png') == 'GPL-2+'


# ---------------------------------------------------------------------------------------------------------
# The shipped list.

PACKAGES = ROOT / 'tests' / 'data' / 'photo_packages'  # each package's copyright file, file list, theme authors


def plasma_theme(photo):
    """``usr/share/wallpapers/<Theme>`` of a Plasma wallpaper, None for other photos."""
    return photo.file.split('/contents/')[0] if '/wallpapers/' in photo.file else None


def test_the_shipped_photo_list_matches_the_packages_copyright_files_and_contents():
    """The list's licences, authors and files against each package's copyright file and file list, as kept in
    tests/data/photo_packages (the packages themselves are 120 MB; the next test checks those files are theirs)."""
    listed = photos.read_photo_list()
    assert {p.package for p in listed} == {'lomiri-wallpapers-16.04', 'lomiri-wallpapers-20.04',
                                           'plasma-workspace-wallpapers'}
    assert len(listed) == 26 and sum(p.split == 'val' for p in listed) == 3
    for photo in listed:
        folder = PACKAGES / photo.package
        text = (folder / 'copyright').read_text()
        sizes = dict(reversed(line.split('\t')) for line in (folder / 'files.tsv').read_text().splitlines())
        assert photo.file in sizes, photo.name
        assert photos.copyright_licence(text, photo.file) == photo.licence, photo.name
        theme = plasma_theme(photo)
        if theme:  # Plasma's copyright file credits only its design group
            assert photo.author in [a['Name'] for a in json.loads((folder / 'authors.json').read_text())[
                theme + '/metadata.json']], photo.name
            # one file per photo, its largest version
            versions = [f for f in sizes if f.startswith(theme + '/contents/images')]
            assert int(sizes[photo.file]) == max(int(sizes[f]) for f in versions), photo.name
        else:
            assert photo.author in text, photo.name


@pytest.mark.slow  # make test-all: fetches the three wallpaper packages (about 120 MB) unless datasets/photos has them
def test_the_packages_hold_the_kept_copyright_files_and_decodable_photos(tmp_path):
    listed = photos.read_photo_list()
    packages = sorted({p.package for p in listed})
    folder = DOWNLOADED
    if any(photos.find_deb(folder, package) is None for package in packages):
        folder = tmp_path  # as basicsr prepare photos fetches them (apt-get download from the package registry)
        photos.download_packages(packages, folder)
    debs = {package: photos.find_deb(folder, package) for package in packages}
    for package, deb in debs.items():
        mine = [p for p in listed if p.package == package]
        copyright_file = f'usr/share/doc/{package}/copyright'
        files = photos.read_deb_files(deb, [copyright_file] + [p.file for p in mine])
        assert files[copyright_file] == (PACKAGES / package / 'copyright').read_bytes(), package
        for photo in mine:
            assert cv2.imdecode(np.frombuffer(files[photo.file], np.uint8), cv2.IMREAD_COLOR) is not None
