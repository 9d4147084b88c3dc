// Handlers run by AWS's Node.js runtime interface client (aws-lambda-ric), Runtime: nodejs20.x.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

exports.batch = async (event, context) => {
  const bodies = event.Records.map((r) => r.body);
  fs.appendFileSync(
    path.join(process.env.OUT_DIR, `${context.functionName}.jsonl`),
    JSON.stringify({ request_id: context.awsRequestId, bodies }) + "\n",
  );
  console.log(`batch of ${bodies.length}`);
  return {
    batchItemFailures: event.Records.filter((r) => r.body === "fail").map((r) => ({
      itemIdentifier: r.messageId,
    })),
  };
};

exports.echo = async (event, context) => {
  console.log("echo", context.awsRequestId);
  return {
    event,
    function: context.functionName,
    handler: process.env._HANDLER,
    remaining_ms: context.getRemainingTimeInMillis(),
  };
};

exports.boom = async () => {
  throw new TypeError("boom");
};

exports.sleep = () => new Promise((resolve) => setTimeout(resolve, 60000));

exports.leave = () => {
  process.exit(3);
};

exports.spike = async () => {
  // Holds 300 MB for a moment, then returns: over a MemorySize of 128 all the same.
  let block = Buffer.alloc(300 * 1024 * 1024, 1);
  block = null;
  return "done";
};
