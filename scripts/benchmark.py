"""Run every benchmark section in ``scripts/bench/`` and write the report (``make bench``).

Usage: ``python scripts/benchmark.py [--only archs,seemore] [--quick] [--output docs/benchmarks.md]``

The ``## GPU`` section of an existing output file (figures from a machine with a GPU, naming it) is
carried over into the new report. With ``--only``, the sections asked for replace their namesakes in an existing
output file and everything else in it stays (new sections go before ``## GPU``).

Each section prints its tables as it finishes; the report names the machine and the commands used.
``--quick`` shrinks every input to smoke-test the script itself (its figures mean nothing).
"""
import argparse
import datetime
import importlib
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / 'scripts')]

from moesr_arch.utils.atomic import atomic_write_text  # noqa: E402


def machine_description():
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    lines = [f'- CPU: {cpu}, {os.cpu_count()} cores visible, torch {torch.__version__} '
             f'({torch.get_num_threads()} threads), Python {platform.python_version()}']
    if torch.cuda.is_available():
        lines.append(f'- GPU: {torch.cuda.get_device_name(0)}')
    else:
        lines.append('- GPU: none on this machine (CPU figures only)')
    return '\n'.join(lines)


def kept_gpu_section(previous_report):
    """The ``## GPU`` section of an earlier report: figures measured on a machine with a GPU are kept
    when the report is regenerated on one without (the section's text names the device)."""
    text = previous_report.read_text() if previous_report.is_file() else ''
    start = text.find('\n## GPU')
    if start < 0:
        return ''
    end = text.find('\n## ', start + 1)
    return text[start + 1:end if end > 0 else len(text)].rstrip() + '\n'


def splice(previous, new_sections):
    """``previous`` (a report's text) with each of ``new_sections`` ({name: text starting '## name'}) in place of the
    section of that name, or before ``## GPU`` (else at the end) when it has none."""
    text = previous.rstrip() + '\n'
    for name, body in new_sections.items():
        body = body.rstrip() + '\n'
        start = text.find(f'\n## {name}\n')
        if start >= 0:
            end = text.find('\n## ', start + 1)
            text = text[:start + 1] + body + (text[end:] if end >= 0 else '')
        else:
            gpu = text.find('\n## GPU')
            text = text[:gpu + 1] + body + '\n' + text[gpu + 1:] if gpu >= 0 else text + '\n' + body
    return text


def sections():
    """The modules of ``scripts/bench/`` that define ``run(quick)``; the others (``measure.py``) are their helpers."""
    return sorted(p.stem for p in (ROOT / 'scripts' / 'bench').glob('*.py')
                  if p.stem != '__init__' and '\ndef run(' in p.read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--only', help='comma-separated sections (default: all of ' + ', '.join(sections()) + ')')
    parser.add_argument('--quick', action='store_true', help='tiny inputs: checks the script, not the speed')
    parser.add_argument('--output', help='write the markdown report here (e.g. docs/benchmarks.md)')
    args = parser.parse_args(argv)
    import moesr_arch  # noqa: F401  (registers the archs the sections build)
    chosen = args.only.split(',') if args.only else sections()
    unknown = set(chosen) - set(sections())
    if unknown:
        parser.error(f'unknown section(s) {", ".join(sorted(unknown))}; known: {", ".join(sections())}')
    report = ['# Benchmarks', '', f'Generated {datetime.date.today()} by `python scripts/benchmark.py'
              + (f' --only {args.only}' if args.only else '') + (' --quick' if args.quick else '') + '`.', '',
              machine_description(), '']
    measured = {}
    for name in chosen:
        started = time.perf_counter()
        module = importlib.import_module(f'bench.{name}')
        parts = [f'## {name}\n']
        for table in module.run(args.quick):
            text = table.markdown()
            print(text, flush=True)
            parts.append(text)
        parts.append(f'_Section `{name}` took {time.perf_counter() - started:.0f} s (`python scripts/benchmark.py --only '
                     f'{name}`, {datetime.date.today()})._\n')
        measured[name] = '\n'.join(parts)
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        if args.only and output.is_file():
            text = splice(output.read_text(), measured)
        else:
            text = '\n'.join(report + list(measured.values()) + [kept_gpu_section(output)])
        atomic_write_text(output, text)
        print(f'report written to {args.output}')


if __name__ == '__main__':
    main()
