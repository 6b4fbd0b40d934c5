'use strict';

// A bolt client on sofa-bolt-node's encoder and decoder, for what RpcClient does not
// expose: heartbeats, oneway calls, bolt v2 with or without CRC32.
// Usage: node bolt_client.js HOST:PORT STEPS_JSON [--protocol bolt|bolt2]
//            [--bolt-version 1|2] [--crc]
// STEPS_JSON is a list run in order on one connection, each one of
//   {"call":"request","codec":"hessian2","method":"echo","args":[...]}
//   {"call":"oneway", ... the same fields ...}
//   {"call":"heartbeat"}
// ("service" defaults to com.example.EchoService:1.0). Prints one JSON line per step:
// {"id":N,"type":"response"|"heartbeat_ack"|"sent","ok":...,"result"|"error":...}.

const net = require('net');
const path = require('path');
const antpb = require('antpb');
const protocol = require('sofa-bolt-node');

const argv = process.argv.slice(2);
const [ address, stepsJson ] = argv;
const flag = name => { const i = argv.indexOf(name); return i < 0 ? null : argv[i + 1]; };
const proto = antpb.loadAll(path.join(__dirname, 'proto'));
protocol.setOptions({ proto });

const TIMEOUT_MS = 5000; // a step's answer on a loaded CI machine
const ONEWAY_SETTLE_MS = 200; // time for a oneway request to leave before the next step

function plain(value) {
  if (value && typeof value.toObject === 'function') return value.toObject({ enums: String });
  return value;
}

async function main() {
  const [ host, port ] = address.split(':');
  const sentReqs = new Map();
  const socket = net.connect(Number(port), host);
  socket.setNoDelay(true);
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  const encoder = protocol.encoder({ sentReqs });
  const decoder = protocol.decoder({ sentReqs });
  encoder.protocolType = flag('--protocol') || 'bolt';
  encoder.boltVersion = Number(flag('--bolt-version') || 1);
  encoder.crcEnable = argv.includes('--crc');
  encoder.pipe(socket).pipe(decoder);

  const waiting = new Map();
  const settle = (id, out) => { const w = waiting.get(id); if (w) { waiting.delete(id); w(out); } };
  decoder.on('response', res => {
    const data = res.data || {};
    settle(res.packetId, data.error ?
      { id: res.packetId, type: 'response', ok: false, error: data.error.message } :
      { id: res.packetId, type: 'response', ok: true, result: plain(data.appResponse) });
  });
  decoder.on('heartbeat_ack', ack => settle(ack.packetId, { id: ack.packetId, type: 'heartbeat_ack', ok: true }));
  decoder.on('error', err => { process.stdout.write(JSON.stringify({ type: 'decode_error', error: err.message }) + '\n'); });
  socket.on('close', () => { for (const id of [ ...waiting.keys() ]) settle(id, { id, type: 'closed', ok: false }); });

  let id = 0;
  for (const step of JSON.parse(stepsJson)) {
    id += 1;
    const answer = new Promise(resolve => {
      waiting.set(id, resolve);
      setTimeout(() => settle(id, { id, type: 'timeout', ok: false }), TIMEOUT_MS);
    });
    if (step.call === 'heartbeat') {
      encoder.writeHeartbeat(id, { timeout: TIMEOUT_MS });
    } else {
      const req = {
        serverSignature: step.service || 'com.example.EchoService:1.0',
        methodName: step.method,
        args: step.args || [],
        timeout: TIMEOUT_MS,
        codecType: step.codec || 'hessian2',
        targetAppName: 'peer',
        oneway: step.call === 'oneway',
      };
      sentReqs.set(id, { req });
      encoder.writeRequest(id, req);
      if (req.oneway) {
        await new Promise(resolve => setTimeout(resolve, ONEWAY_SETTLE_MS));
        settle(id, { id, type: 'sent', ok: true });
      }
    }
    process.stdout.write(JSON.stringify(await answer) + '\n');
  }
  socket.end();
}

main().then(() => process.exit(0), err => {
  process.stdout.write(JSON.stringify({ type: 'error', error: String(err && err.message || err) }) + '\n');
  process.exit(1);
});
