// Colour maps as 256-entry lookup tables. Viridis (sequential) and coolwarm (diverging, grey middle)
// stay readable on light and dark pages and for the common colour-vision deficiencies.

const VIRIDIS = ["#440154", "#472c7a", "#3b518b", "#2c718e", "#21908d", "#27ad81", "#5cc863", "#aadc32", "#fde725"];
const COOLWARM = ["#3b4cc0", "#5f7fe8", "#8db0fe", "#b9d0f9", "#dddddd", "#f5c4ac", "#f39879", "#d95847", "#b40426"];

/** Okabe–Ito colours for label lines (distinct for colour-blind readers), with a dash per round. */
export const CATEGORICAL = ["#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442", "#999999"];

function rgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function table(stops) {
  const colours = stops.map(rgb);
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (colours.length - 1);
    const k = Math.min(Math.floor(t), colours.length - 2);
    const f = t - k;
    for (let c = 0; c < 3; c++) lut[3 * i + c] = Math.round(colours[k][c] * (1 - f) + colours[k + 1][c] * f);
  }
  return lut;
}

export const viridis = table(VIRIDIS);
export const coolwarm = table(COOLWARM);

/** The index (0..255) of `value` on a map spanning [lo, hi]. */
export function level(value, lo, hi) {
  if (!(hi > lo)) return 128;
  const t = (value - lo) / (hi - lo);
  return Math.max(0, Math.min(255, Math.round(t * 255)));
}

/** CSS colour of `value` on `lut` over [lo, hi]. */
export function css(lut, value, lo, hi) {
  const i = 3 * level(value, lo, hi);
  return `rgb(${lut[i]}, ${lut[i + 1]}, ${lut[i + 2]})`;
}
