// Sprite sheets of 32-px thumbnails (widgets/scatter_map/sprites.py): point i of the map is cell
// i % perSheet of sheet floor(i / perSheet). A sheet is fetched the first time it is needed.

// Media URLs are absolute paths on the Streamlit server; this page is served from
// <server>/component/<name>/index.html, so the server's base is what comes before /component/.
const BASE = window.location.href.split("/component/")[0];

export class Sheets {
  constructor(onLoad) {
    this.onLoad = onLoad;
    this.config = { urls: {}, count: 0, per_sheet: 1024, columns: 32, thumb: 32, ask: false };
    this.images = new Map();
  }

  update(config) {
    this.config = config;
  }

  clear() {
    this.images.clear();
  }

  sheetOf(point) {
    return Math.floor(point / this.config.per_sheet);
  }

  hasUrl(sheet) {
    return String(sheet) in this.config.urls;
  }

  // The loaded image of a sheet, or null while it loads or has no URL yet.
  image(sheet) {
    const known = this.images.get(sheet);
    if (known) {
      return known.complete && known.naturalWidth > 0 ? known : null;
    }
    const url = this.config.urls[String(sheet)];
    if (!url) {
      return null;
    }
    const image = new Image();
    image.onload = () => this.onLoad(sheet);
    image.onerror = () => this.images.delete(sheet); // dropped by the server: try again later
    image.src = BASE + url;
    this.images.set(sheet, image);
    return null;
  }

  // Draw point i's thumbnail into ctx at (x, y), size px; false while its sheet is not there.
  draw(ctx, point, x, y, size) {
    const image = this.image(this.sheetOf(point));
    if (!image) {
      return false;
    }
    const { per_sheet: perSheet, columns, thumb } = this.config;
    const cell = point % perSheet;
    ctx.drawImage(image, (cell % columns) * thumb, Math.floor(cell / columns) * thumb, thumb, thumb, x, y, size, size);
    return true;
  }
}
