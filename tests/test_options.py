"""Option files are validated before any work: typos and wrong types fail naming the key and the file."""
from pathlib import Path

import pytest

from conftest import ROOT, run_cli, write_options
from moesr_arch.options import OptionError, load_options, validate_options


def validate(path, **kwargs):
    validate_options(load_options(str(path)), str(path), **kwargs)


@pytest.mark.parametrize('option_file', sorted(p.name for p in (ROOT / 'options').glob('*.yml')))
def test_every_shipped_option_file_is_valid(option_file):
    opt = load_options(str(ROOT / 'options' / option_file))
    validate_options(opt, option_file, is_train=option_file.startswith('train'), check_paths=False)


@pytest.mark.parametrize('override, message', [
    ({'datasets__train__gt_szie': 64}, "unknown key 'datasets.train.gt_szie' (did you mean 'gt_size'?)"),
    ({'trian': {}}, "unknown key 'trian' (did you mean 'train'?)"),
    ({'datasets__train__batch_size_per_gpu': 'two'}, 'datasets.train.batch_size_per_gpu must be an integer'),
    ({'train__optim_g__lr': '2e-4'}, 'YAML reads 2e-4 as text'),
    ({'network_g__type': 'EDSRR'}, "no arch named 'EDSRR'; registered: "),
    ({'network_g__network__num_feats': 8},
     "unknown key 'network_g.network.num_feats' for EDSR (did you mean 'num_feat'?)"),
    ({'network_g__network__num_block': 2.5}, 'network_g.network.num_block must be an integer, got 2.5'),
    ({'train__pixel_opt__type': 'L2Loss'}, "no loss named 'L2Loss'"),
    ({'train__scheduler__milestone': [1]}, "unknown key 'train.scheduler.milestone'"),
    ({'val__metrics__psnr__crop_bordr': 2}, "unknown key 'val.metrics.psnr.crop_bordr'"),
    ({'model_type': 'SRModell'}, "no model named 'SRModell'"),
    ({'datasets__train__dataroot_gt': 'datasets/nowhere/HR'}, 'no such file or folder: datasets/nowhere/HR'),
    ({'path__pretrain_network_g': 'missing.pth'}, 'path.pretrain_network_g: no such file: missing.pth'),
    ({'num_gpu': 'all'}, "num_gpu must be an integer or one of 'auto'"),
])
def test_mistakes_name_the_key_and_the_file(workdir, override, message):
    path = write_options('options/train_edsr_demo.yml', workdir / 'bad.yml', **override)
    with pytest.raises(OptionError) as error:
        validate(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_cli_refuses_a_bad_file_before_creating_anything(workdir):
    path = write_options('options/train_edsr_demo.yml', workdir / 'bad.yml', datasets__train__use_flip=True)
    proc = run_cli(['train', '-opt', path], workdir, check=False)
    assert proc.returncode != 0
    assert "unknown key 'datasets.train.use_flip'" in proc.stderr
    assert not (workdir / 'experiments').exists()


def test_force_yml_overrides_are_validated_too(workdir):
    path = write_options('options/train_edsr_demo.yml', workdir / 'ok.yml')
    proc = run_cli(['train', '-opt', path, '--force_yml', 'train:total_iter=abc'], workdir, check=False)
    assert proc.returncode != 0 and 'train.total_iter must be' in proc.stderr
    proc = run_cli(['train', '-opt', path, '--force_yml', 'train:total_itr=5'], workdir, check=False)
    assert proc.returncode != 0 and "has no key 'train:total_itr'" in proc.stderr


def test_missing_option_file_is_named(tmp_path):
    with pytest.raises(OptionError, match='option file not found: .*nope.yml'):
        load_options(str(Path(tmp_path) / 'nope.yml'))
