#!/usr/bin/env node
// An independent HBONE client: HTTP/2 CONNECT over mutual TLS 1.3, built only on Node's `http2`.
//
//   node hbone_client.js --port P --authority IP:PORT --cert C --key K --ca ROOTS \
//        --expect-server SPIFFE_ID [--bytes N] [--streams S] [--host H] [--reset-after R] [--hold]
//
// Verifies the server's certificate against ROOTS and requires its SAN to be exactly one URI SAN
// equal to SPIFFE_ID (Node's default identity check ignores URI SANs, so it is done here: during
// the handshake in `checkServerIdentity`, so a wrong server never sees an HTTP/2 frame, and again
// on the established socket). Then opens S concurrent CONNECT streams to IP:PORT; on each, once the
// answer is 200, sends N random bytes, half-closes (END_STREAM) and reads everything the tunnel
// returns until the server's END_STREAM, hashing both directions with SHA-256.
//
// With --reset-after R, each stream instead resets itself (RST_STREAM CANCEL) once R bytes have come
// back, and succeeds if it ended by that reset. With --hold, the session stays open after the result
// is printed, until stdin closes (so the caller can observe the peer while the connection is up).
//
// Prints one JSON line and exits 0 only if every stream was answered 200 and echoed its bytes
// exactly (or was reset as asked); exit 2 = identity/TLS refused, 3 = CONNECT answered non-200 or
// reset, 4 = data mismatch, 5 = timeout, 1 = usage.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const http2 = require('node:http2');
const { parseArgs } = require('node:util');

const { values: opt } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    authority: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    ca: { type: 'string' },
    'expect-server': { type: 'string' },
    bytes: { type: 'string', default: String(1024 * 1024) },
    streams: { type: 'string', default: '1' },
    timeout: { type: 'string', default: '30' },
    'reset-after': { type: 'string' },
    hold: { type: 'boolean', default: false },
  },
});

for (const name of ['port', 'authority', 'cert', 'key', 'ca', 'expect-server']) {
  if (!opt[name]) {
    process.stderr.write(`missing --${name}\n`);
    process.exit(1);
  }
}

const expectedSan = `URI:${opt['expect-server']}`;
const total = Number(opt.bytes);
const nStreams = Number(opt.streams);
const resetAfter = opt['reset-after'] === undefined ? null : Number(opt['reset-after']);
const CHUNK = 64 * 1024;

const result = {
  ok: false,
  stage: 'connecting',
  expected_san: expectedSan,
  peer_san: null,
  alpn: null,
  tls_version: null,
  streams: [],
  error: null,
};

let done = false;
let session = null;

function finish(code, error) {
  if (done) return;
  done = true;
  if (error) result.error = String(error);
  result.ok = code === 0;
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exitCode = code;
  if (session === null) return;
  const end = () => (code === 0 ? session.close() : session.destroy());
  if (opt.hold) {
    process.stdin.on('end', end);
    process.stdin.resume();
  } else {
    end();
  }
}

const timer = setTimeout(() => finish(5, `timed out in stage ${result.stage}`), Number(opt.timeout) * 1000);
timer.unref();

function sanCheck(cert) {
  const san = cert && cert.subjectaltname;
  if (san !== expectedSan) {
    return new Error(`server certificate SAN is ${JSON.stringify(san)}, expected exactly ${expectedSan}`);
  }
  return undefined;
}

session = http2.connect(`https://${opt.host}:${opt.port}`, {
  cert: fs.readFileSync(opt.cert),
  key: fs.readFileSync(opt.key),
  ca: fs.readFileSync(opt.ca),
  ALPNProtocols: ['h2'],
  minVersion: 'TLSv1.3',
  maxVersion: 'TLSv1.3',
  // No SNI: SVIDs carry no DNS names (Node sends none for an IP host anyway).
  // Chain verification stays on (rejectUnauthorized defaults to true); the identity is the URI SAN.
  checkServerIdentity: (_host, cert) => {
    const err = sanCheck(cert);
    if (err) {
      result.stage = 'tls';
      result.peer_san = (cert && cert.subjectaltname) || null;
    }
    return err;
  },
});

