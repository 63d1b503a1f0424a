"""The one tile grid of the package: :func:`tile_spans`.

Both ways of running a network on parts of an image cut the image with it:

- ``basicsr infer``'s :class:`moesr_arch.inference.Tiler` (plain and arbitrary-scale networks):
  overlapping tiles (``overlap`` > 0), blended across the overlaps;
- MoE-SR's experts (:func:`moesr_arch.archs.sparse_crops.split_cores`): disjoint cores (``overlap`` 0), each
  run with a receptive-field margin of context and added in place, which is exact.
"""


def tile_spans(length, tile, overlap=0, align=1):
    """``[(start, end)]`` of tiles of at most ``tile`` covering ``length`` (one span if it fits or ``tile`` <= 0).

    ``overlap`` 0: disjoint tiles, the last one shorter. ``overlap`` > 0: tiles of ``tile`` stepping by
    ``tile - overlap``, the last one ending at ``length``. Starts are multiples of ``align`` (a tile grows
    by less than ``align`` for it), so tiles sample the whole image's output grid at float scales.
    """
    if tile <= 0 or length <= tile:
        return [(0, length)]
    if overlap <= 0:
        starts = sorted({start - start % align for start in range(0, length, tile)})
        return list(zip(starts, starts[1:] + [length]))
    step = max(tile - overlap, 1)
    starts = list(range(0, length - tile, step)) + [length - tile]
    starts = sorted({start - start % align for start in starts})
    return [(start, min(start + tile, length)) for start in starts[:-1]] + [(starts[-1], length)]
