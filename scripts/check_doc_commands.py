"""Run every command of the README and the docs as written, in a fresh clone right after ``make demo``.

The commands are the lines of the fenced shell blocks (```bash, ```sh, ```shell) of README.md, docs/*.md and
datasets/README.md that start with ``basicsr``, ``moesr``, ``make``, ``python``, ``torchrun`` or
``.venv/bin/...``, with their continuation lines (``\\``) and here-documents; other lines (loops, ``pip``,
``mkdir``) are not run. A comment ``# needs: X (why, for the reader)`` on a command's line or on the comment
lines just above it (at the top of a block: for every command of the block) says what the command needs
besides ``make demo``; X is the text before `` (``:

- a command (``# needs: make demo-edsr``): it is run first (every command runs once per check: one that
  already ran, as a need or from the docs, is not run again);
- paths (X's first word has a ``/`` or a ``.``, and so has every path in X:
  ``# needs: datasets/DIV2K/DIV2K_train_HR (see datasets/README.md)``): the command is skipped, saying so,
  when one of them does not exist in the clone;
- anything else (``# needs: a CUDA GPU``): the command is skipped with that reason.

Usage::

    python scripts/check_doc_commands.py                  # a fresh clone, make demo, then every command
    python scripts/check_doc_commands.py --list           # the commands and their needs; nothing runs
    python scripts/check_doc_commands.py --skip '^make test$' --only docs/tools.md
    python scripts/check_doc_commands.py --clone DIR --setup ''   # an existing clone, as it is

The clone is of the committed ``HEAD`` (uncommitted changes are not in it), in a temporary folder (``--work``)
with this repository's ``../shared`` linked beside it when there is one. Each command runs with ``bash -c``
in the clone, with the clone's ``.venv/bin`` first on ``PATH`` (what ``. .venv/bin/activate`` gives), without
``PYTHONPATH`` and the calling ``make``'s variables, under ``--timeout``; its output goes to
``<work>/logs/``. A failure is reported as ``FILE:LINE: command`` with the exit code and the last lines of
its output, and the check goes on (``-x`` stops it); the exit code is 1 when a command failed. The temporary
folder is removed after a check that passed (``--keep`` keeps it). Standard library only: it runs before
any ``.venv`` exists.
"""
import argparse
import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC_FILES = ('README.md', 'docs/*.md', 'datasets/README.md')  # in this order
SHELL_BLOCKS = {'bash', 'sh', 'shell'}
FENCE = re.compile(r'^(\s*)(`{3,}|~{3,})\s*([\w+-]*)')
COMMAND = re.compile(r'(?:basicsr|moesr|make|python[0-9.]*|torchrun|\.venv/bin/\S+)(?:\s|$)')
NEEDS = re.compile(r'#\s*needs:\s*(.+?)\s*$')
HEREDOC = re.compile(r'<<-?\s*([\'"]?)(\w+)\1')
TAIL_LINES = 25  # of a failed command's output


@dataclass
class Command:
    """One documented command: where it is written, its text as written, and its ``# needs:`` markers."""
    file: str
    line: int
    text: str
    needs: list = field(default_factory=list)

    @property
    def where(self):
        return f'{self.file}:{self.line}'

    @property
    def words(self):
        """The command line as the shell splits it (continuations joined, comments and here-document left out)."""
        return shell_words(self.text)

    @property
    def first_line(self):
        line = self.text.splitlines()[0].rstrip(' \\')
        return line if len(line) <= 110 else line[:107] + '...'


def shell_words(text):
    head = text.split('\n')
    lines = [head[0]]
    while lines[-1].rstrip().endswith('\\') and len(lines) < len(head):
        lines[-1] = lines[-1].rstrip()[:-1]
        lines.append(head[len(lines)])
    return shlex.split(' '.join(lines), comments=True)


def fenced_blocks(text):
    """``(language, [(line number, line), ...])`` of each fenced block, the fence's indentation removed."""
    block, fence = None, None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if block is None and match:
            indent, fence, language = match.groups()
            block = (language.lower(), [], len(indent))
        elif block is not None and match and match.group(2).startswith(fence) and not match.group(3):
            yield block[0], block[1]
            block = None
        elif block is not None:
            block[1].append((number, line[block[2]:] if not line[:block[2]].strip() else line.lstrip()))


