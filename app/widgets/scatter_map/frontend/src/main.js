// The Explore map: every point of a run's map in WebGL (regl-scatterplot), its image on hover,
// and the images themselves on a 2-D canvas above the points once a view holds few of them.
// Selections go back to the page as uint32 rows (payload.js); see widgets/scatter_map/ for the
// page's side.

import createScatterplot from "regl-scatterplot";
import { Streamlit } from "streamlit-component-lib/dist/streamlit";
import { decodeMap, decodeRows, digestWord, encodeValue } from "./payload.js";
import { Sheets } from "./sheets.js";

const MAX_ASKED = 64; // sprites.MAX_ASKED: sheets the page registers at once when it must be asked
const ASK_DELAY_MS = 150; // the sheets a view needs go in one request, so the page reruns once
const MARGIN = 1.06; // the whole map fits with a little room around it
const HINT = "scroll: zoom · drag: pan · shift-drag: lasso · double-click: clear";

const $ = (id) => document.getElementById(id);
const frame = $("frame");
const area = $("plot");
const thumbsCanvas = $("thumbs");
const tip = $("tip");

let plot = null;
let args = null;
let map = null; // decodeMap(...) with nx, ny: coordinates scaled into [-1, 1]
let digest = null;
let mapTag = null;
let selection = []; // point indices
let sequence = 0;
let asked = []; // sheets asked of the page, most recent last
let askTimer = null;
let hovered = -1;
let hidden = new Set(); // legend categories switched off
let drawing = Promise.resolve();
let thumbsQueued = false;
let moved = false; // by the person: until then the whole map stays fitted to the plot area
let highlighted = null; // the page's last `highlight` bytes, applied once: a rerun with the same ones keeps a new selection
const sheets = new Sheets(() => {
  showTip();
  queueThumbs();
});

function normalised(decoded) {
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (let i = 0; i < decoded.n; i++) {
    x0 = Math.min(x0, decoded.x[i]);
    x1 = Math.max(x1, decoded.x[i]);
    y0 = Math.min(y0, decoded.y[i]);
    y1 = Math.max(y1, decoded.y[i]);
  }
  // One scale for both axes, so that distances on the map keep their meaning.
  const half = (Math.max(x1 - x0, y1 - y0, 1e-12) / 2) * MARGIN;
  const [cx, cy] = [(x0 + x1) / 2, (y0 + y1) / 2];
  const nx = new Float32Array(decoded.n);
  const ny = new Float32Array(decoded.n);
  for (let i = 0; i < decoded.n; i++) {
    nx[i] = (decoded.x[i] - cx) / half;
    ny[i] = (decoded.y[i] - cy) / half;
  }
  return { ...decoded, nx, ny };
}

function pointStyle(n) {
  if (n <= 2000) return { pointSize: 7, opacity: 0.85 };
  if (n <= 20000) return { pointSize: 4, opacity: 0.8 };
  if (n <= 200000) return { pointSize: 2.5, opacity: 0.7 };
  return { pointSize: 1.5, opacity: 0.6 };
}

function colourOf(i) {
  const legend = args.legend;
  if (!map.continuous) return legend.colours[map.colour[i]];
  return legend.colours[Math.round(unit(map.colour[i]) * (legend.colours.length - 1))];
}

function unit(value) {
  const { min, max } = args.legend;
  const t = (value - min) / (max - min || 1);
  return Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : 0;
}

// The whole map in view, whatever the shape of the plot area.
function fit() {
  moved = false;
  plot.zoomToArea({ x: -1, y: -1, width: 2, height: 2 });
}

// A group stands out from the rest of the map; one clicked point is ringed, and the map stays as it was.
function selectionDimming() {
  return selection.length > 1 ? 0.35 : 1;
}

