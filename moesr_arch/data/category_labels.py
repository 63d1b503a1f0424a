"""Category labels in YOLO text format: parsing, checking and rasterising to category maps.

One text file per HR image, same stem as the image. Each non-empty line is one region::

    <class> x1 y1 x2 y2 x3 y3 ...     polygon, >= 3 points, coordinates normalised to the HR image
    <class> cx cy w h                 box (centre, width, height), normalised

``<class>`` is an id of the categories file (:mod:`moesr_arch.data.categories`). Blank lines and
lines starting with ``#`` are ignored. Every pixel outside all regions is background.

Rasterising (:func:`rasterize_category_map`) puts a pixel into a region when its centre lies inside
the polygon. Where regions of different categories overlap, the **smaller region wins** (smaller
polygon area; equal areas: the lower class id), so a person in front of a car stays a person whatever
the order of the lines. The map holds ``0..K-1`` for categories and ``K`` for background.

Bad labels raise :class:`LabelError` naming the file and line.
"""
import os
from dataclasses import dataclass

import numpy as np

# Coordinates written as 1.0000001 by float rounding are fine; anything further out is an error.
_TOLERANCE = 1e-6


class LabelError(ValueError):
    """A label file or line that is missing or malformed."""


@dataclass(frozen=True)
class Region:
    """One labelled region: its class id, polygon (N x 2, normalised x, y), and where it came from."""
    category: int
    points: np.ndarray
    source: str
    line: int

    @property
    def area(self):
        """Polygon area in normalised units."""
        return polygon_area(self.points)


def polygon_area(points):
    """Area of a polygon given as N x 2 points (shoelace formula)."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def parse_label_line(line, source, number, num_categories):
    """Line ``number`` of the label file ``source`` as a :class:`Region`, or None for a blank or comment line.

    Raises :class:`LabelError` naming ``source:number`` and the problem.
    """
    where = f'{source}:{number}'
    line = line.strip().lstrip('\ufeff')
    if not line or line.startswith('#'):
        return None
    fields = line.split()
    try:
        category = int(fields[0])
    except ValueError:
        raise LabelError(f'{where}: class id must be an integer, got {fields[0]!r}') from None
    if not 0 <= category < num_categories:
        raise LabelError(f'{where}: unknown class id {category} (the categories file has ids 0..{num_categories - 1})')
    try:
        values = np.array([float(v) for v in fields[1:]], dtype=np.float64)
    except ValueError:
        raise LabelError(f'{where}: coordinates must be numbers: {line!r}') from None
    if not np.all(np.isfinite(values)):
        raise LabelError(f'{where}: coordinates must be finite numbers: {line!r}')
    if len(values) == 4:
        cx, cy, w, h = values
        if w <= 0 or h <= 0:
            raise LabelError(f'{where}: box width and height must be positive, got w={w:g} h={h:g}')
        points = np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx + w / 2, cy + h / 2],
                           [cx - w / 2, cy + h / 2]])
    elif len(values) % 2:
        raise LabelError(f'{where}: odd number of coordinates ({len(values)}); a polygon is x y pairs, '
                         'a box is cx cy w h')
    elif len(values) < 6:
        raise LabelError(f'{where}: {len(values)} coordinates; a polygon needs at least 3 points (6 numbers), '
                         'a box exactly 4 numbers')
    else:
        points = values.reshape(-1, 2)
    if points.min() < -_TOLERANCE or points.max() > 1 + _TOLERANCE:
        bad = points[(points < -_TOLERANCE) | (points > 1 + _TOLERANCE)]
        if len(values) == 4:  # 4 numbers are YOLO's box; a 2-point "polygon" lands here far more often than not
            raise LabelError(f'{where}: coordinates must be normalised to [0, 1]: 4 numbers are read as a box '
                             f'cx cy w h, and this box reaches {bad[0]:g}; a polygon needs at least 3 points '
                             '(6 numbers)')
        raise LabelError(f'{where}: coordinates must be normalised to [0, 1], got {bad[0]:g}')
    return Region(category, np.clip(points, 0, 1), source, number)


def parse_label_text(text, source, num_categories):
    """Parse the contents of one label file; ``source`` names it in errors. Returns a list of :class:`Region`."""
    regions = [parse_label_line(line, source, number, num_categories)
               for number, line in enumerate(text.splitlines(), start=1)]
    return [region for region in regions if region is not None]


def label_problems(text, source, num_categories):
    """Every bad line of one label file, as :class:`LabelError` messages (empty list: the file is fine)."""
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            parse_label_line(line, source, number, num_categories)
        except LabelError as error:
            problems.append(str(error))
    return problems


def clip_polygon(points, x0, y0, x1, y1):
    """The part of a polygon inside the box ``[x0, x1] x [y0, y1]`` (Sutherland-Hodgman), as M x 2 points.

    A concave polygon cut into pieces comes back as one polygon whose pieces are joined along the box
    border; those joins enclose no area, so rasterising it (even-odd rule) gives the pieces exactly.
    Returns an empty array when nothing is left inside.
    """
    polygon = [tuple(p) for p in np.asarray(points, dtype=np.float64)]
    for axis, bound, keep_below in ((0, x0, False), (0, x1, True), (1, y0, False), (1, y1, True)):
        if not polygon:
            break
        inside = [(p[axis] <= bound) if keep_below else (p[axis] >= bound) for p in polygon]
        clipped = []
        for i, (current, current_in) in enumerate(zip(polygon, inside)):
            previous, previous_in = polygon[i - 1], inside[i - 1]
            if current_in != previous_in:  # the edge crosses the bound: add the crossing point
                t = (bound - previous[axis]) / (current[axis] - previous[axis])
                crossing = [previous[0] + t * (current[0] - previous[0]), previous[1] + t * (current[1] - previous[1])]
                crossing[axis] = bound
                clipped.append(tuple(crossing))
            if current_in:
                clipped.append(current)
        polygon = clipped
    return np.array(polygon, dtype=np.float64).reshape(-1, 2)


def format_label_line(category, points):
    """A YOLO polygon line: ``<class> x1 y1 x2 y2 ...`` with 6 decimals (points normalised to [0, 1])."""
    return ' '.join([str(int(category))] + [f'{v:.6f}' for v in np.clip(points, 0, 1).reshape(-1)])


def read_labels(path, num_categories, required=False):
    """Read the label file ``path``. A missing file means background only, or an error when ``required``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        if required:
            raise LabelError(f'{path}: label file missing (labels_required is true; write an empty file for an '
                             'image without categories)')
        return []
    with open(path, encoding='utf-8') as f:
        return parse_label_text(f.read(), path, num_categories)


