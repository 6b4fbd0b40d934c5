'use strict';

// A Tars server (@tars/rpc) serving Test.EchoServer.EchoObj (echo.js).
// Usage: node server.js PORT   (prints "listening PORT" once it accepts connections)

const { server: TarsServer } = require('@tars/rpc');
const { SERVANT, EchoImp } = require('./echo');

const port = Number(process.argv[2] || 14002);
const option = new TarsServer.BindAdapterOption();
option.endpoint = `tcp -h 127.0.0.1 -p ${port} -t 60000`;
option.name = SERVANT + 'Adapter';
option.servant = SERVANT;
option.handleImp = EchoImp;

const svr = TarsServer.createServer();
svr.start(option);
// BindAdapter listens synchronously inside start(); say so once the socket is bound.
const net = require('net');
(function wait() {
  const probe = net.connect(port, '127.0.0.1', () => {
    probe.destroy();
    process.stdout.write('listening ' + port + '\n');
  });
  probe.on('error', () => setTimeout(wait, 20));
})();
