"""The commands of the README and the docs: found, well-formed, naming files that exist, saying what they need.

Running them all, in a fresh clone after ``make demo``, is ``scripts/check_doc_commands.py`` (``make
check-docs``; minutes to an hour); these tests check what can be checked without running them.
"""
import argparse
import glob
import importlib.util
import itertools
import re
import shlex
import sys

import cv2
import numpy as np
import pytest
import yaml

from conftest import ROOT
from moesr_arch.cli import build_parser, main

spec = importlib.util.spec_from_file_location('check_doc_commands', ROOT / 'scripts' / 'check_doc_commands.py')
docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(docs)

COMMANDS = docs.documented_commands(str(ROOT))
SETUP = 'make demo'  # what every documented command may rely on


def test_commands_are_extracted_with_their_lines_continuations_heredocs_and_needs(tmp_path, monkeypatch):
    (tmp_path / 'doc.md').write_text('\n'.join([
        '# Title',                                                       # 1
        '```bash',                                                       # 2
        'basicsr train -opt options/a.yml   # trains A',                 # 3
        'mkdir -p out && cp x y',                                        # 4: not a documented command
        '# needs: make demo-edsr',                                       # 5
        'basicsr infer -opt options/b.yml \\',                           # 6
        '    -i in -o out   # needs: datasets/big',                      # 7
        "python - <<'PY'",                                               # 8
        'for x in range(2):',                                            # 9
        '    print(x)  # needs: nothing, inside the here-document',      # 10
        'PY',                                                            # 11
        '# a plain comment',                                             # 12
        '',                                                              # 13
        'make test',                                                     # 14
        '```',                                                           # 15
        '```yaml',                                                       # 16
        'python: not a command in a yaml block',                         # 17
        '```',                                                           # 18
        '1. a list item',                                                # 19
        '   ```bash',                                                    # 20
        '   torchrun --nproc_per_node=2 -m moesr_arch.train -opt options/c.yml --launcher pytorch',  # 21
        '   ```',                                                        # 22
        '```text',                                                       # 23
        'basicsr infer: error: an example of output',                    # 24
        '```',                                                           # 25
        '```sh',                                                         # 26
        '# needs: a CUDA GPU',                                           # 27: for the whole block
        'basicsr train -opt options/d.yml',                              # 28
        'basicsr test -opt options/d.yml',                               # 29
        '```',                                                           # 30
    ]))
    found = docs.extract(str(tmp_path / 'doc.md'), str(tmp_path))
    assert [(c.where, c.needs) for c in found] == [
        ('doc.md:3', []), ('doc.md:6', ['make demo-edsr', 'datasets/big']), ('doc.md:8', []), ('doc.md:14', []),
        ('doc.md:21', []), ('doc.md:28', ['a CUDA GPU']), ('doc.md:29', ['a CUDA GPU'])]
    assert found[1].words == ['basicsr', 'infer', '-opt', 'options/b.yml', '-i', 'in', '-o', 'out']
    assert found[2].text == "python - <<'PY'\nfor x in range(2):\n    print(x)  # needs: nothing, inside the " \
                            'here-document\nPY'
    assert found[4].text.startswith('torchrun')  # the list item's indentation removed
    assert docs.is_command('make demo-edsr (trains it)') and not docs.is_command('datasets/big')
    assert docs.needed('make demo-edsr (trains the demo EDSR)') == 'make demo-edsr'
    assert docs.unmet('datasets/big', str(tmp_path)) == 'needs datasets/big (absent)'
    assert docs.unmet('doc.md datasets/big (the big set/s)', str(tmp_path)) == 'needs datasets/big (absent)'
    assert docs.unmet('doc.md (see other.md)', str(tmp_path)) is None
    monkeypatch.setenv('HOME', str(tmp_path))
    assert docs.unmet('~/doc.md', '/elsewhere') is None and docs.unmet('~/nothing', '/') == 'needs ~/nothing (absent)'
    assert docs.unmet('a CUDA GPU', str(tmp_path)) == 'needs a CUDA GPU'


