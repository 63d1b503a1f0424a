"""Pictures of per-pixel routing: each pixel coloured by the expert that produced it, with a colour key."""
import cv2
import numpy as np

# BGR colours from cheap to expensive experts: blue, green, yellow, orange, red, then more.
PALETTE = [(200, 110, 30), (60, 170, 60), (40, 200, 230), (30, 130, 250), (40, 40, 220), (180, 60, 160),
           (140, 140, 140), (120, 70, 20)]


def expert_map_image(expert_map, labels, row_height=18, min_width=280):
    """A BGR uint8 picture of ``expert_map`` (H, W ints) with a key below: one colour swatch per label.

    ``labels[i]`` describes expert ``i`` (e.g. ``'1 hidden layer: 34.2%'``). The key is widened to
    ``min_width`` pixels when the map is narrower, so it stays readable for small images.
    """
    expert_map = np.asarray(expert_map)
    colours = np.array([PALETTE[i % len(PALETTE)] for i in range(len(labels))], dtype=np.uint8)
    picture = colours[expert_map]
    h, w = expert_map.shape
    width = max(w, min_width)
    canvas = np.full((h + row_height * len(labels) + 6, width, 3), 255, np.uint8)
    canvas[:h, :w] = picture
    for index, label in enumerate(labels):
        top = h + 4 + index * row_height
        cv2.rectangle(canvas, (4, top + 2), (4 + row_height - 5, top + row_height - 3),
                      tuple(int(c) for c in colours[index]), thickness=-1)
        cv2.putText(canvas, f'E{index}: {label}', (row_height + 4, top + row_height - 5), cv2.FONT_HERSHEY_SIMPLEX,
                    0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
