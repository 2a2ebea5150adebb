// Preloaded with `node --require` by tests/objectstack_harness.py: ObjectStack has no host
// option and listens on all interfaces, so every TCP listen in this process is forced onto
// 127.0.0.1 (IPC paths and inherited handles are left alone).
'use strict';
const net = require('net');

const HOST = process.env.OBJECTSTACK_LISTEN_HOST || '127.0.0.1';
const original = net.Server.prototype.listen;

function isPort(value) {
  return typeof value === 'number' || (typeof value === 'string' && /^\d+$/.test(value));
}

net.Server.prototype.listen = function listen(...args) {
  const first = args[0];
  if (isPort(first)) {
    if (typeof args[1] === 'string' || args[1] === null || args[1] === undefined) {
      args[1] = HOST;
    } else {
      args.splice(1, 0, HOST);
    }
  } else if (first === undefined || typeof first === 'function') {
    args.unshift(0, HOST);
  } else if (first && typeof first === 'object' && first.path === undefined
             && first.fd === undefined && first._handle === undefined
             && first.handle === undefined) {
    args[0] = { ...first, host: HOST };
  }
  return original.apply(this, args);
};

// Orphan guard: the harness starts this server in its own session (so Ctrl-C in pytest does not
// reach it) and passes its pid; when that process is gone (even after SIGKILL) the server exits.
const parent = Number(process.env.OBJECTSTACK_PARENT_PID || 0);
if (parent > 0 && process.ppid === parent) {
  setInterval(() => {
    if (process.ppid !== parent) process.exit(0);
  }, 1000).unref();
}