def extract(path, root=ROOT):
    """The commands of the shell blocks of the markdown file ``path``, in order."""
    relative = os.path.relpath(path, root)
    with open(path, encoding='utf-8') as handle:
        text = handle.read()
    commands = []
    for language, lines in fenced_blocks(text):
        if language not in SHELL_BLOCKS:
            continue
        whole_block, pending, started, index = [], [], False, 0
        while index < len(lines):
            number, line = lines[index]
            index += 1
            stripped = line.strip()
            if stripped.startswith('#'):  # a comment: its marker is for the next command, at the block's top
                marker = NEEDS.search(stripped)  # for all of them
                (pending if started else whole_block).extend([marker.group(1)] if marker else [])
                continue
            started = started or bool(stripped)
            parts = [line]
            while parts[-1].rstrip().endswith('\\') and index < len(lines):
                parts.append(lines[index][1])
                index += 1
            needs = whole_block + pending + [m.group(1) for m in map(NEEDS.search, parts) if m]
            heredoc = HEREDOC.search(parts[-1])
            while heredoc and index < len(lines):
                parts.append(lines[index][1])
                index += 1
                if parts[-1].strip() == heredoc.group(2):
                    break
            pending = []
            if COMMAND.match(stripped):
                commands.append(Command(relative, number, '\n'.join(parts), needs))
    return commands


def doc_files(root=ROOT):
    files = []
    for pattern in DOC_FILES:
        files += sorted(glob.glob(os.path.join(root, pattern)))
    return files


def documented_commands(root=ROOT, only=()):
    """Every documented command of the repository at ``root`` (of the files in ``only`` when given)."""
    only = {os.path.normpath(path) for path in only}
    return [command for path in doc_files(root) if not only or os.path.relpath(path, root) in only
            for command in extract(path, root)]


def needed(need):
    """What a ``# needs:`` text asks for: the text before `` (`` (the rest says why, for the reader)."""
    return need.partition(' (')[0].strip()


def is_command(need):
    return bool(COMMAND.match(needed(need)))


def unmet(need, clone):
    """Why a need that is not a command is not met in ``clone`` (None: it is)."""
    words = needed(need).split()
    if not words or not ('/' in words[0] or '.' in words[0]):
        return f'needs {need}'
    missing = [word for word in words if ('/' in word or '.' in word)
               and not os.path.exists(os.path.join(clone, os.path.expanduser(word)))]
    return f'needs {" ".join(missing)} (absent)' if missing else None


# ------------------------------------------------------------------------------------------------
# Running

