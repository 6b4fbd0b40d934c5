'use strict';

// Dubbo consumers calling one provider directly (no registry).
// Usage: node client.js KIND HOST:PORT CALLS_JSON [--repeat N] [--interval MS] [--summary]
//   KIND: sofa     sofa-rpc-node's RpcClient with dubbo-remoting
//         apache   apache-dubbo-js's DirectlyDubbo
//         dubbo2js dubbo2.js's DirectlyDubbo
//   CALLS_JSON: a list of calls, made in order, each
//     {"method":"echo","args":["hi"],"service":"com.example.EchoService",
//      "version":"1.0.0","group":"","timeout":5000}
//     (string arguments become java.lang.String; {"bytes":N} a string of N 'x').
// Prints one JSON line per call: {"ok":true,"result":...} or {"ok":false,"error":"..."};
// with --repeat the list is run N times and --summary prints only
// {"calls":N,"ok":N,"errors":[first few errors],"results":{result:count}}.

const java = require('js-to-java');

const argv = process.argv.slice(2);
const [ kind, address, callsJson ] = argv;
const option = (name, fallback) => { const i = argv.indexOf(name); return i < 0 ? fallback : argv[i + 1]; };
const repeat = Number(option('--repeat', 1));
const interval = Number(option('--interval', 0));
const summary = argv.includes('--summary');
const quiet = { info() {}, warn() {}, debug() {}, error() {} };
const SERVICE = 'com.example.EchoService';
const VERSION = '1.0.0';
const TIMEOUT_MS = 5000; // a call's answer on a loaded CI machine

function argument(a) {
  if (a && typeof a === 'object' && a.bytes) return 'x'.repeat(a.bytes);
  return a;
}

function javaArgs(args) {
  return (args || []).map(a => java.String(String(argument(a))));
}

async function sofaClient() {
  const protocol = require('dubbo-remoting');
  const { RpcClient } = require('sofa-rpc-node').client;
  const client = new RpcClient({ logger: quiet, protocol });
  const consumers = new Map();
  return {
    async call(c) {
      const key = [ c.service, c.version, c.group ].join('|');
      let consumer = consumers.get(key);
      if (!consumer) {
        consumer = client.createConsumer({
          interfaceName: c.service || SERVICE, version: c.version === undefined ? VERSION : c.version,
          group: c.group || undefined, serverHost: address,
        });
        await consumer.ready();
        consumers.set(key, consumer);
      }
      return consumer.invoke(c.method, javaArgs(c.args), {
        responseTimeout: c.timeout || TIMEOUT_MS,
        requestProps: c.group ? { group: c.group } : undefined,
      });
    },
    close() { return client.close(); },
  };
}

function directlyClient(moduleName) {
  const { DirectlyDubbo } = require(moduleName);
  const dubbo = DirectlyDubbo.from({
    dubboAddress: address, dubboVersion: '2.0.2', dubboInvokeTimeout: TIMEOUT_MS / 1000,
  });
  const proxies = new Map();
  return {
    async call(c) {
      const key = [ c.service, c.version, c.group ].join('|');
      let proxy = proxies.get(key);
      if (!proxy) {
        const methods = {};
        for (const m of [ 'echo', 'whoami', 'fail', 'failObj', 'sleep' ]) methods[m] = (...args) => javaArgs(args);
        proxy = dubbo.proxyService({
          dubboInterface: c.service || SERVICE, version: c.version === undefined ? VERSION : c.version,
          group: c.group || undefined, timeout: (c.timeout || TIMEOUT_MS) / 1000, methods,
        });
        proxies.set(key, proxy);
      }
      const { res, err } = await proxy[c.method](...(c.args || []).map(argument));
      if (err) throw err;
      return res;
    },
    close() {},
  };
}

const LONG_RESULT = 1024; // characters of a result printed as is; longer: its length

function shorten(result) {
  if (typeof result === 'string' && result.length > LONG_RESULT) {
    return { ok: true, length: result.length, head: result.slice(0, 16) };
  }
  return { ok: true, result };
}

function describe(err) {
  return String(err && err.message || err);
}

async function main() {
  const client = kind === 'sofa' ? await sofaClient() :
    directlyClient(kind === 'apache' ? 'apache-dubbo-js' : 'dubbo2.js');
  const calls = JSON.parse(callsJson);
  const tally = { calls: 0, ok: 0, errors: [], results: {} };
  for (let i = 0; i < repeat; i++) {
    for (const c of calls) {
      let out;
      try {
        out = shorten(await client.call(c));
      } catch (err) {
        out = { ok: false, error: describe(err) };
      }
      tally.calls += 1;
      if (out.ok) {
        tally.ok += 1;
        const key = typeof out.result === 'string' && out.result.length < 64 ? out.result : 'other';
        tally.results[key] = (tally.results[key] || 0) + 1;
      } else if (tally.errors.length < 5) {
        tally.errors.push(out.error);
      }
      if (!summary) process.stdout.write(JSON.stringify(out) + '\n');
      if (interval) await new Promise(resolve => setTimeout(resolve, interval));
    }
  }
  if (summary) process.stdout.write(JSON.stringify(tally) + '\n');
  await client.close();
}

// Exit once stdout is flushed: a pipe is written asynchronously.
main().then(() => process.stdout.write('', () => process.exit(0)), err => {
  process.stdout.write(JSON.stringify({ ok: false, error: describe(err) }) + '\n', () => process.exit(1));
});
