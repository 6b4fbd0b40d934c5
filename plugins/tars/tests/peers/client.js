'use strict';

// A Tars client (@tars/rpc's ServantProxy) calling Test.EchoServer.EchoObj at
// HOST:PORT; prints one JSON line per call: {"i", "ret", "out"} or {"i", "code", "message"}.
// Usage: node client.js HOST PORT COUNT [CONCURRENCY] [FUNCTION] [SERVANT]

const { client: Tars } = require('@tars/rpc');
const { SERVANT, EchoProxy } = require('./echo');

const [host, port] = [process.argv[2], Number(process.argv[3])];
const count = Number(process.argv[4] || 1);
const concurrency = Number(process.argv[5] || 1);
const func = process.argv[6] || 'echo';
const servant = process.argv[7] || SERVANT;

const prx = Tars.stringToProxy(EchoProxy, `${servant}@tcp -h ${host} -p ${port} -t 60000`);
prx.setTimeout(5000);

let next = 0;
async function worker() {
  while (next < count) {
    const i = next++;
    const arg = 'hello ' + i;
    try {
      const r = await prx[func](arg);
      process.stdout.write(JSON.stringify({ i, ret: r.ret, out: r.out }) + '\n');
    } catch (e) {
      const err = (e && (e.error || (e.response && e.response.error))) || {};
      process.stdout.write(JSON.stringify({ i, code: err.code, message: String(err.message || '') }) + '\n');
    }
  }
}

Promise.all(Array.from({ length: concurrency }, worker)).then(() => {
  Tars.disconnect && Tars.disconnect();
  process.exit(0);
});
