"""alignDRAW's alignment pictures (viz/alignment.py): shading follows the weights, the window is
where `windows` says, padding draws nothing, the GIF and the matrix PNG are what they claim."""

import pytest
import torch
from PIL import Image

from genlearn.viz.alignment import (
    SHADE,
    alignment_frames,
    alignment_layout,
    alignment_matrix_figure,
    save_alignment_gif,
    save_alignment_matrix,
    shade,
)

RED = (255, 0, 0)
WHITE = (255, 255, 255)
FULL = "the digit 7 is at the top left of the image ."  # 12 words
SHORT = "the digit 4 is on the left of the digit 8"  # 11: the final "." left out


def inputs(T=3, n=2, size=20, L=12):
    canvases = torch.zeros(T, n, 1, size, size)
    windows = torch.tensor([2.0, 3.0, 9.0, 12.0]).expand(T, n, 4).clone()
    alphas = torch.zeros(T, n, L)
    alphas[..., 0] = 1.0
    return canvases, windows, alphas


def corner(frame, box):
    """A pixel of a word's box that its letters never cover (the box has a margin)."""
    return frame.getpixel((box[0], box[1]))


def whiteness_lost(rgb):
    return sum(255 - v for v in rgb)


def test_one_frame_per_step_all_the_same_size():
    canvases, windows, alphas = inputs(T=5)
    frames = alignment_frames(canvases, windows, alphas, [FULL, SHORT], scale=2)
    assert len(frames) == 5
    assert all(f.mode == "RGB" and f.size == frames[0].size for f in frames)
    assert len({f.tobytes() for f in frames}) == 5  # the progress bar grows with t


def test_each_word_is_shaded_by_its_weight_at_that_step():
    canvases, windows, alphas = inputs(T=3)
    alphas.zero_()
    alphas[0, 0, 2] = 1.0  # step 0: all weight on word 2 ("7")
    alphas[1, 0, 5] = 1.0  # step 1: all on word 5 ("top")
    alphas[2, 0, 2], alphas[2, 0, 5] = 0.25, 0.75
    alphas[:, 1, 0] = 1.0
    frames = alignment_frames(canvases, windows, alphas, [FULL, SHORT], scale=2, progress=False)
    boxes = alignment_layout([FULL, SHORT], 20, 20, scale=2).word_boxes[0]
    assert corner(frames[0], boxes[2]) == SHADE and corner(frames[0], boxes[5]) == WHITE
    assert corner(frames[1], boxes[5]) == SHADE and corner(frames[1], boxes[2]) == WHITE
    assert whiteness_lost(corner(frames[2], boxes[5])) > whiteness_lost(corner(frames[2], boxes[2])) > 0
    assert corner(frames[2], boxes[2]) == shade(0.25)
    for j in set(range(12)) - {2, 5}:  # weight 0 everywhere else: white
        assert all(corner(f, boxes[j]) == WHITE for f in frames)
    # the whole box is shaded, not only its corner: most of word 2's box is SHADE at step 0
    x0, y0, x1, y1 = boxes[2]
    box = frames[0].crop((x0, y0, x1 + 1, y1 + 1))
    assert dict((c, k) for k, c in box.getcolors())[SHADE] > 0.5 * box.width * box.height


def test_layout_boxes_are_inside_the_frame_under_the_canvas_and_disjoint():
    layout = alignment_layout([FULL, SHORT, "the digit 1 is at the bottom right of the image ."], 60, 60, 3)
    width, height = layout.size
    for (ox, oy), boxes in zip(layout.canvas_origins, layout.word_boxes):
        for x0, y0, x1, y1 in boxes:
            assert ox <= x0 <= x1 < width and oy + 60 * 3 <= y0 <= y1 < height
        for a, b in zip(boxes, boxes[1:]):  # left to right on a line, or on a later line
            assert a[2] < b[0] or a[3] < b[1]
    assert [len(b) for b in layout.word_boxes] == [12, 11, 12]


