// The reconnect delay as pure logic: full jitter under an exponential ceiling, capped.
import assert from "node:assert/strict";
import { test } from "node:test";

import { backoffDelay } from "../../reverb/web/reverb-client.js";

const CAP_MS = 30_000;

test("the ceiling doubles from half a second and stops at 30 s", () => {
  const almostOne = () => 1 - Number.EPSILON;
  const ceilings = [0, 1, 2, 3, 4, 5, 6, 7, 50, 5000].map((n) => backoffDelay(n, almostOne) + 1);
  assert.deepEqual(ceilings, [500, 1000, 2000, 4000, 8000, 16000, CAP_MS, CAP_MS, CAP_MS, CAP_MS]);
});

test("the delay is drawn from the whole range below the ceiling (full jitter)", () => {
  assert.equal(backoffDelay(4, () => 0), 0);
  assert.equal(backoffDelay(4, () => 0.5), 4000);
  // With the real random source: always inside [0, ceiling), and spread, not one value.
  for (const attempt of [0, 3, 10]) {
    const ceiling = Math.min(CAP_MS, 500 * 2 ** attempt);
    const delays = Array.from({ length: 200 }, () => backoffDelay(attempt));
    assert.ok(delays.every((d) => Number.isInteger(d) && d >= 0 && d < ceiling), String(delays));
    assert.ok(new Set(delays).size > 50, `${attempt}: too few distinct delays`);
    assert.ok(Math.min(...delays) < ceiling / 4 && Math.max(...delays) > (3 * ceiling) / 4);
  }
});
