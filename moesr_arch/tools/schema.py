"""Write the schema of option files: JSON for YAML editors, or the Markdown option reference (docs/options.md).

``basicsr schema > moesr.schema.json`` (or ``--output moesr.schema.json``) writes the JSON schema of the
option files as this installation validates them: every registered arch, loss, metric, dataset and model,
so a plugin registered beside this one is in it too. Hook it into an editor with the first line
``# yaml-language-server: $schema=moesr.schema.json`` of an option file, or (VS Code, YAML extension)
``"yaml.schemas": {"./moesr.schema.json": "options/*.yml"}``. Paths that must exist, and rules across keys
(stages adding up to total_iter, the experts of the categories, ...), are checked by ``basicsr train`` only.

``basicsr schema --markdown -o docs/options.md`` writes the option reference instead: every key of an
option file by model_type and section, with its type, default and a one-line description (the package's
and BasicSR's classes only, so the text is the same on every machine; :mod:`moesr_arch.options.reference`).
"""
import json
import sys

from moesr_arch.tools.common import standalone
from moesr_arch.utils.atomic import atomic_write_text


def add_arguments(parser):
    parser.add_argument('--output', '-o', help='write to this file, atomically (default: standard output)')
    parser.add_argument('--markdown', action='store_true',
                        help='write the Markdown option reference (docs/options.md) instead of the JSON schema')
    parser.add_argument('--indent', type=int, default=1, help='JSON indentation (default: 1)')


def main(args):
    if args.markdown:
        from moesr_arch.options.reference import option_reference
        text = option_reference()
    else:
        from moesr_arch.options import json_schema
        text = json.dumps(json_schema(), indent=args.indent, ensure_ascii=False) + '\n'
    if args.output:
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def cli(argv=None):
    return standalone(__doc__, add_arguments, main, argv)