def test_the_write_window_is_drawn_in_red_where_windows_says():
    canvases, windows, alphas = inputs(T=2, n=2)
    windows[1, 1] = torch.tensor([0.0, 0.0, 19.0, 19.0])
    scale = 2
    frames = alignment_frames(canvases, windows, alphas, [FULL, SHORT], scale=scale, progress=False)
    layout = alignment_layout([FULL, SHORT], 20, 20, scale=scale)
    ox, oy = layout.canvas_origins[1]
    f0, f1 = frames

    def px(frame, x, y, last=False):
        """The top-left (or, with `last`, bottom-right) output pixel of canvas pixel (x, y)."""
        d = scale - 1 if last else 0
        return frame.getpixel((ox + x * scale + d, oy + y * scale + d))

    # step 0: window (2, 3)-(9, 12): the outline runs along the outer edge of those canvas pixels
    assert px(f0, 2, 7) == RED and px(f0, 5, 3) == RED
    assert px(f0, 9, 7, last=True) == RED and px(f0, 5, 12, last=True) == RED
    assert px(f0, 5, 7) == (0, 0, 0) and px(f0, 9, 7) == (0, 0, 0)  # inside: the (black) canvas
    assert px(f0, 1, 7, last=True) != RED and px(f0, 10, 7) != RED and px(f0, 5, 2, last=True) != RED
    # step 1: the whole canvas
    assert px(f1, 0, 10) == RED and px(f1, 19, 10, last=True) == RED and px(f1, 2, 7) != RED
    # without windows, no red anywhere
    plain = alignment_frames(canvases, None, alphas, [FULL, SHORT], scale=scale, progress=False)
    assert RED not in {c for _, c in plain[0].getcolors(1 << 16)}


def test_the_canvas_is_drawn_at_its_origin():
    canvases, windows, alphas = inputs(T=1, n=2)
    canvases[0, 1, 0, 4, 6] = 1.0
    canvases[0, 1, 0, 5, 6] = 0.5
    layout = alignment_layout([FULL, SHORT], 20, 20, scale=3)
    (frame,) = alignment_frames(canvases, None, alphas, [FULL, SHORT], scale=3, progress=False)
    ox, oy = layout.canvas_origins[1]
    assert frame.getpixel((ox + 6 * 3 + 2, oy + 4 * 3)) == WHITE
    assert frame.getpixel((ox + 6 * 3, oy + 5 * 3 + 2)) == (128, 128, 128)
    assert frame.getpixel((ox + 7 * 3, oy + 4 * 3)) == (0, 0, 0)


def test_a_padded_caption_draws_no_box_for_padding():
    canvases, windows, alphas = inputs(T=2, n=2)
    assert len(alignment_layout([FULL, SHORT], 20, 20, scale=2).word_boxes[1]) == 11
    a = alignment_frames(canvases, windows, alphas, [FULL, SHORT], scale=2)
    alphas[:, 1, 11] = 1.0  # weight on the padding slot changes nothing
    b = alignment_frames(canvases, windows, alphas, [FULL, SHORT], scale=2)
    assert [f.tobytes() for f in a] == [f.tobytes() for f in b]
    # and with no weight on its words, nothing under the short caption's canvas is shaded
    alphas[:, 1] = 0.0
    c = alignment_frames(canvases, windows, alphas, [FULL, SHORT], scale=2, progress=False)
    layout = alignment_layout([FULL, SHORT], 20, 20, scale=2)
    x0, y0 = layout.word_boxes[1][0][:2]
    panel = c[0].crop((x0, y0, x0 + 20 * 2, layout.size[1]))
    assert not {c for _, c in panel.getcolors(1 << 16)} - {WHITE, (0, 0, 0)}