function createPlot() {
  const { width, height } = area.getBoundingClientRect();
  plot = createScatterplot({
    canvas: $("points"),
    width,
    height,
    backgroundColor: "#ffffff",
    pointColorHover: "#000000",
    pointColorActive: "#ff4b4b",
    pointOutlineWidth: 2,
    pointSizeSelected: 2,
    lassoColor: "#31333f",
    lassoMinDelay: 10,
    lassoMinDist: 2,
    lassoType: "freeform",
  });
  plot.subscribe("pointOver", (i) => {
    hovered = i;
    showTip();
  });
  plot.subscribe("pointOut", () => {
    hovered = -1;
    showTip();
  });
  plot.subscribe("select", ({ points }) => {
    selection = Array.from(points);
    highlighted = null; // the person's own selection replaced the page's: the page's next one is drawn whatever it is
    plot.set({ opacityInactiveScale: selectionDimming() });
    send(true);
  });
  plot.subscribe("deselect", () => {
    selection = [];
    highlighted = null; // a page that keeps its highlight (Compare, cleared on another map) draws it again
    send(true);
  });
  plot.subscribe("view", () => {
    showTip();
    queueThumbs();
  });
  for (const [id, mouseMode, lassoType] of [["mode-pan", "panZoom", "freeform"], ["mode-box", "lasso", "rectangle"],
    ["mode-lasso", "lasso", "freeform"]]) {
    $(id).addEventListener("click", () => {
      plot.set({ mouseMode, lassoType });
      for (const other of ["mode-pan", "mode-box", "mode-lasso"]) {
        $(other).setAttribute("aria-pressed", String(other === id));
      }
    });
  }
  $("reset").addEventListener("click", fit);
  // The legend's width changes with the colouring, the frame's with the page: keep the plot filling the rest.
  new ResizeObserver(() => {
    const box = area.getBoundingClientRect();
    if (box.width > 0 && box.height > 0) {
      // The new shape takes effect on the next frame, when set() resolves.
      plot.set({ width: box.width, height: box.height }).then(() => {
        if (!moved && map) fit();
        queueThumbs();
      });
    }
  }).observe(area);
  for (const event of ["pointerdown", "wheel"]) {
    $("points").addEventListener(event, () => {
      moved = true;
    });
  }
  $("hint").textContent = HINT;
  // For a person at the browser's console, and for the browser tests: what is drawn, and where.
  window.scatterMap = {
    plot,
    get map() {
      return map;
    },
    get labelNames() {
      return args.labels;
    },
    screenOf: (i) => plot.getScreenPosition(i),
  };
}

// The page's value: the selection (a new sequence number when it is new) and the sheets asked for.
function send(newSelection) {
  if (newSelection) {
    sequence = Math.max(sequence + 1, Date.now() % 2 ** 32); // unique also after the frame reloads
  }
  const rows = map ? Uint32Array.from(selection, (i) => map.rows[i]) : new Uint32Array(0);
  Streamlit.setComponentValue(encodeValue(mapTag ?? 0, sequence, digestWord(digest), rows, asked));
}

function ask(needed) {
  const fresh = [...needed].filter((s) => !sheets.hasUrl(s));
  if (!args.sheets.ask || fresh.length === 0) return;
  asked = [...asked.filter((s) => !fresh.includes(s)), ...fresh].slice(-MAX_ASKED);
  clearTimeout(askTimer);
  askTimer = setTimeout(() => send(false), ASK_DELAY_MS);
}

function showTip() {
  if (hovered < 0 || !map || hovered >= map.n) {
    tip.style.display = "none";
    frame.dataset.hovered = "";
    return;
  }
  const i = hovered;
  const label = args.labels[map.labels[i]] ?? "";
  const legend = args.legend;
  let detail = `row ${map.rows[i]}`;
  if (legend.name !== "label") {
    const value = map.continuous ? Number(map.colour[i]).toPrecision(3) : legend.names[map.colour[i]];
    detail += ` · ${legend.name}: ${value}`;
  }
  tip.querySelector(".label").textContent = label;
  tip.querySelector(".detail").textContent = detail;
  const ctx = tip.querySelector("canvas").getContext("2d");
  ctx.fillStyle = "#f0f2f6";
  ctx.fillRect(0, 0, 32, 32);
  const shown = sheets.draw(ctx, i, 0, 0, 32);
  if (!shown) ask([sheets.sheetOf(i)]);
  tip.style.display = "block";
  const [x, y] = plot.getScreenPosition(i);
  const { width, height } = area.getBoundingClientRect();
  const box = tip.getBoundingClientRect();
  tip.style.left = `${x + 14 + box.width > width ? x - 14 - box.width : x + 14}px`;
  tip.style.top = `${Math.max(4, Math.min(height - box.height - 4, y - box.height / 2))}px`;
  frame.dataset.hovered = String(map.rows[i]);
  frame.dataset.hoverImage = shown ? "drawn" : "loading";
}

