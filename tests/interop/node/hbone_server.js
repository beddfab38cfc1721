#!/usr/bin/env node
// An independent HBONE server: HTTP/2 CONNECT over mutual TLS 1.3, built only on Node's `http2`.
//
//   node hbone_server.js --cert C --key K --ca ROOTS --expect-client SPIFFE_ID [--host H]
//
// Requires a client certificate chaining to ROOTS (TLS 1.3, ALPN h2). For each CONNECT stream it
// checks that the client certificate's SAN is exactly one URI SAN equal to SPIFFE_ID (else 401),
// connects the TCP upstream named by `:authority` (`ip:port` or `[ipv6]:port`), answers 200 only
// once connected (503 if the upstream refuses), then relays bytes both ways with half-close carried
// across (END_STREAM ↔ FIN). Anything but CONNECT, or a bad authority, is answered 400.
//
// Stdout is JSON lines: {"listening": PORT} once ready, then one line per event
// ("session", "connect", "stream_closed", "session_error", "tls_error"). Closing stdin (or SIGTERM)
// prints {"event": "exit", ...} with totals and exits 0.
'use strict';

const fs = require('node:fs');
const http2 = require('node:http2');
const net = require('node:net');
const { parseArgs } = require('node:util');

const { values: opt } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    cert: { type: 'string' },
    key: { type: 'string' },
    ca: { type: 'string' },
    'expect-client': { type: 'string' },
  },
});

for (const name of ['cert', 'key', 'ca', 'expect-client']) {
  if (!opt[name]) {
    process.stderr.write(`missing --${name}\n`);
    process.exit(1);
  }
}

const expectedSan = `URI:${opt['expect-client']}`;
const totals = { sessions: 0, connects: 0, accepted: 0, rejected: 0 };
let nextStream = 0;

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function parseAuthority(authority) {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/.exec(authority || '');
  if (!m) return null;
  const host = m[1] || m[2];
  const port = Number(m[3]);
  if (!net.isIP(host) || port < 1 || port > 65535) return null;
  return { host, port };
}

const server = http2.createSecureServer({
  cert: fs.readFileSync(opt.cert),
  key: fs.readFileSync(opt.key),
  ca: fs.readFileSync(opt.ca),
  requestCert: true,
  rejectUnauthorized: true,
  minVersion: 'TLSv1.3',
  maxVersion: 'TLSv1.3',
  ALPNProtocols: ['h2'],
  allowHTTP1: false,
});

server.on('secureConnection', (sock) => {
  totals.sessions += 1;
  emit({
    event: 'session',
    client_san: sock.getPeerCertificate().subjectaltname || null,
    alpn: sock.alpnProtocol,
    tls_version: sock.getProtocol(),
  });
});
server.on('tlsClientError', (err) => emit({ event: 'tls_error', error: err.message }));
server.on('sessionError', (err) => emit({ event: 'session_error', error: err.message }));

server.on('stream', (stream, headers) => {
  const id = nextStream++;
  const method = headers[':method'];
  const authority = headers[':authority'];
  const peer = stream.session.socket.getPeerCertificate();
  const clientSan = (peer && peer.subjectaltname) || null;
  const rec = { event: 'connect', id, method, authority, client_san: clientSan, status: null };
  totals.connects += 1;

  const answer = (status) => {
    rec.status = status;
    emit(rec);
    if (status !== 200) {
      totals.rejected += 1;
      stream.respond({ ':status': status }, { endStream: true });
    } else {
      totals.accepted += 1;
      stream.respond({ ':status': 200 });
    }
  };
  stream.on('error', (err) => emit({ event: 'stream_error', id, error: err.message }));

  if (method !== 'CONNECT') return answer(400);
  if (clientSan !== expectedSan) return answer(401);
  const target = parseAuthority(authority);
  if (target === null) return answer(400);

  const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
  let connected = false;
  upstream.once('connect', () => {
    connected = true;
    if (stream.destroyed || stream.closed) {
      upstream.destroy();
      return;
    }
    answer(200);
    // pipe() ends the destination when the source ends: END_STREAM → FIN and FIN → END_STREAM.
    stream.pipe(upstream);
    upstream.pipe(stream);
  });
  upstream.on('error', (err) => {
    if (!connected) {
      if (!stream.destroyed) answer(503);
    } else if (!stream.destroyed) {
      stream.close(http2.constants.NGHTTP2_CONNECT_ERROR);
    }
    rec.upstream_error = err.message;
  });
  stream.on('close', () => {
    if (connected) {
      emit({
        event: 'stream_closed',
        id,
        rst_code: stream.rstCode,
        to_upstream: upstream.bytesWritten,
        from_upstream: upstream.bytesRead,
      });
      // A reset tunnel resets the upstream; a clean one lets the socket finish its own half-close.
      if (stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) upstream.destroy();
    }
  });
});

function shutdown() {
  emit({ event: 'exit', ...totals });
  process.exit(0);
}

process.stdin.on('end', shutdown);
process.stdin.resume();
process.on('SIGTERM', shutdown);

server.listen(0, opt.host, () => emit({ listening: server.address().port }));
