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
    ({'train__grad_clip_value_over_lr': 0}, 'train.grad_clip_value_over_lr must be greater than 0, got 0'),
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
    ({'train__total_iter': 5000}, 'train.scheduler.periods add up to 800 iterations but train.total_iter is 5000'),
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
    assert proc.returncode != 0 and "unknown key 'train.total_itr'" in proc.stderr and "did you mean 'total_iter'" \
        in proc.stderr


def test_missing_option_file_is_named(tmp_path):
    with pytest.raises(OptionError, match='option file not found: .*nope.yml'):
        load_options(str(Path(tmp_path) / 'nope.yml'))


def test_every_problem_of_a_file_is_reported_at_once_one_line_each(workdir):
    path = write_options('options/train_edsr_demo.yml', workdir / 'bad.yml', network_g__network__num_feat='wide',
                         train__total_iter='many', logger__print_freq=[1])
    with pytest.raises(OptionError) as error:
        validate(path, check_paths=False)
    assert str(error.value).splitlines() == [
        f"{path}: network_g.network.num_feat must be an integer, got 'wide'",
        f"{path}: train.total_iter must be a number, got 'many'",
        f'{path}: logger.print_freq must be a number, got [1]']


def test_paths_are_checked_only_when_asked(workdir):
    path = write_options('options/train_edsr_demo.yml', workdir / 'bad.yml', datasets__val__dataroot_lq='nowhere')
    validate(path, check_paths=False)
    with pytest.raises(OptionError, match=r"bad.yml: datasets.val.dataroot_lq: no such file or folder: nowhere$"):
        validate(path)


def test_training_sections_are_required_only_for_training(workdir):
    path = write_options('options/train_edsr_demo.yml', workdir / 'bad.yml', train__optim_g='DELETE',
                         datasets__train__batch_size_per_gpu='DELETE')
    validate(path, is_train=False)
    with pytest.raises(OptionError, match=r'bad.yml: train.optim_g is required$'):
        validate(path)


def test_the_plugins_network_schemas_list_their_constructor_arguments():
    """A constructor argument added without its option declaration (or the reverse) fails here."""
    import inspect

    from basicsr.utils.registry import ARCH_REGISTRY
    from moesr_arch.options.networks import DECLARED, OPTION_LAYER_KEYS
    for name, section in DECLARED.items():
        arguments = set(inspect.signature(ARCH_REGISTRY.get(name)).parameters) - {'self'}
        declared = set(section.model_fields) - {'type'} - set(OPTION_LAYER_KEYS.get(name, ()))
        assert declared == arguments, name
        assert all(field.description for field in section.model_fields.values()), name


def test_every_declared_option_has_a_description():
    from pydantic import BaseModel

    from moesr_arch.options import datasets, gates, models, networks, training
    for module in (datasets, gates, models, networks, training):
        for section in vars(module).values():
            if isinstance(section, type) and issubclass(section, BaseModel) and section.__module__ == module.__name__:
                missing = [key for key, field in section.model_fields.items() if not field.description]
                assert not missing, f'{section.__name__}: {missing}'


def test_categories_file_is_resolved_into_categories_before_the_network_is_built(workdir):
    from basicsr.archs import build_network

    from moesr_arch.options import resolve_derived_options
    opt = load_options(str(ROOT / 'options' / 'train_moesr.yml'))
    with pytest.raises(TypeError, match='categories_file'):  # the network itself reads no file
        build_network(dict(opt['network_g']))
    assert resolve_derived_options(opt, 'train_moesr.yml') is opt
    assert opt['network_g']['categories'] == ['people', 'vehicle'] and 'categories_file' not in opt['network_g']
    resolved = dict(opt['network_g'])
    assert resolve_derived_options(opt)['network_g'] == resolved  # a second call changes nothing
    assert build_network(dict(opt['network_g'])).categories == ['people', 'vehicle']
    opt['network_ref'] = {'type': 'MoESRNet', 'categories_file': 'nowhere.yml', 'experts': {}}
    assert resolve_derived_options(opt, 'x.yml')['network_ref']['categories_file'] == 'nowhere.yml'  # the schema's
    with pytest.raises(OptionError, match='x.yml: network_ref.categories_file: no such file: nowhere.yml'):
        validate_options(opt, 'x.yml')
    (workdir / 'bad.yml').write_text('0: people\n0: vehicle\n')
    opt['network_ref']['categories_file'] = str(workdir / 'bad.yml')
    with pytest.raises(OptionError, match='x.yml: network_ref.categories_file: '):
        validate_options(opt, 'x.yml')


def test_json_schema_checks_the_shipped_files_and_names_a_misspelt_key(tmp_path):
    """``basicsr schema --output FILE``: what a YAML editor checks option files with."""
    import json

    import yaml

    from moesr_arch.cli import main
    jsonschema = pytest.importorskip('jsonschema')
    assert main(['schema', '--output', str(tmp_path / 'moesr.schema.json')]) == 0
    schema = json.loads((tmp_path / 'moesr.schema.json').read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((ROOT / 'options').glob('*.yml')):
        errors = [error.message for error in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, f'{path.name}: {errors}'
    opt = yaml.safe_load((ROOT / 'options' / 'train_edsr_demo.yml').read_text())
    assert validator.is_valid(opt)
    for section, key in (('datasets.train', 'gt_szie'), ('network_g', 'num_feats'), ('train', 'optim')):
        bad = yaml.safe_load((ROOT / 'options' / 'train_edsr_demo.yml').read_text())
        node = bad
        for part in section.split('.'):
            node = node[part]
        node[key] = 1
        # chosen by model_type and type (not a oneOf that fails as a whole), the error names the key
        error = jsonschema.exceptions.best_match(validator.iter_errors(bad))
        assert list(error.absolute_path) == section.split('.') and repr(key) in error.message, (key, error.message)
    network = schema['$defs']['EDSR_options']['properties']
    assert network['num_feat'] == {'anyOf': [{'type': 'integer'}, {'type': 'null'}], 'default': 64,
                                   'description': 'Channel number of intermediate features.',
                                   'title': 'Num Feat'}
