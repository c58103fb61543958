/**
 * JSON answers with a long array (key lists, log pages) encoded a slice at a time, with a turn
 * of the event loop between slices, so other requests and the WAL's writes go on meanwhile.
 * The bytes are what `JSON.stringify` makes of the whole document at once.
 *
 * @module
 */
import { yieldToEventLoop } from "../../common/event_loop.ts";
import { HTTP_JSON_STEP_ITEMS } from "../../common/limits.ts";

const encoder = new TextEncoder();

/**
 * The JSON text of `{ [field]: items.map(encodeItem), ...rest }` as a stream: `stepItems` items
 * per chunk, the first chunk at once and each later one after a turn of the event loop. The
 * items must not change until the stream ends (the view's records never change in place). A
 * body of one chunk goes out with a Content-Length, a longer one chunked (server.ts).
 */
export function jsonArrayBody<T>(
  field: string,
  items: readonly T[],
  encodeItem: (item: T) => unknown,
  rest: Record<string, unknown>,
  stepItems: number = HTTP_JSON_STEP_ITEMS,
): ReadableStream<Uint8Array> {
  const tail = JSON.stringify(rest);
  const close = tail === "{}" ? "]}" : `],${tail.slice(1)}`;
  let at = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (at > 0) await yieldToEventLoop();
      const end = Math.min(items.length, at + stepItems);
      let text = at === 0 ? `{${JSON.stringify(field)}:[` : "";
      for (let i = at; i < end; i++) {
        if (i > 0) text += ",";
        text += JSON.stringify(encodeItem(items[i]));
      }
      at = end;
      if (at === items.length) text += close;
      controller.enqueue(encoder.encode(text));
      if (at === items.length) controller.close();
    },
  }, { highWaterMark: 0 });
}

/** A JSON response whose body is {@link jsonArrayBody}. */
export function jsonArrayResponse<T>(
  field: string,
  items: readonly T[],
  encodeItem: (item: T) => unknown,
  rest: Record<string, unknown>,
): Response {
  return new Response(jsonArrayBody(field, items, encodeItem, rest), {
    headers: { "content-type": "application/json" },
  });
}
