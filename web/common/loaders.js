// Dragging a model from the sidebar onto the canvas creates the loader node for it.
// Exports only (see dom.js); the entry module installs `installCanvasDrop`.

/** The drag data type: JSON {type, name} of a library model. */
export const MODEL_MIME = "application/x-model-shelf-model";

/** Library type folder -> [loader node class, widget holding the model name]. */
export const LOADERS = {
  checkpoints: ["CheckpointLoaderSimple", "ckpt_name"],
  loras: ["LoraLoader", "lora_name"],
  vae: ["VAELoader", "vae_name"],
  text_encoders: ["CLIPLoader", "clip_name"],
  diffusion_models: ["UNETLoader", "unet_name"],
  controlnet: ["ControlNetLoader", "control_net_name"],
  clip_vision: ["CLIPVisionLoader", "clip_name"],
  upscale_models: ["UpscaleModelLoader", "model_name"],
  style_models: ["StyleModelLoader", "style_model_name"],
  gligen: ["GLIGENLoader", "gligen_name"],
  hypernetworks: ["HypernetworkLoader", "hypernetwork_name"],
  photomaker: ["PhotoMakerLoader", "photomaker_model_name"],
  diffusers: ["DiffusersLoader", "model_path"],
};

/** Put a model on a drag: its type and name (what a loader's combo lists). */
export function setModelDrag(event, model) {
  event.dataTransfer.setData(MODEL_MIME, JSON.stringify({ type: model.type, name: model.name }));
  event.dataTransfer.setData("text/plain", model.name);
  event.dataTransfer.effectAllowed = "copy";
}

function liteGraph() {
  return globalThis.LiteGraph;
}

/**
 * Create the loader node for `model` at the graph position `pos` ([x, y]).
 * Returns the node, or throws an Error saying why not (no loader for that type...).
 */
export function createLoaderNode(app, model, pos) {
  const entry = LOADERS[model.type];
  if (!entry) {
    if (model.type === "embeddings") {
      throw new Error(`Embeddings are used in prompts: embedding:${model.name}`);
    }
    throw new Error(`No loader node for ${model.type}`);
  }
  const [nodeType, widgetName] = entry;
  const LiteGraph = liteGraph();
  const node = LiteGraph?.createNode(nodeType);
  if (!node) throw new Error(`The node ${nodeType} is not available`);
  node.pos = [pos[0], pos[1]];
  const widget = node.widgets?.find((w) => w.name === widgetName);
  if (widget) {
    widget.value = model.name;
    widget.callback?.(model.name);
  }
  app.graph.add(node);
  app.graph.setDirtyCanvas?.(true, true);
  app.canvas?.setDirty?.(true, true);
  return node;
}

/**
 * Handle drops of our drag type on the canvas (capture phase, so ComfyUI's own drop handling,
 * which loads dropped files as workflows, never sees them). Returns the uninstaller.
 */
export function installCanvasDrop(app, onError) {
  const isOurs = (event) => event.dataTransfer?.types?.includes(MODEL_MIME);
  const onCanvas = (event) => {
    const canvas = app.canvasEl ?? app.canvas?.canvas;
    return canvas && (event.target === canvas || canvas.contains?.(event.target));
  };
  const dragover = (event) => {
    if (!isOurs(event) || !onCanvas(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  };
  const drop = (event) => {
    if (!isOurs(event) || !onCanvas(event)) return;
    event.preventDefault();
    event.stopPropagation();
    try {
      const model = JSON.parse(event.dataTransfer.getData(MODEL_MIME));
      const pos = app.canvas?.convertEventToCanvasOffset?.(event) ?? [event.offsetX, event.offsetY];
      createLoaderNode(app, model, pos);
    } catch (error) {
      onError?.(error);
    }
  };
  document.addEventListener("dragover", dragover, true);
  document.addEventListener("drop", drop, true);
  return () => {
    document.removeEventListener("dragover", dragover, true);
    document.removeEventListener("drop", drop, true);
  };
}