def test_gif_round_trips_with_T_frames_and_exact_colours(tmp_path):
    canvases, windows, alphas = inputs(T=4)
    canvases[:, :, 0, 10:, :] = torch.linspace(0, 1, 20)
    alphas[:, 0, 0], alphas[:, 0, 2] = 0.0, 1.0
    path = save_alignment_gif(canvases, windows, alphas, [FULL, SHORT], tmp_path / "a.gif", scale=2)
    frames = alignment_frames(canvases, windows, alphas, [FULL, SHORT], scale=2)
    layout = alignment_layout([FULL, SHORT], 20, 20, scale=2)
    ox, oy = layout.canvas_origins[0]
    with Image.open(path) as img:
        assert img.n_frames == 4 and img.size == frames[0].size and img.info.get("loop") == 0
        for t in range(4):
            img.seek(t)
            rgb = img.convert("RGB")
            assert rgb.getpixel((ox + 2 * 2, oy + 7 * 2)) == RED
            assert corner(rgb, layout.word_boxes[0][2]) == SHADE
            assert corner(rgb, layout.word_boxes[0][0]) == WHITE
            grey = rgb.getpixel((ox + 11 * 2, oy + 15 * 2))[0]  # canvas value 11/19 of the ramp
            assert abs(grey - frames[t].getpixel((ox + 11 * 2, oy + 15 * 2))[0]) <= 2


def test_matrix_png_has_one_heatmap_per_caption_without_padding(tmp_path):
    T = 6
    captions = [FULL, SHORT, "the digit 3 is on the right of the digit 5 .", "the digit 2 is at the top of"]
    alphas = torch.softmax(torch.randn(T, 4, 12, generator=torch.Generator().manual_seed(0)), -1)
    alphas[:, 1, 11:] = 0.0
    alphas[:, 3, 8:] = 0.0
    fig, axes = alignment_matrix_figure(alphas, captions)
    assert len(axes) == 4
    assert "each word of the caption (columns) at each drawing step t (rows)" in fig._suptitle.get_text()
    for i, ax in enumerate(axes):
        words = captions[i].split()
        assert [t.get_text() for t in ax.get_xticklabels()] == words
        (image,) = ax.get_images()
        assert image.get_array().shape == (T, len(words))
        torch.testing.assert_close(torch.as_tensor(image.get_array().data), alphas[:, i, : len(words)])
        assert ax.get_title().replace("\n", " ") == captions[i]
    fig6, axes6 = alignment_matrix_figure(alphas.repeat(1, 2, 1)[:, :6], captions + captions[:2])
    assert len(axes6) == 6  # a 2 x 4 grid, the last 2 cells empty, and the colour bar
    assert len(fig6.axes) == 8 + 1 and sum(not ax.axison for ax in fig6.axes) == 2
    path = save_alignment_matrix(alphas, captions, tmp_path / "m.png")
    assert path.stat().st_size > 1000
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > img.height


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c, w, a, s: (c, w, a, s[:1]), "1 captions for 2 canvases"),
        (lambda c, w, a, s: (c, w, a[:, :, :11], s), "L>=12"),
        (lambda c, w, a, s: (c, w, a[:2], s), "T=3"),
        (lambda c, w, a, s: (c, w, a[:, :1], s), "n=2"),
        (lambda c, w, a, s: (c, w, a[0], s), "alphas must be"),
        (lambda c, w, a, s: (c, w[:, :, :2], a, s), "windows must be (T=3, n=2, 4)"),
        (lambda c, w, a, s: (c[0], w, a, s), "canvases must be (T, n, C, H, W)"),
        (lambda c, w, a, s: (c, w, a, FULL), "not one string"),
        (lambda c, w, a, s: (c, w, a, [FULL, "  "]), "caption 1 is empty"),
        (lambda c, w, a, s: (c, w, a * float("nan"), s), "finite"),
    ],
)
def test_mismatched_inputs_are_refused_with_a_clear_message(change, message):
    args = change(*inputs(T=3, n=2), [FULL, SHORT])
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        alignment_frames(*args)


def test_matrix_refuses_mismatched_alphas():
    with pytest.raises(ValueError, match="3 captions of up to 12 words"):
        alignment_matrix_figure(torch.zeros(4, 2, 12), [FULL, SHORT, FULL])
