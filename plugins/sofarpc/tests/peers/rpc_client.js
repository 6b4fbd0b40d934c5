'use strict';

// One call with sofa-rpc-node's RpcClient (a consumer with a direct serverHost).
// Usage: node rpc_client.js HOST:PORT CODEC METHOD ARGS_JSON [SERVICE]
//   CODEC: hessian2 | protobuf; ARGS_JSON: the argument list (hessian2 arguments in
//   js-to-java form, e.g. [{"$class":"java.lang.String","$":"hi"}]).
// Prints one JSON line: {"ok":true,"result":...} or {"ok":false,"error":"..."}.

const path = require('path');
const antpb = require('antpb');
const protocol = require('sofa-bolt-node');
const { RpcClient } = require('sofa-rpc-node').client;

const [ address, codecType, method, argsJson, service ] = process.argv.slice(2);
const [ interfaceName, version ] = (service || 'com.example.EchoService:1.0').split(':');
const proto = antpb.loadAll(path.join(__dirname, 'proto'));
protocol.setOptions({ proto });

const quiet = { info() {}, warn() {}, debug() {}, error() {} };

function plain(value) {
  if (value && typeof value.toObject === 'function') return value.toObject({ enums: String });
  return value;
}

async function main() {
  const client = new RpcClient({ logger: quiet, protocol });
  const consumer = client.createConsumer({ interfaceName, version, serverHost: address });
  await consumer.ready();
  let out;
  try {
    const result = await consumer.invoke(method, JSON.parse(argsJson), { codecType, responseTimeout: 5000 });
    out = { ok: true, result: plain(result) };
  } catch (err) {
    out = { ok: false, error: err.message };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
  await client.close();
}

main().then(() => process.exit(0), err => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(err && err.message || err) }) + '\n');
  process.exit(1);
});
