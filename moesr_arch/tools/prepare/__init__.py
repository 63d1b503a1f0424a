"""Prepare datasets: generate_lr, benchmark, extract_subimages, create_lmdb, label_categories, check_dataset, photos."""
import argparse
import importlib

# tool name -> module in this package; each has add_arguments(parser), main(args) and cli(argv)
PREPARE_TOOLS = ('generate_lr', 'benchmark', 'extract_subimages', 'create_lmdb', 'label_categories', 'check_dataset',
                 'photos')


def add_arguments(parser):
    tools = parser.add_subparsers(dest='prepare_tool', metavar='TOOL', required=True)
    for name in PREPARE_TOOLS:
        module = importlib.import_module(f'{__name__}.{name}')
        doc = module.__doc__.strip()
        sub = tools.add_parser(name, help=doc.splitlines()[0], description=doc,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(prepare_module=module)


def main(args):
    return args.prepare_module.main(args)  # user errors are reported by the command line (moesr_arch.cli)
