'use strict';

// Dubbo heartbeats on one connection, written and read by dubbo-remoting's encoder and
// decoder (what sofa-rpc-node's client sends on an idle connection).
// Usage: node heartbeat.js HOST:PORT [COUNT]
// Prints one JSON line per heartbeat: {"id":N,"ok":true} once its ack arrived,
// {"id":N,"ok":false,"error":...} if none came.

const net = require('net');
const protocol = require('dubbo-remoting');

const [ address, countArg ] = process.argv.slice(2);
const count = Number(countArg || 1);
const TIMEOUT_MS = 5000; // an ack on a loaded CI machine

async function main() {
  const [ host, port ] = address.split(':');
  const socket = net.connect(Number(port), host);
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  const encoder = protocol.encoder({});
  const decoder = protocol.decoder({});
  encoder.pipe(socket).pipe(decoder);
  const waiting = new Map();
  decoder.on('heartbeat_ack', ack => {
    const done = waiting.get(Number(ack.packetId));
    if (done) done({ id: Number(ack.packetId), ok: true });
  });
  decoder.on('error', err => process.stdout.write(JSON.stringify({ ok: false, error: err.message }) + '\n'));
  for (let id = 1; id <= count; id++) {
    const answer = new Promise(resolve => {
      waiting.set(id, resolve);
      setTimeout(() => resolve({ id, ok: false, error: 'no heartbeat ack' }), TIMEOUT_MS);
    });
    encoder.writeHeartbeat(id, {});
    process.stdout.write(JSON.stringify(await answer) + '\n');
  }
  socket.end();
}

main().then(() => process.stdout.write('', () => process.exit(0)), err => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(err && err.message || err) }) + '\n',
    () => process.exit(1));
});
