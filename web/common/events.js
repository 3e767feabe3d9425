// Our websocket events, heard once per page. Exports only (see dom.js).
//
// The page's `api` warns "Unknown message type" for every message of a type nobody has
// registered, so the entry module registers each of ours at setup (not when the tab opens);
// views subscribe here and unsubscribe when they go.

/** Every event our server sends (server_routes/events.py). */
export const EVENTS = [
  "model-shelf.task",
  "model-shelf.library-changed",
  "model-shelf.root",
  "model-shelf.import",
];

/** Listen to each of `EVENTS` on `api` now; returns {on(type, fn(detail)) -> undo}. */
export function eventHub(api) {
  const targets = new EventTarget();
  for (const type of EVENTS) {
    api.addEventListener(type, (event) => {
      targets.dispatchEvent(new CustomEvent(type, { detail: event.detail ?? {} }));
    });
  }
  return {
    on(type, fn) {
      if (!EVENTS.includes(type)) throw new Error(`Model Shelf sends no ${type} event`);
      const handler = (event) => fn(event.detail);
      targets.addEventListener(type, handler);
      return () => targets.removeEventListener(type, handler);
    },
  };
}