function queueThumbs() {
  if (!thumbsQueued) {
    thumbsQueued = true;
    requestAnimationFrame(drawThumbs);
  }
}

// The points in view as their images, when there are few enough of them to see each.
function drawThumbs() {
  thumbsQueued = false;
  const { width, height } = area.getBoundingClientRect();
  const scale = window.devicePixelRatio || 1;
  if (thumbsCanvas.width !== Math.round(width * scale) || thumbsCanvas.height !== Math.round(height * scale)) {
    thumbsCanvas.width = Math.round(width * scale);
    thumbsCanvas.height = Math.round(height * scale);
  }
  const ctx = thumbsCanvas.getContext("2d");
  ctx.setTransform(scale, 0, 0, scale, 0, 0);
  ctx.clearRect(0, 0, width, height);
  let drawn = 0;
  if (map && plot.get("isPointsDrawn")) {
    const inView = plot.get("pointsInView");
    frame.dataset.inView = String(inView.length);
    if (inView.length > 0 && inView.length <= args.thumbnails_below) {
      const places = inView.map((i) => plot.getScreenPosition(i));
      // As large as the room each point has where the points are, from 16 to 64 px.
      const xs = places.map(([x]) => Math.min(width, Math.max(0, x)));
      const ys = places.map(([, y]) => Math.min(height, Math.max(0, y)));
      const spread = (Math.max(...xs) - Math.min(...xs) + 32) * (Math.max(...ys) - Math.min(...ys) + 32);
      const size = Math.max(16, Math.min(64, Math.sqrt(spread / inView.length)));
      ctx.imageSmoothingEnabled = false; // a 32-px image enlarged stays sharp
      ctx.lineWidth = 2;
      const missing = new Set();
      for (const [k, i] of inView.entries()) {
        const [x, y] = places[k];
        const [left, top] = [x - size / 2, y - size / 2];
        if (sheets.draw(ctx, i, left, top, size)) {
          ctx.strokeStyle = colourOf(i);
          ctx.strokeRect(left, top, size, size);
          drawn += 1;
        } else {
          missing.add(sheets.sheetOf(i));
        }
      }
      ask(missing);
    }
  }
  frame.dataset.thumbnails = String(drawn);
}

function showLegend() {
  const legend = args.legend;
  const box = $("legend");
  box.replaceChildren();
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = legend.name;
  box.append(name);
  if (legend.kind === "continuous") {
    const scale = document.createElement("div");
    scale.className = "scale";
    scale.style.background = `linear-gradient(to top, ${legend.colours.join(", ")})`;
    const [low, high] = [legend.min, legend.max].map((v) => {
      const text = document.createElement("div");
      text.textContent = Number(v).toPrecision(3);
      return text;
    });
    box.append(high, scale, low);
    return;
  }
  if (!legend.shown) {
    const note = document.createElement("div");
    note.textContent = `${legend.names.length} values`;
    box.append(note);
    return;
  }
  legend.names.forEach((text, code) => {
    const entry = document.createElement("div");
    entry.className = "entry";
    entry.title = "click to hide or show";
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = legend.colours[code];
    const label = document.createElement("span");
    label.textContent = text;
    entry.append(swatch, label);
    entry.addEventListener("click", () => {
      hidden.has(code) ? hidden.delete(code) : hidden.add(code);
      entry.classList.toggle("off", hidden.has(code));
      filterHidden();
    });
    box.append(entry);
  });
}