def paint_order(regions):
    """Regions in the order they are painted: larger first, so the smaller of two overlapping regions wins."""
    return sorted(regions, key=lambda r: (-r.area, -r.category, r.line))


def rasterize_category_map(regions, height, width, num_categories, extent=None):
    """Rasterise ``regions`` to an int64 ``height x width`` map: class id inside regions, ``num_categories`` elsewhere.

    Args:
        regions (list[Region]): from :func:`parse_label_text` / :func:`read_labels`.
        height (int), width (int): size of the map.
        num_categories (int): K; background pixels get the value K.
        extent (tuple[float, float] | None): ``(w, h)``: how many map pixels the normalised range [0, 1]
            spans. Default ``(width, height)``. For an LR map of labels normalised to an HR image whose size is
            not a multiple of the scale, pass ``(W_hr / scale, H_hr / scale)`` so the map matches the LR pixels.
    """
    extent_w, extent_h = (width, height) if extent is None else extent
    category_map = np.full((height, width), num_categories, dtype=np.int64)
    for region in paint_order(regions):
        category_map[polygon_mask(region.points * (extent_w, extent_h), height, width)] = region.category
    return category_map


def polygon_mask(points, height, width):
    """Boolean ``height x width`` mask of the pixels whose centre lies inside a polygon (even-odd rule).

    ``points`` are N x 2 (x, y) in pixel units, pixel ``j`` covering ``[j, j + 1)``. A centre exactly on a
    left/top edge is inside, on a right/bottom edge outside, so regions that share an edge tile the image
    without gaps or double pixels (OpenCV's fillPoly includes both edges).
    """
    x0, y0 = points[:, 0], points[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    centres = np.arange(height, dtype=np.float64)[:, None] + 0.5
    low, high = np.minimum(y0, y1), np.maximum(y0, y1)
    crosses = (centres >= low) & (centres < high)  # [H, E]; horizontal edges never cross
    with np.errstate(divide='ignore', invalid='ignore'):
        xs = x0 + (centres - y0) * (x1 - x0) / (y1 - y0)
    xs = np.sort(np.where(crosses, xs, np.inf), axis=1)
    rows, pairs = np.nonzero(np.isfinite(xs[:, 1::2]))  # consecutive crossings pair up as spans
    starts = np.clip(np.ceil(xs[rows, 2 * pairs] - 0.5), 0, width).astype(np.int64)
    ends = np.clip(np.ceil(xs[rows, 2 * pairs + 1] - 0.5), 0, width).astype(np.int64)
    edges = np.zeros((height, width + 1), dtype=np.int32)
    np.add.at(edges, (rows, starts), 1)
    np.add.at(edges, (rows, ends), -1)
    return np.cumsum(edges[:, :width], axis=1) > 0


def categories_present(category_map, num_categories):
    """Float multi-hot vector ``[K]`` of the categories with at least one pixel in ``category_map``."""
    present = np.zeros(num_categories, dtype=np.float32)
    values = np.unique(np.asarray(category_map))
    present[values[values < num_categories]] = 1
    return present
