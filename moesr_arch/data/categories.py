"""The categories file: a YAML mapping ``id: name`` naming the class ids used in the label files.

Example (``datasets/demo/categories.yml``)::

    0: people
    1: vehicle

Ids must be the integers ``0..K-1`` (in any order in the file) and names must be unique; the
position of a name in the returned list is its id. Everything unlabelled is background, which gets
index ``K`` in category maps and gate weights.
"""
import yaml

from moesr_arch.utils.yaml_keys import load_yaml_file


class CategoriesError(ValueError):
    """A categories file that is missing or malformed."""


def parse_categories(mapping, source):
    """Check an ``{id: name}`` mapping read from ``source``; return the names in id order."""
    if not isinstance(mapping, dict) or not mapping:
        raise CategoriesError(f'{source}: a categories file is a non-empty YAML mapping "id: name", '
                              f'got {type(mapping).__name__}')
    names = {}
    for key, name in mapping.items():
        if isinstance(key, bool) or not isinstance(key, int) or key < 0:
            raise CategoriesError(f'{source}: category id {key!r} is not a non-negative integer')
        if not isinstance(name, str) or not name.strip():
            raise CategoriesError(f'{source}: category {key} has no name (got {name!r})')
        names[key] = name.strip()
    missing = sorted(set(range(len(names))) - set(names))
    if missing:
        raise CategoriesError(f'{source}: category ids must be 0..{len(names) - 1}; missing {missing}, '
                              f'found {sorted(names)}')
    ordered = [names[i] for i in range(len(names))]
    duplicates = sorted({n for n in ordered if ordered.count(n) > 1})
    if duplicates:
        raise CategoriesError(f'{source}: duplicate category names {duplicates}')
    if 'background' in ordered:
        raise CategoriesError(f'{source}: "background" is implicit (every unlabelled pixel); do not list it')
    return ordered


def load_categories(path):
    """Read the categories file ``path``; return the category names, index = class id."""
    return parse_categories(load_yaml_file(path, yaml.SafeLoader, CategoriesError, 'categories file'), str(path))
