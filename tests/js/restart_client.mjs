// A client that lives through a server restart: run by tests/e2e/test_js_client.py, which
// stops the server once this client writes REVERB_MARK and starts a new one on the same port
// and database. Exits 0 when every event arrived once, in order, and the send made while the
// server was away was stored; else 1, saying what it saw.
import { writeFileSync } from "node:fs";

import { ReverbClient } from "../../reverb/web/reverb-client.js";
import { MemoryStorage, recordingSocket } from "./helpers.mjs";

const { REVERB_URL, REVERB_LOGIN, REVERB_PASSWORD, REVERB_CHAT, REVERB_MARK } = process.env;
const EXPECTED_SEQ = Number(process.env.REVERB_EXPECTED_SEQ);
const TIMEOUT_MS = 60_000;

const { closes, WebSocket } = recordingSocket();
const rc = new ReverbClient({ baseUrl: REVERB_URL, storage: new MemoryStorage(), WebSocket });
const seqs = [];
const statuses = [];
const acks = [];
let sent = null;
function done(ok, why) {
  console.log(JSON.stringify({ ok, why, seqs, statuses, closes, acks, outbox: rc.outbox }));
  rc.disconnect();
  process.exit(ok ? 0 : 1);
}
setTimeout(() => done(false, "timed out"), TIMEOUT_MS);

await rc.login(REVERB_LOGIN, REVERB_PASSWORD);
rc.track(REVERB_CHAT, 0);
rc.on("message.created", (e) => {
  seqs.push(e.seq);
  if (e.seq === 2) writeFileSync(REVERB_MARK, "online"); // restart now
  check();
});
rc.on("ack", (a) => {
  acks.push(a.message.seq);
  check();
});
rc.on("status", (status) => {
  statuses.push(status);
  // Written while the server is away: kept, and sent once the new one answers.
  if (status === "connecting" && seqs.length >= 2 && !sent) sent = rc.send(REVERB_CHAT, { content: "during the restart" });
});
rc.connect();

function check() {
  if (rc.lastSeq(REVERB_CHAT) < EXPECTED_SEQ || acks.length < 1) return;
  const inOrder = seqs.every((s, i) => s === i + 1) && seqs.length === EXPECTED_SEQ;
  const restarted = closes.includes(1012) && statuses.join() === "connecting,online,connecting,online";
  done(inOrder && restarted && rc.outbox.length === 0, "seqs in order once, 1012, one reconnect");
}
