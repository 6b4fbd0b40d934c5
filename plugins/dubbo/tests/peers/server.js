'use strict';

// A Dubbo provider: sofa-rpc-node's RpcServer speaking Dubbo through dubbo-remoting,
// with com.example.EchoService version 1.0.0 (and any group):
//   echo(s)     -> s
//   whoami()    -> NAME (the second argument; tells providers apart)
//   fail()      -> throws: a SERVER_ERROR response with the error's message
//   failObj()   -> an OK response carrying a java.lang.IllegalStateException
//   sleep(ms)   -> "slept" after ms milliseconds
// Usage: node server.js PORT [NAME]   (prints "listening PORT" once it accepts connections)

const protocol = require('dubbo-remoting');
const { RpcServer } = require('sofa-rpc-node').server;

const port = Number(process.argv[2] || 20880);
const name = process.argv[3] || 'provider-' + port;
const quiet = { info() {}, warn() {}, debug() {}, error() {} };

const server = new RpcServer({ logger: quiet, protocol, port });
server.on('error', () => {}); // an unknown service is answered SERVER_ERROR; no log

server.addService({ interfaceName: 'com.example.EchoService', version: '1.0.0' }, {
  async echo(s) {
    return s;
  },
  async whoami() {
    return name;
  },
  async fail() {
    throw new Error('echo service failed on purpose');
  },
  async failObj() {
    return {
      $class: 'java.lang.IllegalStateException',
      $: { detailMessage: 'echo service returned an exception on purpose' },
    };
  },
  async sleep(ms) {
    await new Promise(resolve => setTimeout(resolve, Number(ms)));
    return 'slept';
  },
});

server.start().then(() => {
  process.stdout.write('listening ' + port + '\n');
}, err => {
  process.stderr.write(String(err && err.stack || err) + '\n');
  process.exit(1);
});

process.on('SIGTERM', () => process.exit(0));