def test_the_check_runs_a_need_once_skips_what_it_cannot_meet_and_names_each_failure(tmp_path, capsys):
    """What ``scripts/check_doc_commands.py`` does with each command, on small shell commands."""
    clone, logs = tmp_path / 'clone', tmp_path / 'logs'
    (clone / '.venv' / 'bin').mkdir(parents=True)
    logs.mkdir()
    (clone / '.venv' / 'bin' / 'python').symlink_to(sys.executable)  # the clone's environment comes first
    prepare = "python -c \"open('prep.txt', 'a').write('made\\n')\""
    check = docs.Check(str(clone), str(logs), timeout=60)
    assert check.run(docs.Command('a.md', 3, "python -c \"print(open('prep.txt').read())\"", [prepare]), '[1]')
    assert check.run(docs.Command('a.md', 4, 'cat prep.txt', [prepare]), '[2]')
    assert (clone / 'prep.txt').read_text() == 'made\n'  # the need ran once
    assert check.run(docs.Command('a.md', 5, 'cat prep.txt', ['data/big (your data)']), '[3]')
    assert not check.run(docs.Command('a.md', 6, "python -c \"print('boom'); raise SystemExit(3)\""), '[4]')
    assert not check.run(docs.Command('a.md', 7, 'sleep 30'), '[5]', timeout=0.5)
    shown = capsys.readouterr().out
    assert '[3] a.md:5  cat prep.txt  SKIPPED: needs data/big (absent)' in shown
    failure = re.search(r'FAILED \(exit 3 after .*\n  (a\.md:6: .*)\n(?:  \| .*\n)*  \| boom\n', shown)
    assert failure and failure.group(1) == 'a.md:6: python -c "print(\'boom\'); raise SystemExit(3)"', shown
    assert 'FAILED (timed out after 1 s)' in shown or 'FAILED (timed out after 0 s)' in shown
    assert [c.where for c, _ in check.passed] == ['a.md:3', 'a.md:3', 'a.md:4']  # the need, then the commands
    assert [(c.where, why) for c, why in check.skipped] == [('a.md:5', 'needs data/big (absent)')]
    assert [c.where for c, _ in check.failed] == ['a.md:6', 'a.md:7']


def cli_argv(words):
    """The ``basicsr`` arguments of a documented command line (None: not a ``basicsr`` command)."""
    if words[0] in ('basicsr', 'moesr'):
        return words[1:]
    if words[0].startswith(('python', 'torchrun')) and '-m' in words:
        module, rest = words[words.index('-m') + 1], words[words.index('-m') + 2:]
        if module == 'moesr_arch':
            return rest
        if module in ('moesr_arch.train', 'moesr_arch.test'):
            return [module.split('.')[1]] + rest
    return None


def make_recipe(target):
    """The commands ``make target`` runs (its prerequisites' first), ``$(VENV)/bin/`` left out."""
    rules, current = {}, None
    for line in (ROOT / 'Makefile').read_text().splitlines():
        rule = re.match(r'^([\w-]+):(?!=)\s*(.*)$', line)
        if rule:
            current = rules.setdefault(rule.group(1), (rule.group(2).split(), []))
        elif line.startswith('\t') and current:
            current[1].append(line.strip().lstrip('@').replace('$(VENV)/bin/', ''))
        else:
            current = None
    assert target in rules, f'make {target}: no such target in the Makefile'
    prerequisites, recipe = rules[target]
    return [c for p in prerequisites if p in rules for c in make_recipe(p)] + recipe


def test_every_documented_command_is_well_formed():
    """``basicsr`` commands parse with the CLI's own parser and their ``-opt`` files are in options/; scripts
    and make targets exist. The check script runs them."""
    assert len(COMMANDS) > 30
    parser = build_parser('basicsr')
    for command in COMMANDS:
        words = command.words
        argv = cli_argv(words)
        if argv is not None:
            try:
                args = parser.parse_args(argv)
            except SystemExit:
                pytest.fail(f'{command.where}: does not parse: {command.first_line}')
            opt = getattr(args, 'opt', None)
            assert opt is None or (opt.startswith('options/') and (ROOT / opt).is_file()), \
                f'{command.where}: -opt {opt}: no such option file in options/'
        elif words[0].startswith('python') and words[1].endswith('.py'):
            assert (ROOT / words[1]).is_file(), f'{command.where}: no such script: {words[1]}'
        elif words[0] == 'make':
            make_recipe(words[1])


def test_every_option_file_named_in_the_docs_exists():
    """Prose and shell blocks (not example output) name option files, brace lists and globs included."""
    for path in docs.doc_files(str(ROOT)):
        text = re.sub(r'```text\n.*?```', '', open(path).read(), flags=re.S)
        for pattern in re.findall(r'(?<![\w/])options/[\w{},.*-]+\.ya?ml', text):
            for expanded in braces(pattern):
                assert glob.glob(str(ROOT / expanded)), f'{path}: {pattern}: no {expanded}'


def braces(pattern):
    """``a_{x,y}_{1,2}`` -> a_x_1, a_x_2, a_y_1, a_y_2."""
    parts = re.split(r'\{([^}]*)\}', pattern)
    choices = [[part] if index % 2 == 0 else part.split(',') for index, part in enumerate(parts)]
    return [''.join(combination) for combination in itertools.product(*choices)]


