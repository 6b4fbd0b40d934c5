'use strict';

// The soak's RPC clients: sofa-rpc-node's RpcClient calling echo(token) over bolt
// (sofa-bolt-node, hessian2) or Dubbo (dubbo-remoting), in a closed loop of
// CONCURRENCY calls on the one long-lived connection the client keeps, each answer
// checked against its own token.
// Usage: node rpc.js bolt|dubbo HOST:PORT [CONCURRENCY] [TIMEOUT_MS]
// Needs NODE_PATH naming the test peers' node_modules (bench/soak.py sets it).
// Output, one line each (the same as clients.py):
//   F <unix time> <reason>   W <unix time> <detail>   S <sent> <ok>

const [ kind, address, concurrencyArg, timeoutArg ] = process.argv.slice(2);
const concurrency = Number(concurrencyArg || 4);
const responseTimeout = Number(timeoutArg || 10000);
const REPORT_INTERVAL_MS = 2000;
const quiet = { info() {}, warn() {}, debug() {}, error() {} };

const { RpcClient } = require('sofa-rpc-node').client;
let protocol, consumerOptions, args;
if (kind === 'bolt') {
  protocol = require('sofa-bolt-node');
  consumerOptions = { interfaceName: 'com.example.EchoService', version: '1.0' };
  args = token => [{ $class: 'java.lang.String', $: token }];
} else {
  protocol = require('dubbo-remoting');
  const java = require('js-to-java');
  consumerOptions = { interfaceName: 'com.example.EchoService', version: '1.0.0' };
  args = token => [ java.String(token) ];
}

let sent = 0;
let ok = 0;
let running = true;
const now = () => (Date.now() / 1000).toFixed(3);
const report = () => process.stdout.write(`S ${sent} ${ok}\n`);

async function worker(consumer, index) {
  let n = 0;
  while (running) {
    n += 1;
    sent += 1;
    const token = `${process.pid}-${index}-${n}`;
    try {
      const result = await consumer.invoke('echo', args(token), { codecType: 'hessian2', responseTimeout });
      if (result !== token) {
        process.stdout.write(`W ${now()} asked ${token}, answered ${JSON.stringify(result).slice(0, 100)}\n`);
      } else {
        ok += 1;
      }
    } catch (err) {
      const reason = String(err && (err.name || err.message) || err).replace(/\s+/g, ' ').slice(0, 80);
      process.stdout.write(`F ${now()} ${reason}\n`);
      await new Promise(resolve => setTimeout(resolve, 50));
    }
  }
}

async function main() {
  const client = new RpcClient({ logger: quiet, protocol });
  const consumer = client.createConsumer({ ...consumerOptions, serverHost: address });
  await consumer.ready();
  const timer = setInterval(report, REPORT_INTERVAL_MS);
  const stop = () => {
    running = false;
    clearInterval(timer);
    report();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await Promise.all(Array.from({ length: concurrency }, (_, i) => worker(consumer, i)));
}

main().catch(err => {
  process.stderr.write(String(err && err.stack || err) + '\n');
  process.exit(1);
});