session.on('error', (err) => finish(result.stage === 'tls' ? 2 : 3, err.message));

session.on('connect', () => {
  const sock = session.socket;
  const peer = sock.getPeerCertificate();
  result.peer_san = peer.subjectaltname || null;
  result.alpn = sock.alpnProtocol;
  result.tls_version = sock.getProtocol();
  result.stage = 'identity';
  const err = sanCheck(peer);
  if (err) return finish(2, err.message);
  if (result.alpn !== 'h2' || result.tls_version !== 'TLSv1.3') {
    return finish(2, `negotiated ${result.tls_version} / ALPN ${result.alpn}`);
  }
  result.stage = 'streams';
  let remaining = nStreams;
  for (let i = 0; i < nStreams; i++) {
    openStream(i, (code, error) => {
      if (code !== 0) return finish(code, error);
      remaining -= 1;
      if (remaining === 0) {
        result.stage = 'done';
        finish(0);
      }
    });
  }
});

function openStream(index, callback) {
  const rec = {
    index,
    status: null,
    bytes_sent: 0,
    bytes_received: 0,
    sha256_sent: null,
    sha256_received: null,
    rst_code: null,
    reset_sent: false,
    error: null,
  };
  result.streams.push(rec);
  const sentHash = crypto.createHash('sha256');
  const receivedHash = crypto.createHash('sha256');
  let readDone = false;
  let writeDone = false;
  let reported = false;
  const report = (code, error) => {
    if (!reported) {
      reported = true;
      callback(code, error);
    }
  };

  const req = session.request({ ':method': 'CONNECT', ':authority': opt.authority }, { endStream: false });

  // Judged once the stream is closed, so `rst_code` shows how it ended (0 = END_STREAM both ways).
  const judge = () => {
    rec.rst_code = req.rstCode === undefined ? null : req.rstCode;
    rec.sha256_sent = sentHash.digest('hex');
    rec.sha256_received = receivedHash.digest('hex');
    if (rec.status !== 200) return report(3, `stream ${index}: CONNECT answered ${rec.status}`);
    if (resetAfter !== null) {
      if (rec.reset_sent && req.rstCode === http2.constants.NGHTTP2_CANCEL) return report(0);
      return report(3, `stream ${index}: ended by RST code ${req.rstCode}, not by our reset`);
    }
    if (!(readDone && writeDone)) return report(3, `stream ${index}: closed early (RST code ${req.rstCode})`);
    if (rec.bytes_received !== rec.bytes_sent || rec.sha256_received !== rec.sha256_sent) {
      return report(4, `stream ${index}: echo differs from what was sent`);
    }
    return report(0);
  };

  const pump = () => {
    while (rec.bytes_sent < total) {
      const buf = crypto.randomBytes(Math.min(CHUNK, total - rec.bytes_sent));
      sentHash.update(buf);
      rec.bytes_sent += buf.length;
      if (!req.write(buf)) {
        req.once('drain', pump);
        return;
      }
    }
    req.end();
  };

  req.on('response', (headers) => {
    rec.status = headers[':status'];
    if (rec.status !== 200) {
      req.close(); // judged on 'close'
      return;
    }
    pump();
  });
  req.on('data', (data) => {
    receivedHash.update(data);
    rec.bytes_received += data.length;
    if (resetAfter !== null && rec.bytes_received >= resetAfter && !rec.reset_sent) {
      rec.reset_sent = true;
      req.close(http2.constants.NGHTTP2_CANCEL);
    }
  });
  req.on('end', () => {
    readDone = true; // the server's END_STREAM
  });
  req.on('finish', () => {
    writeDone = true; // our END_STREAM was flushed
  });
  req.on('error', (err) => {
    rec.error = err.message;
  });
  req.on('close', judge);
}
