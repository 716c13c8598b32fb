// Per-scale previews for VAR (next-scale prediction): while LG_VARScaleStep, LG_VARSampler or
// LG_VARInpaint runs, every finished scale sends a progress event followed by a preview frame
// (the image the scales so far have fixed). ComfyUI's frontend shows the latest frame on the
// running node; this keeps a strip of them, one per scale, on the node that produced them.
// A LG_VARScaleStep node shows the strip up to its own scale, so a stepwise graph reads left to
// right as the image gains detail.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const VAR_TYPES = new Set(["LG_VARScaleStep", "LG_VARSampler", "LG_VARInpaint"]);
const STRIP = "lg_var_strip";

// The run's scales: index (1-based, as the progress event counts) -> {url, total}.
const runScales = new Map();
// Graph node id -> Map(scale -> {url, total}) for the scales that node produced.
const nodeScales = new Map();
let executingId = null;
let lastProgress = null;

function graphNode(id) {
  if (id == null) return null;
  return app.graph?.getNodeById?.(Number(id)) ?? app.graph?.getNodeById?.(id) ?? null;
}

function stripElement(node) {
  let widget = node.widgets?.find((w) => w.name === STRIP);
  if (!widget) {
    const element = document.createElement("div");
    element.className = "lg-var-strip";
    element.style.cssText =
      "display:flex;gap:4px;align-items:flex-end;overflow-x:auto;padding:2px 0;min-height:20px;";
    widget = node.addDOMWidget(STRIP, "lg_var_strip", element, {
      serialize: false, hideOnZoom: false, getMinHeight: () => 72, getMaxHeight: () => 96,
    });
  }
  return widget.element;
}

function render(node) {
  const own = nodeScales.get(String(node.id)) ?? new Map();
  let entries = [...own.entries()];
  if (node.type === "LG_VARScaleStep" && own.size) {
    // Its own scale and every coarser one this run produced.
    const last = Math.max(...own.keys());
    entries = [...runScales.entries()].filter(([scale]) => scale <= last);
    for (const [scale, item] of own) if (!runScales.has(scale)) entries.push([scale, item]);
  }
  entries.sort((a, b) => a[0] - b[0]);
  const element = stripElement(node);
  element.replaceChildren(...entries.map(([scale, item]) => {
    const figure = document.createElement("figure");
    figure.style.cssText = "margin:0;display:flex;flex-direction:column;align-items:center;";
    const img = document.createElement("img");
    img.src = item.url;
    img.alt = `scale ${scale}/${item.total}`;
    img.title = `scale ${scale} of ${item.total}`;
    img.dataset.scale = String(scale);
    img.style.cssText = "width:56px;height:56px;object-fit:contain;image-rendering:pixelated;" +
      "border:1px solid #555;background:#111;";
    const caption = document.createElement("figcaption");
    caption.textContent = `${scale}/${item.total}`;
    caption.style.cssText = "font-size:10px;color:#aaa;";
    figure.append(img, caption);
    return figure;
  }));
  node.setDirtyCanvas?.(true, true);
}

function remember(node, scale, total, blob) {
  const item = { url: URL.createObjectURL(blob), total };
  const key = String(node.id);
  if (!nodeScales.has(key)) nodeScales.set(key, new Map());
  const own = nodeScales.get(key);
  const previous = own.get(scale);
  own.set(scale, item);
  runScales.set(scale, item);
  // An older frame for this scale is no longer shown anywhere once replaced on both maps.
  if (previous && previous.url !== item.url && ![...runScales.values()].includes(previous)) {
    URL.revokeObjectURL(previous.url);
  }
  render(node);
  for (const other of app.graph?._nodes ?? []) {
    if (other !== node && other.type === "LG_VARScaleStep" && nodeScales.has(String(other.id))) render(other);
  }
}

function onExecuting(event) {
  // The frontend passes display_node || node: for a sampler's expanded scale nodes, the sampler.
  const id = event.detail == null ? null : String(event.detail);
  if (id !== executingId && id != null) {
    const node = graphNode(id);
    if (node && VAR_TYPES.has(node.type) && node.type !== "LG_VARScaleStep") {
      nodeScales.get(id)?.clear(); // a new run of a sampler starts its strip anew
    }
  }
  executingId = id;
}

function onProgress(event) {
  lastProgress = event.detail ?? null;
}

function onPreview(event) {
  const node = graphNode(executingId);
  if (!node || !VAR_TYPES.has(node.type) || !lastProgress) return;
  const scale = Number(lastProgress.value);
  const total = Number(lastProgress.max);
  if (!(scale >= 1) || !(event.detail instanceof Blob)) return;
  remember(node, scale, total, event.detail);
}

function onExecutionStart() {
  lastProgress = null;
}

app.registerExtension({
  name: "latentgraph.varPreview",
  setup() {
    api.addEventListener("executing", onExecuting);
    api.addEventListener("progress", onProgress);
    api.addEventListener("b_preview", onPreview);
    api.addEventListener("execution_start", onExecutionStart);
  },
});

// For tests and other extensions: what each node's strip holds.
export function scaleStrip(nodeId) {
  return [...(nodeScales.get(String(nodeId))?.keys() ?? [])].sort((a, b) => a - b);
}
