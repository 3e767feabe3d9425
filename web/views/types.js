// The type folders a model can go in: asked of the server once per page (library/layout.py
// holds the list; inside ComfyUI, less the folders this install hides) and shared by every view.
// Exports only (see ../common/dom.js).

let typeFolders = null;

/** Resolves to the type folder names, in the library's order. A failed answer is asked again. */
export function loadTypeFolders(client) {
  typeFolders ??= client.types().then(
    (answer) => answer.types,
    (error) => {
      typeFolders = null;
      throw error;
    },
  );
  return typeFolders;
}
