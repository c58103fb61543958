import assert from "node:assert/strict";
import { jsonArrayBody } from "./json_steps.ts";

async function readAll(
  stream: ReadableStream<Uint8Array>,
): Promise<{ text: string; chunks: number }> {
  let text = "";
  let chunks = 0;
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    text += decoder.decode(chunk, { stream: true });
    chunks++;
  }
  return { text, chunks };
}

Deno.test("jsonArrayBody() makes the bytes JSON.stringify makes of the whole document, a slice per chunk", async () => {
  const item = (n: number) => ({ n, s: `é"\n${n}`, nested: { list: [n, null] } });
  for (const count of [0, 1, 2, 9, 10, 11, 35]) {
    const items = Array.from({ length: count }, (_, n) => n);
    for (const rest of [{}, { next: null }, { next: count + 1, lastLsn: 7 }]) {
      const { text, chunks } = await readAll(jsonArrayBody("items", items, item, rest, 10));
      assert.equal(text, JSON.stringify({ items: items.map(item), ...rest }), `${count} items`);
      assert.equal(chunks, Math.max(1, Math.ceil(count / 10)), `${count} items: chunks`);
    }
  }
});

Deno.test("jsonArrayBody() lets timers run between its chunks", async () => {
  const items = Array.from({ length: 50 }, (_, n) => n);
  const seen: string[] = [];
  const reader = jsonArrayBody("items", items, (n) => n, {}, 10).getReader();
  let ticks = 0;
  const timer = setInterval(() => ticks++, 0);
  try {
    while (true) {
      const { done } = await reader.read();
      if (done) break;
      seen.push(`chunk after ${ticks} ticks`);
    }
  } finally {
    clearInterval(timer);
  }
  assert.equal(seen.length, 5);
  assert.ok(ticks >= 4, `timers ran ${ticks} times across the chunks`);
});
