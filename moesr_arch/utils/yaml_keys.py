"""YAML loading that refuses duplicate keys.

PyYAML keeps the last of two equal keys without a word: ``num_gpu: 1`` then ``num_gpu: 0`` in one
section trains on the CPU, and a categories file with ``1: cat`` and ``1: vehicle`` loses ``cat``.
"""
import os

import yaml

MAPPING_TAG = yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG
MERGE_TAG = 'tag:yaml.org,2002:merge'


def unique_keys_loader(base, source, error_class=ValueError):
    """A subclass of the loader ``base`` whose mappings raise ``error_class`` on a repeated key, naming
    ``source``, the line and the key."""
    original = base.yaml_constructors[MAPPING_TAG]

    def construct_mapping(loader, node, *args):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML itself reports it
                continue
            if first is not None:
                raise error_class(f'{source}:{line}: duplicate key {key!r} (first at line {first}); '
                                  'YAML would silently keep the last value')
            seen[key] = line
        return original(loader, node, *args)

    return type(f'UniqueKeys{base.__name__}', (base, ), {'yaml_constructors': {**base.yaml_constructors,
                                                                                MAPPING_TAG: construct_mapping}})


def load_yaml_file(path, base, error_class, what):
    """Read the YAML file ``path`` (a ``what``, e.g. 'option file') with the loader ``base``, refusing repeated
    keys; a missing file or bad YAML raises ``error_class`` naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise error_class(f'{what} not found: {path}')
    with open(path, encoding='utf-8') as f:
        try:
            return yaml.load(f, Loader=unique_keys_loader(base, path, error_class))
        except yaml.YAMLError as error:
            raise error_class(f'{path}: not valid YAML: {error}') from error
