// Realtime and streams with the official @trigger.dev/sdk 4.8.3, unmodified, against
// Python tasks: runs.subscribeToRun (the shape protocol), a public token's scope on it,
// streams.read live, subscribeToRun().withStreams(), and a stream written the way a
// TypeScript task writes one (the SDK's v1 writer). Run by tests/interop/test_official_sdk.py.
import assert from "node:assert/strict";
import { auth, configure, queues, runs, streams, tasks } from "@trigger.dev/sdk";
import { apiClientManager } from "@trigger.dev/core/v3";
// the writer a task's streams.pipe uses inside the TypeScript runtime
import { StandardRealtimeStreamsManager } from "@trigger.dev/core/v3/workers";

configure({ baseURL: process.env.TRIGGER_API_URL, secretKey: process.env.TRIGGER_SECRET_KEY });

async function step(name, fn) {
  try {
    await fn();
    console.log(`ok ${name}`);
  } catch (error) {
    console.error(`FAILED ${name}:`, error);
    process.exit(1);
  }
}

/** Fails after `ms` instead of hanging the test. */
function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

let stepsRun;
await step("subscribeToRun sees QUEUED, EXECUTING, COMPLETED and metadata in order", async () => {
  // the queue is paused while the subscription starts, so the run is seen QUEUED first
  await queues.pause({ type: "task", name: "realtime-steps" });
  const handle = await tasks.trigger("realtime-steps", { steps: ["fetch", "render", "upload"] });
  stepsRun = handle.id;
  const seen = [];
  await within(60_000, (async () => {
    for await (const run of runs.subscribeToRun(handle.id)) {
      seen.push({ status: run.status, steps: run.metadata?.steps ?? [] });
      if (seen.length === 1) await queues.resume({ type: "task", name: "realtime-steps" });
      if (run.status === "COMPLETED") {
        assert.deepEqual(run.output, { done: 3 });
        assert.ok(run.finishedAt instanceof Date);
      }
    } // ends by itself once the run is final
  })(), "the subscription to end");
  const order = ["QUEUED", "DEQUEUED", "EXECUTING", "COMPLETED"];
  const statuses = seen.map((s) => s.status).filter((s, i, all) => s !== all[i - 1]);
  assert.equal(statuses[0], "QUEUED", JSON.stringify(seen));
  assert.equal(statuses.at(-1), "COMPLETED", JSON.stringify(seen));
  assert.ok(statuses.includes("EXECUTING"), JSON.stringify(seen));
  assert.deepEqual(statuses, [...statuses].sort((a, b) => order.indexOf(a) - order.indexOf(b)));
  // every metadata seen extends the one before: the changes arrive in order
  for (let i = 1; i < seen.length; i++) {
    const [before, after] = [seen[i - 1].steps, seen[i].steps];
    assert.deepEqual(after.slice(0, before.length), before, JSON.stringify(seen));
  }
  const distinct = new Set(seen.map((s) => s.steps.join(",")));
  assert.ok(distinct.size >= 3, `metadata seen changing as it went: ${JSON.stringify(seen)}`);
  assert.deepEqual(seen.at(-1).steps, ["fetch", "render", "upload"]);
});

await step("a public token subscribes to its run and to no other", async () => {
  const other = await tasks.trigger("sync-hello", { who: "other" });
  const token = await auth.createPublicToken({ scopes: { read: { runs: [stepsRun] } } });
  await auth.withAuth({ accessToken: token }, async () => {
    const seen = [];
    for await (const run of runs.subscribeToRun(stepsRun)) seen.push(run.status);
    assert.deepEqual(seen, ["COMPLETED"]);
    // the SDK's shape stream swallows a refusal (its iterator just never yields), so
    // the refusal is checked on the route the SDK calls, with the token it holds
    const url = `${process.env.TRIGGER_API_URL}/realtime/v1/runs/${other.id}?offset=-1`;
    const refused = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(refused.status, 403);
    const stream = await fetch(`${process.env.TRIGGER_API_URL}/realtime/v1/streams/${other.id}/llm`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    assert.equal(stream.status, 403);
  });
});

await step("streams.read gets a Python task's streams.pipe live", async () => {
  const handle = await tasks.trigger("stream-slow", { n: 10, pause: 0.2 });
  const got = [];
  let statusAtFirst;
  const stream = await streams.read(handle.id, "llm", { timeoutInSeconds: 30 });
  await within(60_000, (async () => {
    for await (const chunk of stream) {
      if (got.length === 0) statusAtFirst = (await runs.retrieve(handle.id)).status;
      got.push(chunk);
    } // ends once the run is final and every chunk was read
  })(), "the stream to end");
  assert.deepEqual(got, Array.from({ length: 10 }, (_, i) => `t${i} `));
  assert.equal(statusAtFirst, "EXECUTING", "the first chunk arrived while the task ran");
  const run = await runs.retrieve(handle.id);
  assert.equal(run.output, got.join(""));
});

await step("subscribeToRun().withStreams() gets the run and its stream", async () => {
  const handle = await tasks.trigger("stream-slow", { n: 5, pause: 0.1 });
  const chunks = [];
  let completed = false;
  await within(60_000, (async () => {
    for await (const part of runs.subscribeToRun(handle.id).withStreams()) {
      if (part.type === "run") completed = completed || part.run.status === "COMPLETED";
      else if (part.type === "llm") chunks.push(part.chunk);
      if (completed && chunks.length === 5) break; // the SDK lingers 30 s after the end
    }
  })(), "the run's end and its five chunks");
  assert.deepEqual(chunks, ["t0 ", "t1 ", "t2 ", "t3 ", "t4 "]);
});

await step("a stream written the way a TypeScript task writes it is read back", async () => {
  // a run to write to: delayed, so it stays open while the SDK's writer pipes into it
  const target = await tasks.trigger("sync-hello", { who: "streams" }, { delay: "1h" });
  const client = apiClientManager.clientOrThrow();
  const manager = new StandardRealtimeStreamsManager(client, client.baseUrl);
  async function* tokens() {
    for (const t of ["one", "two", "three"]) yield { token: t };
  }
  const piped = manager.pipe("ts-llm", tokens(), { target: target.id });
  const local = [];
  for await (const chunk of piped.stream) local.push(chunk);
  await within(30_000, piped.wait(), "the writer to finish");
  await client.appendToStream(target.id, "self", "ts-llm", "four");
  const read = [];
  const stream = await streams.read(target.id, "ts-llm", { timeoutInSeconds: 1 });
  for await (const chunk of stream) read.push(chunk);
  assert.deepEqual(local, [{ token: "one" }, { token: "two" }, { token: "three" }]);
  assert.deepEqual(read, [...local, "four"]);
  await runs.cancel(target.id);
});