function filterHidden() {
  if (hidden.size === 0) {
    plot.unfilter({ preventEvent: true });
  } else {
    const shown = [];
    for (let i = 0; i < map.n; i++) {
      if (!hidden.has(map.colour[i])) shown.push(i);
    }
    plot.filter(shown, { preventEvent: true });
  }
  queueThumbs();
}

function drawMap(samePoints) {
  const continuous = map.continuous;
  const zeros = new Float32Array(map.n);
  const values = continuous ? Float32Array.from(map.colour, unit) : zeros;
  const codes = continuous ? zeros : map.colour;
  const spatialIndex = samePoints ? plot.get("spatialIndex") : undefined;
  const keep = samePoints && selection.length ? selection : undefined;
  plot.set({ ...pointStyle(map.n), colorBy: continuous ? "valueB" : "valueA", pointColor: args.legend.colours,
    opacityInactiveScale: samePoints ? selectionDimming() : 1 });
  drawing = drawing
    .then(() => plot.draw({ x: map.nx, y: map.ny, valueA: codes, valueB: values },
      { zDataType: "categorical", wDataType: "continuous", spatialIndex, select: keep }))
    .then(() => {
      if (!samePoints) fit();
      frame.dataset.points = String(map.n);
      frame.dataset.digest = digest;
      queueThumbs();
    })
    .catch(fail);
}

function sameBytes(a, b) {
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return false;
  }
  return true;
}

// The rows the page highlights (a selection made on another map of the same images, on the
// Compare page) become this map's selection, drawn as its own is, without telling the page.
function highlight(bytes) {
  const given = bytes ?? new Uint8Array(0);
  if (sameBytes(given, highlighted)) return;
  highlighted = given.slice();
  const rows = decodeRows(given);
  drawing = drawing
    .then(() => {
      const pointOf = new Int32Array(map.n).fill(-1);
      map.rows.forEach((row, i) => {
        if (row < map.n) pointOf[row] = i;
      });
      selection = Array.from(rows, (row) => (row < map.n ? pointOf[row] : -1)).filter((i) => i >= 0);
      if (selection.length) {
        plot.select(selection, { preventEvent: true });
      } else {
        plot.deselect({ preventEvent: true });
      }
      plot.set({ opacityInactiveScale: selectionDimming() });
      frame.dataset.highlighted = String(selection.length);
    })
    .catch(fail);
}

function fail(error) {
  const box = $("error");
  box.textContent = `The map cannot be drawn: ${error.message ?? error}`;
  box.style.display = "block";
}

function onRender(event) {
  args = event.detail.args;
  frame.style.height = `${args.height}px`;
  Streamlit.setFrameHeight(args.height);
  sheets.update(args.sheets);
  try {
    if (!plot) createPlot();
    $("title").textContent = args.title;
    if (args.digest !== digest && args.payload.length === 0) {
      // The page thinks this frame holds the block (the frame was reloaded): say it holds none.
      digest = null;
      mapTag = args.map_tag;
      send(false);
    } else if (args.digest !== digest) {
      const samePoints = map !== null && args.map_tag === mapTag;
      const decoded = decodeMap(args.payload);
      map = samePoints ? { ...decoded, nx: map.nx, ny: map.ny } : normalised(decoded);
      digest = args.digest;
      if (!samePoints) {
        mapTag = args.map_tag;
        selection = [];
        asked = [];
        highlighted = null; // other points: the highlight is applied to them afresh
        sheets.clear();
      }
      hidden = new Set(); // each colouring has its own categories
      showLegend();
      drawMap(samePoints);
    }
    if (map && args.highlight !== undefined) highlight(args.highlight); // only a page that highlights sends it
  } catch (error) {
    fail(error);
  }
  showTip();
  queueThumbs();
}

Streamlit.events.addEventListener(Streamlit.RENDER_EVENT, onRender);
Streamlit.setComponentReady();
