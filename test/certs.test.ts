import { X509Certificate, createPrivateKey } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { beforeAll, describe, expect, it } from 'vitest';

import {
  SELF_SIGNED_VALIDITY_DAYS,
  certificateSummary,
  generateSelfSigned,
  type GeneratedCertificate,
} from '../src/main/certs.js';

let generated: GeneratedCertificate;
let certificate: X509Certificate;

beforeAll(async () => {
  generated = await generateSelfSigned();
  certificate = new X509Certificate(generated.cert);
});

describe('generateSelfSigned', () => {
  it('covers localhost and both loopback IPs', () => {
    expect(certificate.checkHost('localhost')).toBe('localhost');
    expect(certificate.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(certificate.checkIP('::1')).toBe('::1');
  });

  it('covers no other name', () => {
    expect(certificate.checkHost('example.com')).toBeUndefined();
    expect(certificate.checkIP('10.0.0.1')).toBeUndefined();
  });

  it('returns the key of the certificate', () => {
    expect(certificate.checkPrivateKey(createPrivateKey(generated.key))).toBe(true);
  });

  it('detects a key of another certificate', async () => {
    const other = await generateSelfSigned();

    expect(certificate.checkPrivateKey(createPrivateKey(other.key))).toBe(false);
  });

  it('returns the SHA-256 fingerprint', () => {
    expect(generated.fingerprint256).toBe(certificate.fingerprint256);
    expect(generated.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  it('is valid now and expires within days', () => {
    const now = Date.now();
    const validFrom = Date.parse(certificate.validFrom);
    const validTo = Date.parse(certificate.validTo);

    expect(validFrom).toBeLessThanOrEqual(now);
    expect(validTo).toBeGreaterThan(now);
    expect(validTo - validFrom).toBeLessThanOrEqual(
      (SELF_SIGNED_VALIDITY_DAYS + 1) * 24 * 60 * 60 * 1000,
    );
  });

  it('is a leaf for server authentication', () => {
    expect(certificate.ca).toBe(false);
    expect(certificate.keyUsage).toContain('1.3.6.1.5.5.7.3.1');
  });

  it('passes verification by a TLS client that trusts it', async () => {
    const server = tls.createServer({ cert: generated.cert, key: generated.key }, (socket) => {
      socket.end('hello');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;

    try {
      for (const servername of ['localhost', undefined]) {
        const client = tls.connect({
          host: '127.0.0.1',
          port,
          servername,
          ca: generated.cert,
          rejectUnauthorized: true,
        });
        await once(client, 'secureConnect');

        expect(client.authorized).toBe(true);
        const [data] = (await once(client, 'data')) as [Buffer];
        expect(data.toString()).toBe('hello');
        client.destroy();
      }
    } finally {
      server.close();
    }
  });
});

describe('certificateSummary', () => {
  it('summarises subject, SANs and validity', () => {
    const summary = certificateSummary(generated.cert);

    expect(summary.subject).toBe('CN=localhost');
    expect(summary.issuer).toBe('CN=localhost');
    expect(summary.subjectAltNames).toContain('DNS:localhost');
    expect(summary.subjectAltNames).toContain('IP Address:127.0.0.1');
    expect(summary.subjectAltNames).toHaveLength(3);
    expect(summary.expired).toBe(false);
    expect(Date.parse(summary.validTo)).toBeGreaterThan(Date.parse(summary.validFrom));
    expect(summary.fingerprint256).toBe(generated.fingerprint256);
  });

  it('throws for text that is not PEM', () => {
    expect(() => certificateSummary('not a certificate')).toThrow();
  });
});
