'use strict';

// A SOFARPC server (sofa-rpc-node's RpcServer over sofa-bolt-node) with one service,
// com.example.EchoService:1.0, answering hessian2 and protobuf calls:
//   echo(x)        -> x                       (hessian2)
//   echoObj(req)   -> { code: 200, message }  (protobuf)
//   fail(...)      -> throws: a SERVER_EXCEPTION response
// Usage: node server.js PORT   (prints "listening PORT" once it accepts connections)

const path = require('path');
const antpb = require('antpb');
const protocol = require('sofa-bolt-node');
const { RpcServer } = require('sofa-rpc-node').server;

const port = Number(process.argv[2] || 12200);
const proto = antpb.loadAll(path.join(__dirname, 'proto'));
protocol.setOptions({ proto });

const quiet = { info() {}, warn() {}, debug() {}, error() {} };

const server = new RpcServer({ logger: quiet, protocol, port });
server.on('error', () => {}); // an unknown service is answered SERVER_EXCEPTION; no log

server.addService({ interfaceName: 'com.example.EchoService', version: '1.0' }, {
  async echo(x) {
    return x;
  },
  async echoObj(req) {
    req = req.toObject({ enums: String });
    return { code: 200, message: 'hello ' + req.name + ', you are in ' + req.group };
  },
  async fail() {
    throw new Error('echo service failed on purpose');
  },
});

server.start().then(() => {
  process.stdout.write('listening ' + port + '\n');
}, err => {
  process.stderr.write(String(err && err.stack || err) + '\n');
  process.exit(1);
});

process.on('SIGTERM', () => process.exit(0));
