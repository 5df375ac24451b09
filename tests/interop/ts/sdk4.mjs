// Drives a Triggerfish server with the official @trigger.dev/sdk 4.8.3, unmodified.
// Run by tests/interop/test_official_sdk.py with TRIGGER_API_URL, TRIGGER_SECRET_KEY
// and PROJECT_REF set; every failed check exits non-zero naming its step.
import assert from "node:assert/strict";
import { batch, configure, envvars, queues, runs, tasks, wait } from "@trigger.dev/sdk";
// the SDK's own client, for the metadata calls it makes from inside a task
import { apiClientManager } from "@trigger.dev/core/v3";

configure({ baseURL: process.env.TRIGGER_API_URL, secretKey: process.env.TRIGGER_SECRET_KEY });
const ref = process.env.PROJECT_REF;
const poll = { pollIntervalMs: 50 };

async function step(name, fn) {
  try {
    await fn();
    console.log(`ok ${name}`);
  } catch (error) {
    console.error(`FAILED ${name}:`, error);
    process.exit(1);
  }
}

let handle;
await step("trigger a Python task and read its output", async () => {
  handle = await tasks.trigger(
    "hello",
    { who: "TypeScript" },
    { tags: ["interop"], metadata: { from: "ts" } },
  );
  assert.match(handle.id, /^run_/);
  const run = await runs.poll(handle.id, poll);
  assert.equal(run.status, "COMPLETED");
  assert.equal(run.output.message, "Hello TypeScript");
  assert.deepEqual(run.metadata, { from: "ts" });
});

await step("retrieve", async () => {
  const run = await runs.retrieve(handle.id);
  assert.equal(run.isSuccess, true);
  assert.equal(run.triggerFunction, "trigger");
  assert.ok(run.finishedAt instanceof Date && !Number.isNaN(run.finishedAt.getTime()));
});

await step("list", async () => {
  const page = await runs.list({ tag: "interop", status: ["COMPLETED"] });
  assert.ok(page.data.some((r) => r.id === handle.id));
});

await step("cancel", async () => {
  const delayed = await tasks.trigger("sync-hello", { who: "later" }, { delay: "1h" });
  await runs.cancel(delayed.id);
  const run = await runs.retrieve(delayed.id);
  assert.equal(run.status, "CANCELED");
  assert.equal(run.isCancelled, true);
});

await step("reschedule", async () => {
  const delayed = await tasks.trigger("sync-hello", { who: "later" }, { delay: "1h" });
  const before = await runs.retrieve(delayed.id);
  const moved = await runs.reschedule(delayed.id, { delay: "2h" });
  assert.equal(moved.status, "DELAYED");
  assert.ok(moved.delayedUntil.getTime() > before.delayedUntil.getTime() + 30 * 60_000);
  await runs.cancel(delayed.id);
});

await step("metadata: update with operations, read back", async () => {
  const delayed = await tasks.trigger("sync-hello", {}, { delay: "1h", metadata: { count: 1 } });
  const client = apiClientManager.clientOrThrow();
  const updated = await client.updateRunMetadata(delayed.id, {
    operations: [
      { type: "increment", key: "count", value: 2 },
      { type: "set", key: "stage", value: "checked" },
    ],
  });
  assert.deepEqual(updated.metadata, { count: 3, stage: "checked" });
  assert.deepEqual((await client.getRunMetadata(delayed.id)).metadata, updated.metadata);
  assert.deepEqual((await runs.retrieve(delayed.id)).metadata, updated.metadata);
  await runs.cancel(delayed.id);
});

await step("replay, then retrieve the replay", async () => {
  const replay = await runs.replay(handle.id);
  const run = await runs.poll(replay.id, poll);
  assert.equal(run.status, "COMPLETED");
  assert.equal(run.triggerFunction, "trigger");
  assert.equal(run.output.message, "Hello TypeScript");
});