class Check:
    """Runs commands in a clone, each once, and keeps the tally."""

    def __init__(self, clone, logs, timeout, stop_first=False):
        self.clone, self.logs, self.timeout, self.stop_first = clone, logs, timeout, stop_first
        self.done = {}  # the command's words -> (where it ran, whether it passed)
        self.passed, self.skipped, self.failed = [], [], []
        env = {k: v for k, v in os.environ.items()
               if k not in ('PYTHONPATH', 'PYTHONHOME', 'VIRTUAL_ENV', 'MAKEFLAGS', 'MFLAGS', 'MAKELEVEL')}
        venv = os.path.join(clone, '.venv')
        env.update(PATH=os.path.join(venv, 'bin') + os.pathsep + env.get('PATH', ''), VIRTUAL_ENV=venv)
        self.env = env

    def execute(self, text, where, timeout):
        """``(exit code or None on timeout, seconds, log file)`` of ``bash -c text`` in the clone."""
        log = os.path.join(self.logs, f'{len(os.listdir(self.logs)) + 1:03d}_' +
                           re.sub(r'[^\w.-]+', '_', where) + '.log')
        start = time.time()
        with open(log, 'w') as output:
            output.write(f'# {where}\n{text}\n\n')
            output.flush()
            process = subprocess.Popen(['bash', '-c', text], cwd=self.clone, env=self.env, stdout=output,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                code = None
                stop(process)
            except BaseException:  # Ctrl-C: the command's whole process group goes with the check
                stop(process)
                raise
        return code, time.time() - start, log

    def run(self, command, label, timeout=None):
        """Run ``command`` (its needs first) unless it ran already; whether it passed."""
        reasons = [reason for reason in (unmet(need, self.clone) for need in command.needs
                                         if not is_command(need)) if reason]
        if reasons:
            print(f'{label} {command.where}  {command.first_line}  SKIPPED: {"; ".join(reasons)}')
            self.skipped.append((command, '; '.join(reasons)))
            return True
        key = tuple(command.words)
        if key in self.done:
            where, ok = self.done[key]
            print(f'{label} {command.where}  {command.first_line}  ran already ({where}{"" if ok else ", failed"})')
            return ok
        for need in filter(is_command, command.needs):
            if not self.run(Command(command.file, command.line, needed(need)), f'{label} (need)', timeout):
                print(f'{label} {command.where}  {command.first_line}  not run: its need `{need}` failed')
                self.failed.append((command, f'its need `{need}` failed'))
                self.done[key] = (command.where, False)
                return False
        print(f'{label} {command.where}  {command.first_line}', end='  ', flush=True)
        code, seconds, log = self.execute(command.text, command.where, timeout or self.timeout)
        ok = code == 0
        self.done[key] = (command.where, ok)
        if ok:
            print(f'ok ({seconds:.1f} s)')
            self.passed.append((command, seconds))
            return True
        why = f'timed out after {seconds:.0f} s' if code is None else f'exit {code} after {seconds:.1f} s'
        print(f'FAILED ({why})')
        print(f'  {command.where}: {command.first_line}')
        with open(log, errors='replace') as handle:
            tail = handle.read().replace('\r', '\n').splitlines()[-TAIL_LINES:]
        print('\n'.join(f'  | {line}' for line in tail) + f'\n  (output: {log})')
        self.failed.append((command, why))
        if self.stop_first:
            raise StopCheck()
        return False


class StopCheck(Exception):
    pass


def stop(process):
    """End ``process`` and everything it started (its own session), politely first."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def make_clone(repo, work):
    """A fresh clone of ``repo``'s committed HEAD in ``work``, with ``repo/../shared`` linked beside it."""
    clone = os.path.join(work, os.path.basename(os.path.abspath(repo)))
    subprocess.run(['git', 'clone', '--quiet', repo, clone], check=True)
    shared = os.path.join(os.path.dirname(os.path.abspath(repo)), 'shared')
    if os.path.isdir(shared):
        os.symlink(shared, os.path.join(work, 'shared'))
    return clone


def summary(check):
    print(f'\n{len(check.passed)} passed, {len(check.failed)} failed, {len(check.skipped)} skipped')
    for command, reason in check.skipped:
        print(f'  skipped {command.where}: {command.first_line}  ({reason})')
    for command, reason in check.failed:
        print(f'  FAILED  {command.where}: {command.first_line}  ({reason})')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repo', default=ROOT, help='the repository to clone (default: this one)')
    parser.add_argument('--clone', help='run in this existing clone instead of a fresh one')
    parser.add_argument('--work', help='folder for the clone and the logs (default: a new temporary folder)')
    parser.add_argument('--setup', default='make demo',
                        help="run first in the clone (default: '%(default)s'; '' for none)")
    parser.add_argument('--timeout', type=float, default=1800, help='seconds per command (default: %(default)s)')
    parser.add_argument('--setup_timeout', type=float, default=3600,
                        help='seconds for --setup, which installs .venv (default: %(default)s)')
    parser.add_argument('--only', action='append', default=[], metavar='FILE',
                        help='only the commands of this doc file, e.g. docs/tools.md (repeatable)')
    parser.add_argument('--skip', action='append', default=[], metavar='REGEX',
                        help='skip the commands this regular expression finds (repeatable)')
    parser.add_argument('--list', action='store_true', help='print the commands and their needs; run nothing')
    parser.add_argument('--keep', action='store_true', help='keep the temporary folder after a check that passed')
    parser.add_argument('-x', '--stop_first', action='store_true', help='stop at the first failure')
    return parser.parse_args(argv)


def interrupt(signum, frame):
    raise KeyboardInterrupt(f'signal {signum}')


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)  # like Ctrl-C: the running command's processes end with the check
    if args.list:
        for command in documented_commands(args.repo, args.only):
            needs = ''.join(f'\n      needs: {need}' for need in command.needs)
            print(f'{command.where}  {command.first_line}{needs}')
        return 0
    work = os.path.abspath(args.work or tempfile.mkdtemp(prefix='moesr-doc-commands-'))
    os.makedirs(work, exist_ok=True)
    clone = os.path.abspath(args.clone) if args.clone else make_clone(args.repo, work)
    logs = os.path.join(work, 'logs')
    os.makedirs(logs, exist_ok=True)
    commands = documented_commands(clone, args.only)
    print(f'{len(commands)} documented commands; clone {clone}; logs {logs}')
    check = Check(clone, logs, args.timeout, args.stop_first)
    start = time.time()
    try:
        if args.setup and not check.run(Command('(setup)', 0, args.setup), '[setup]', args.setup_timeout):
            raise StopCheck()
        for number, command in enumerate(commands, 1):
            label = f'[{number}/{len(commands)}]'
            skip = next((pattern for pattern in args.skip if re.search(pattern, command.text)), None)
            if skip is not None:
                print(f'{label} {command.where}  {command.first_line}  SKIPPED: --skip {skip}')
                check.skipped.append((command, f'--skip {skip}'))
                continue
            check.run(command, label)
    except StopCheck:
        pass
    except KeyboardInterrupt:
        print(f'\ninterrupted; clone and logs kept in {work}', file=sys.stderr)
        return 130
    summary(check)
    print(f'{time.time() - start:.0f} s in all')
    if check.failed or args.keep or args.work or args.clone:
        print(f'clone and logs: {work}')
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if check.failed else 0


if __name__ == '__main__':
    sys.exit(main())
