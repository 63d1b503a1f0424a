"""`make bench`'s report: every requested section is written, and GPU figures from another machine are kept."""
import subprocess
import sys

from conftest import ROOT


def test_report_is_regenerated_and_keeps_the_gpu_section(tmp_path):
    report = tmp_path / 'benchmarks.md'
    report.write_text('# Benchmarks\n\nold\n\n## archs\n\nstale table\n\n## moesr\n\nkept table\n\n'
                      '## GPU\n\nNVIDIA H100 80GB: EDSR 512 images/s\n')
    subprocess.run([sys.executable, str(ROOT / 'scripts' / 'benchmark.py'), '--only', 'archs', '--quick',
                    '--output', str(report)], check=True, cwd=tmp_path, capture_output=True)
    text = report.read_text()
    assert 'stale table' not in text
    assert '## archs' in text and '| VDSR' in text
    assert text.index('## archs') < text.index('## moesr\n\nkept table')  # sections not asked for stay, in place
    assert text.rstrip().endswith('## GPU\n\nNVIDIA H100 80GB: EDSR 512 images/s')
