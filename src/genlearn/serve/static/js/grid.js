// Where each sample sits in a grid picture: genlearn's grids (viz.grids) put the images `cols`
// to a row (a row per label or caption, else a square), 2 pixels apart, upscaled as a whole.
// The page needs this to point at one sample of a picture that holds many.

const PAD = 2;

/** Images per row: one row per label or caption drawn several times, else a square. */
export function columns(n, each = 1) {
  return each > 1 ? each : Math.max(1, Math.ceil(Math.sqrt(n)));
}

/**
 * The layout of `n` images of `shape` [C, H, W] in a grid picture `naturalWidth` pixels wide:
 * {cols, rows, scale, cell(i)} where cell(i) gives the i-th image's box in picture pixels.
 * `given` ({columns, rows, pad, scale, height, width}: a process frame's layout) wins where the
 * server states it.
 */
export function gridLayout(n, shape, naturalWidth, each = 1, given = null) {
  const H = given?.height ?? shape[1];
  const W = given?.width ?? shape[2];
  const cols = given?.columns ?? columns(n, each);
  const rows = given?.rows ?? Math.ceil(n / cols);
  const pad = given?.pad ?? PAD;
  const scale = given?.scale ?? naturalWidth / (cols * (W + pad) + pad);
  const cell = (i) => {
    const r = Math.floor(i / cols);
    const c = i % cols;
    return { x: (pad + c * (W + pad)) * scale, y: (pad + r * (H + pad)) * scale, w: W * scale, h: H * scale };
  };
  const width = (cols * (W + pad) + pad) * scale;
  const height = (rows * (H + pad) + pad) * scale;
  return { cols, rows, scale, pad, cell, width, height, n };
}

/** An integer zoom that shows a picture `width` pixels wide at about `target` pixels (crisp pixels). */
export function zoom(width, target = 560, most = 4) {
  if (width >= target) return 1;
  return Math.max(1, Math.min(most, Math.floor(target / width)));
}
