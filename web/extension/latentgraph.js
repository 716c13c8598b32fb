// latentgraph's editor extension: an "About latentgraph" entry (a badge on the settings
// dialog's About page and a Help menu command), and, on latentgraph's own server, a first graph
// made of our nodes (the core_demo template) instead of ComfyUI's default, whose checkpoint
// nodes we do not have.
// Loaded by ComfyUI's frontend: through WEB_DIRECTORY inside ComfyUI, from
// /extensions/latentgraph/ on our server.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const HOME = "https://pypi.org/project/latentgraph/";
// ComfyUI's default graph: if none of these exist, we run on our own server without ComfyUI.
const COMFY_DEFAULT_TYPES = ["CheckpointLoaderSimple", "KSampler", "CLIPTextEncode", "VAEDecode"];
const FIRST_TEMPLATE = "core_demo";

async function systemInfo() {
  try {
    const response = await api.fetchApi("/system_stats");
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}

const stats = await systemInfo();
const version = stats?.system?.latentgraph_version;
const device = stats?.devices?.[0]?.name;

function showAbout() {
  const lines = [
    version ? `latentgraph ${version}` : "latentgraph node pack",
    "Typed node graphs for generative image models, with a caching DAG executor.",
    device ? `Device: ${device}` : null,
    HOME,
  ].filter(Boolean);
  app.extensionManager.toast.add({
    severity: "info", summary: "About latentgraph", detail: lines.join("\n"), life: 8000,
  });
}

// ComfyUI's default graph, recognised by its node types when none of them exists here.
function isComfyDefaultGraph(graphData) {
  const nodes = Array.isArray(graphData?.nodes) ? graphData.nodes : [];
  const known = globalThis.LiteGraph?.registered_node_types ?? {};
  const types = new Set(nodes.map((n) => n?.type));
  return COMFY_DEFAULT_TYPES.every((t) => types.has(t) && !(t in known));
}

async function fetchFirstGraph() {
  if (!stats?.system?.latentgraph_version) return null; // inside ComfyUI: leave its default alone
  try {
    const response = await fetch(api.fileURL(`/templates/${FIRST_TEMPLATE}.json`));
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}

const firstGraph = await fetchFirstGraph();

app.registerExtension({
  name: "latentgraph.editor",
  aboutPageBadges: [
    { label: version ? `latentgraph v${version}` : "latentgraph", url: HOME, icon: "pi pi-sitemap" },
  ],
  commands: [
    { id: "latentgraph.About", label: "About latentgraph", icon: "pi pi-info-circle", function: showAbout },
  ],
  menuCommands: [{ path: ["Help"], commands: ["latentgraph.About"] }],
  // Runs before the editor looks for missing node types, so ComfyUI's default graph (a new
  // user's first graph, "new workflow") becomes our first template instead of a list of errors.
  beforeConfigureGraph(graphData) {
    if (!firstGraph || !isComfyDefaultGraph(graphData)) return;
    for (const key of Object.keys(graphData)) delete graphData[key];
    Object.assign(graphData, structuredClone(firstGraph));
  },
});
