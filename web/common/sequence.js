// Debounced, sequenced requests: the answer to an old query never overwrites a newer one.
// Exports only (see dom.js).

/**
 * Wrap `fetcher(value, signal)` so that calls within `delayMs` collapse into one, earlier
 * requests still running are aborted, and `onResult(result, value)` only ever sees the answer
 * to the latest call (an answer that arrives late, for an older value, is dropped).
 * `onError(error, value)` likewise only hears about the latest call.
 */
export function latestOnly(fetcher, onResult, { delayMs = 150, onError = () => {} } = {}) {
  let timer = null;
  let sequence = 0;
  let controller = null;

  function run(value) {
    const mine = ++sequence;
    controller?.abort();
    controller = new AbortController();
    const { signal } = controller;
    Promise.resolve()
      .then(() => fetcher(value, signal))
      .then(
        (result) => {
          if (mine === sequence) onResult(result, value);
        },
        (error) => {
          if (mine === sequence && error?.name !== "AbortError") onError(error, value);
        },
      );
  }

  const call = (value, { now = false } = {}) => {
    clearTimeout(timer);
    if (now) run(value);
    else timer = setTimeout(() => run(value), delayMs);
  };
  call.cancel = () => {
    clearTimeout(timer);
    sequence += 1;
    controller?.abort();
  };
  return call;
}

/** A plain trailing debounce. */
export function debounce(fn, delayMs) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), delayMs);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}
