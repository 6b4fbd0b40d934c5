'use strict';

// The servant both peers use, as tars2node would generate it for
//
//   module Test {
//     interface Echo {
//       int echo(string sIn, out string sOut);   // sOut = sIn, returns sIn's length
//       int fail(string sIn);                    // answered iRet -3 (no such function)
//     };
//   };

const TarsStream = require('@tars/stream');
const SUCCESS = 0;
const FUNC_NOT_FOUND = -3;  // TARSSERVERNOFUNCERR

const SERVANT = 'Test.EchoServer.EchoObj';

function EchoImp() {}
EchoImp.prototype.initialize = function () {};
EchoImp.prototype.onDispatch = function (current, funcName, binBuffer) {
  if (funcName === 'echo') {
    const is = new TarsStream.TarsInputStream(binBuffer);
    const sIn = is.readString(1, true);
    const os = new TarsStream.TarsOutputStream();
    os.writeInt32(0, Buffer.byteLength(sIn));
    os.writeString(2, sIn);
    current.doResponse(os.getBinBuffer());
    return SUCCESS;
  }
  return FUNC_NOT_FOUND;
};

function EchoProxy() {
  this._name = undefined;
  this._worker = undefined;
}
EchoProxy.prototype.setTimeout = function (ms) { this._worker.timeout = ms; };
EchoProxy.prototype.getTimeout = function () { return this._worker.timeout; };
EchoProxy.prototype.echo = function (sIn) {
  const os = new TarsStream.TarsOutputStream();
  os.writeString(1, sIn);
  return this._worker.tars_invoke('echo', os.getBinBuffer()).then(data => {
    const is = new TarsStream.TarsInputStream(data.response.sBuffer);
    return { ret: is.readInt32(0, true), out: is.readString(2, true) };
  });
};
EchoProxy.prototype.fail = function (sIn) {
  const os = new TarsStream.TarsOutputStream();
  os.writeString(1, sIn);
  return this._worker.tars_invoke('fail', os.getBinBuffer());
};

module.exports = { SERVANT, EchoImp, EchoProxy };