await step("batch trigger with a refused item", async () => {
  const started = await tasks.batchTrigger("typed", [
    { payload: { email: "ada@example.com", plan: 1 } },
    { payload: { email: "not an email", plan: 1 } },
    { payload: { email: "bob@example.com", plan: 2 } },
  ]);
  assert.match(started.batchId, /^batch_/);
  let found;
  for (let i = 0; i < 200; i++) {
    found = await batch.retrieve(started.batchId);
    if (found.status !== "PENDING" && found.status !== "PROCESSING") break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(found.status, "PARTIAL_FAILED");
  assert.equal(found.runs.length, 2);
  assert.deepEqual(
    found.processing.errors.map((e) => [e.index, e.taskIdentifier, e.errorCode]),
    [[1, "typed", "PAYLOAD_INVALID"]],
  );
  for (const id of found.runs) assert.equal((await runs.retrieve(id)).status, "COMPLETED");
});

await step("waitpoint tokens: create, complete, retrieve, list", async () => {
  const token = await wait.createToken({ timeout: "1h", tags: ["interop"], idempotencyKey: "ts-1" });
  assert.match(token.id, /^waitpoint_/);
  assert.ok(token.url.startsWith("http"));
  const again = await wait.createToken({ timeout: "1h", idempotencyKey: "ts-1" });
  assert.equal(again.id, token.id);
  assert.equal(again.isCached, true);
  await wait.completeToken(token.id, { approved: true });
  const done = await wait.retrieveToken(token.id);
  assert.equal(done.status, "COMPLETED");
  assert.deepEqual(done.output, { approved: true });
  const page = await wait.listTokens({ tags: ["interop"] });
  assert.ok(page.data.some((t) => t.id === token.id));
});

await step("queues: list, pause, resume", async () => {
  const page = await queues.list({ page: 1, perPage: 100 });
  const queue = page.data.find((q) => q.name === "sync-hello");
  assert.ok(queue, "the task's queue is listed");
  assert.equal(queue.type, "task");
  const paused = await queues.pause({ type: "task", name: "sync-hello" });
  assert.equal(paused.paused, true);
  const resumed = await queues.resume({ type: "task", name: "sync-hello" });
  assert.equal(resumed.paused, false);
  assert.equal((await queues.retrieve(queue.id)).paused, false);
});

await step("environment variables: create, list, retrieve, upload, delete", async () => {
  await envvars.create(ref, "dev", { name: "TS_VAR", value: "one" });
  await envvars.create(ref, "dev", { name: "TS_SECRET", value: "hidden", isSecret: true });
  const listed = await envvars.list(ref, "dev");
  assert.deepEqual(
    listed.filter((v) => v.name.startsWith("TS_")).map((v) => [v.name, v.value]),
    [["TS_SECRET", "<redacted>"], ["TS_VAR", "one"]],
  );
  assert.equal((await envvars.retrieve(ref, "dev", "TS_VAR")).value, "one");
  await envvars.upload(ref, "dev", { variables: { TS_VAR: "two", TS_OTHER: "x" }, override: true });
  assert.equal((await envvars.retrieve(ref, "dev", "TS_VAR")).value, "two");
  await envvars.del(ref, "dev", "TS_OTHER");
  await assert.rejects(envvars.retrieve(ref, "dev", "TS_OTHER"), (e) => e.status === 404);
  await assert.rejects(envvars.list("proj_someoneelse", "dev"), (e) => e.status === 400);
});

await step("a task reads a variable set through the SDK", async () => {
  await envvars.create(ref, "dev", { name: "GREETING_FROM_TS", value: "set by the SDK" });
  const started = await tasks.trigger("read-env", { name: "GREETING_FROM_TS" });
  const run = await runs.poll(started.id, poll);
  assert.equal(run.status, "COMPLETED");
  assert.equal(run.output.first, "set by the SDK");
  await envvars.del(ref, "dev", "GREETING_FROM_TS");
});
