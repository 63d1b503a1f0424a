"""Benchmark sections for ``scripts/benchmark.py``.

Each section module here defines ``run(quick: bool) -> list[Table]``; ``quick`` shrinks inputs so the whole
report can be smoke-tested. Tables keep ratios side by side with the absolute figures. ``measure.py`` is no
section: it holds the counts the sections and the tests share.
"""
from dataclasses import dataclass, field
from typing import List


@dataclass
class Table:
    title: str
    headers: List[str]
    rows: List[list]
    notes: List[str] = field(default_factory=list)

    def markdown(self):
        def cell(value):
            return f'{value:.4g}' if isinstance(value, float) else str(value)
        lines = [f'### {self.title}', '', '| ' + ' | '.join(self.headers) + ' |',
                 '|' + '---|' * len(self.headers)]
        lines += ['| ' + ' | '.join(cell(v) for v in row) + ' |' for row in self.rows]
        lines += [''] + [f'- {note}' for note in self.notes]
        return '\n'.join(lines) + '\n'
