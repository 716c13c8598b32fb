// latentgraph's editor extension: for now only an "about" entry naming the node pack.
// Loaded by ComfyUI's frontend (WEB_DIRECTORY inside ComfyUI, /extensions/latentgraph/ on our server).
import { app } from "../../scripts/app.js";

app.registerExtension({
  name: "latentgraph.about",
  // Shown on the About page of the settings dialog.
  aboutPageBadges: [
    { label: "latentgraph", url: "https://pypi.org/project/latentgraph/", icon: "pi pi-sitemap" },
  ],
});