def produced(words):
    """What a command writes that other commands read: ``experiments/<name>`` of a training, a gate's folder."""
    if words[0] == 'make':
        return {made for line in make_recipe(words[1]) for made in produced(shlex.split(line))}
    argv = cli_argv(words) or ['']
    if argv[0] not in ('train', 'train-gate'):
        return set()
    args = build_parser('basicsr').parse_args(argv)
    if argv[0] == 'train':
        return {f'experiments/{yaml.safe_load((ROOT / args.opt).read_text())["name"]}/'}
    return {args.output.rstrip('/') + '/'}


def needed(words):
    """The files under experiments/ that the option file of a command other than ``train`` reads (test, infer,
    export, and commands added later)."""
    argv = cli_argv(words)
    opt = getattr(build_parser('basicsr').parse_args(argv), 'opt', None) if argv and argv[0] != 'train' else None
    if not opt:
        return set()
    found = set()

    def walk(node):
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and node.startswith('experiments/'):
            found.add(node)
    walk(yaml.safe_load((ROOT / opt).read_text()))
    return found


def test_documented_commands_say_which_training_they_need():
    """A command that reads a model's weights follows, in its own doc, the training that makes them, or says
    ``# needs:`` beside it; ``make demo`` (the setup) counts for every doc. Commands skipped for a need the
    check cannot meet (data, a GPU) are exempt."""
    available = {}
    setup = produced(shlex.split(SETUP))
    assert 'experiments/gate_demo/' in setup
    for command in COMMANDS:
        made = available.setdefault(command.file, set(setup))
        if any(not docs.is_command(need) for need in command.needs):
            continue
        for need in filter(docs.is_command, command.needs):
            made |= produced(shlex.split(docs.needed(need)))
        for path in needed(command.words):
            assert any(path.startswith(folder) for folder in made), \
                f'{command.where}: {command.first_line}: reads {path}, which nothing before it makes; ' \
                'add "# needs: <the command that makes it>" beside it'
        made |= produced(command.words)


@pytest.mark.parametrize('kind', ['train', 'test'])
def test_train_and_test_help_lists_basicsrs_options(kind, capsys):
    with pytest.raises(SystemExit):
        main([kind, '--help'])
    shown = capsys.readouterr().out
    for option in ('-opt FILE', '--auto_resume', '--debug', '--launcher', '--force_yml'):
        assert re.search(rf'^  {re.escape(option)}.*\n?\s+\S', shown, re.M), f'{option} without help:\n{shown}'


def test_every_option_of_every_subcommand_has_help(capsys):
    def subparsers(parser, name):
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    yield from subparsers(subparser, f'{name} {sub}')
    for name, parser in subparsers(build_parser('basicsr'), 'basicsr'):
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):  # its choices have their help
                assert action.help, f'{name}: {action.option_strings or action.dest} has no help'
    with pytest.raises(SystemExit):
        main(['train-gate', '--help'])
    shown = ' '.join(capsys.readouterr().out.split())
    assert 'training epochs (default: 5)' in shown and 'images per batch (default: 4)' in shown


def test_missing_weights_name_the_command_that_makes_them(tmp_path, monkeypatch, capsys):
    """Right after ``make demo`` the demo EDSR is not trained: infer, export and test say how to make it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'options').mkdir()
    for name in ('test_edsr_demo.yml', 'train_edsr_demo.yml', 'train_moesr.yml'):
        (tmp_path / 'options' / name).write_text((ROOT / 'options' / name).read_text())
    cv2.imwrite(str(tmp_path / 'in.png'), np.zeros((8, 8, 3), np.uint8))
    hint = '(train it first: basicsr train -opt options/train_edsr_demo.yml)'
    assert main(['infer', '-opt', 'options/test_edsr_demo.yml', '-i', 'in.png', '-o', 'out']) == 2
    assert f'weights file not found: experiments/demo_EDSR_x2_f32b4/models/net_g_latest.pth {hint}' \
        in capsys.readouterr().err
    assert main(['export', '-opt', 'options/test_edsr_demo.yml', '--onnx', 'x.onnx']) == 2
    assert hint in capsys.readouterr().err
    assert main(['test', '-opt', 'options/test_edsr_demo.yml']) == 2
    assert f'path.pretrain_network_g: no such file: experiments/demo_EDSR_x2_f32b4/models/net_g_latest.pth {hint}' \
        in capsys.readouterr().err
    # no hint where no recipe beside the option file makes the file
    (tmp_path / 'options' / 'train_edsr_demo.yml').unlink()
    assert main(['infer', '-opt', 'options/test_edsr_demo.yml', '-i', 'in.png', '-o', 'out']) == 2
    assert 'train it first' not in capsys.readouterr().err
