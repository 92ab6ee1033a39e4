// The map block the page sends (widgets/scatter_map/payload.py has the layout) and the
// selection value sent back.

const MAGIC = "SMAP";
const VERSION = 1;
const CONTINUOUS = 1;
const HEADER = 16;

export function decodeMap(bytes) {
  // Typed arrays need their offset aligned to their element size: copy when it is not.
  const block = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const magic = String.fromCharCode(...block.subarray(0, 4));
  const version = view.getUint32(4, true);
  if (magic !== MAGIC || version !== VERSION) {
    throw new Error(`not a map block (magic ${magic}, version ${version})`);
  }
  const n = view.getUint32(8, true);
  const continuous = (view.getUint32(12, true) & CONTINUOUS) !== 0;
  let offset = block.byteOffset + HEADER;
  const take = (Type) => {
    const values = new Type(block.buffer, offset, n);
    offset += Math.ceil(values.byteLength / 4) * 4;
    return values;
  };
  const x = take(Float32Array);
  const y = take(Float32Array);
  const rows = take(Uint32Array);
  const colour = take(continuous ? Float32Array : Uint16Array);
  const labels = take(Uint16Array);
  return { n, x, y, rows, colour, labels, continuous };
}

// Rows the page asks to highlight (uint32, little-endian): a selection made on another map.
export function decodeRows(bytes) {
  if (!bytes || bytes.length < 4) return new Uint32Array(0);
  const block = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Uint32Array(block.buffer, block.byteOffset, Math.floor(block.byteLength / 4));
}

// [version, map tag, sequence, held, n, rows..., m, sheets...] as uint32
export function encodeValue(mapTag, sequence, held, rows, sheets) {
  const words = new Uint32Array(6 + rows.length + sheets.length);
  words.set([VERSION, mapTag, sequence, held, rows.length]);
  words.set(rows, 5);
  words[5 + rows.length] = sheets.length;
  words.set(sheets, 6 + rows.length);
  return words;
}

// The first 32 bits of a block's digest (MapPayload.digest_word): which block the frame holds.
export function digestWord(digest) {
  return digest ? Number.parseInt(digest.slice(0, 8), 16) : 0;
}
