"""The ``basicsr`` (alias ``moesr``) command: ``basicsr train|test -opt FILE`` and the package's tools.

``train`` and ``test`` register the plugin, then run the plugin's pipelines
(:func:`moesr_arch.pipeline.train_pipeline` / :func:`~moesr_arch.pipeline.test_pipeline`): BasicSR's
own pipelines, step for step and from BasicSR's parts, with the fixes listed in
:mod:`moesr_arch.pipeline` (BasicSR itself is left as it is). The rest of the command line is BasicSR's
(``--auto_resume``, ``--debug``, ``--launcher``, ``--force_yml``), with the current directory as root:
``experiments/``, ``results/`` and ``tb_logger/`` appear there.

Further subcommands live in modules listed in :data:`TOOLS`; each defines ``add_arguments(parser)``
and ``main(args)`` and a one-line module docstring used as its help.
"""
import argparse
import importlib
import os
import sys

# subcommand -> module with add_arguments(parser) and main(args)
TOOLS = {
    'train-gate': 'moesr_arch.gating.train_gate',
    'prepare': 'moesr_arch.tools.prepare',
    'infer': 'moesr_arch.tools.infer',
    'benchmark': 'moesr_arch.tools.benchmark',
    'export': 'moesr_arch.tools.export',
    'schema': 'moesr_arch.tools.schema',
}


def run_pipeline(kind, argv, prog):
    """``basicsr train|test`` with BasicSR's command line ``argv`` (without the program name)."""
    import moesr_arch  # noqa: F401  (shims and registration before BasicSR runs)
    from moesr_arch.pipeline import test_pipeline, train_pipeline
    pipeline = train_pipeline if kind == 'train' else test_pipeline
    caller_argv, sys.argv = sys.argv, [prog] + list(argv)  # BasicSR copies the command into the run's option file
    try:
        pipeline(os.getcwd(), list(argv))
    finally:  # an in-process caller (a test, a script) keeps its own command line
        sys.argv = caller_argv
    leave_process_group()


def leave_process_group():
    """End a distributed run in step: a gloo group left to the interpreter's exit can abort a rank
    ("terminate called without an active exception", SIGABRT) after a run that succeeded."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def build_parser(prog):
    from moesr_arch.pipeline import add_arguments
    parser = argparse.ArgumentParser(prog=prog, description='Mixture-of-experts super-resolution on BasicSR.')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for kind, text in (('train', "train a model: BasicSR's train_pipeline with the plugin's fixes"),
                       ('test', "test a model: BasicSR's test_pipeline with the plugin's fixes")):
        add_arguments(commands.add_parser(kind, help=text, description=text))
    for name, module_name in TOOLS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=(module.__doc__ or '').strip().splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(tool=module)
    return parser


def run_guarded(prog, function, *args):
    """``function(*args)`` with user errors reported as one line ``<prog>: error: <cause>`` (exit code 2), and
    Ctrl-C as one line (exit code 130; finished files stay, no temporary is left).

    BasicSR's pipelines stop on bad options with ``SystemExit(message)``; those messages get the same
    prefix. Other exceptions are bugs and keep their traceback.
    """
    from moesr_arch.tools.common import guarded
    try:
        return guarded(lambda _: function(*args), None, prog)
    except SystemExit as stop:
        if isinstance(stop.code, str):
            print(f'{prog}: error: {stop.code}', file=sys.stderr)
            return 2
        raise


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = os.path.basename(sys.argv[0]) or 'basicsr'
    if prog in ('__main__.py', 'cli.py', '-c'):  # python -m moesr_arch, or main() called from python -c
        prog = 'basicsr'
    if argv and argv[0] in ('train', 'test') and not {'-h', '--help'} & set(argv[1:]):
        return run_guarded(f'{prog} {argv[0]}', run_pipeline, argv[0], argv[1:], f'{prog} {argv[0]}')
    try:
        args = build_parser(prog).parse_args(argv)
    except KeyboardInterrupt:  # while the tools' modules are imported
        from moesr_arch.tools.common import interrupted
        return interrupted(prog)
    command = args.command + (f' {args.prepare_tool}' if getattr(args, 'prepare_tool', None) else '')
    return run_guarded(f'{prog} {command}', args.tool.main, args)


if __name__ == '__main__':
    sys.exit(main())
