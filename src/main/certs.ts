/**
 * Self-signed certificates for a server started without one, and readable summaries of
 * certificates for logs.
 */
import { X509Certificate } from 'node:crypto';

/** A generated certificate and its key, as PEM text. */
export interface GeneratedCertificate {
  cert: string;
  /** Unencrypted PKCS#8 private key. */
  key: string;
  /** SHA-256 fingerprint of the certificate, colon-separated upper-case hex. */
  fingerprint256: string;
}

/** Facts about a certificate that an operator checks: who, for which names, until when. */
export interface CertificateSummary {
  subject: string;
  issuer: string;
  /** Subject alternative names as OpenSSL prints them, for example `DNS:localhost`. */
  subjectAltNames: string[];
  validFrom: string;
  validTo: string;
  /** True when the current time lies outside validFrom..validTo. */
  expired: boolean;
  fingerprint256: string;
}

/** Validity of a generated certificate: long enough for a test run or a demo, short for safety. */
export const SELF_SIGNED_VALIDITY_DAYS = 7;

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Generates a self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
 *
 * The key is EC P-256 and the signature SHA-256. The certificate is valid from one hour ago
 * (to absorb clock skew) for `validityDays`. Resolves with the PEM pair and the SHA-256
 * fingerprint. Rejects only if key generation or signing fails inside node:crypto.
 */
export async function generateSelfSigned(
  validityDays: number = SELF_SIGNED_VALIDITY_DAYS,
): Promise<GeneratedCertificate> {
  const notBeforeDate = new Date(Date.now() - 60 * 60 * 1000);
  const notAfterDate = new Date(notBeforeDate.getTime() + validityDays * DAY_MS);

  // Loaded on first use, so CLI runs that fail on their input do not pay for it.
  const { generate } = await import('selfsigned');
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  });

  const certificate = new X509Certificate(pems.cert);
  return { cert: pems.cert, key: pems.private, fingerprint256: certificate.fingerprint256 };
}

/**
 * Summarises the first certificate of a PEM chain.
 *
 * Returns its subject, issuer, SANs, validity and SHA-256 fingerprint. Throws the error of
 * node:crypto `X509Certificate` when the PEM does not parse.
 */
export function certificateSummary(pem: string | Buffer): CertificateSummary {
  const certificate = new X509Certificate(pem);
  const now = Date.now();
  const validFrom = Date.parse(certificate.validFrom);
  const validTo = Date.parse(certificate.validTo);

  return {
    subject: oneLine(certificate.subject),
    issuer: oneLine(certificate.issuer),
    subjectAltNames: certificate.subjectAltName?.split(', ') ?? [],
    validFrom: new Date(validFrom).toISOString(),
    validTo: new Date(validTo).toISOString(),
    expired: now < validFrom || now > validTo,
    fingerprint256: certificate.fingerprint256,
  };
}

/** Joins the lines of an X.509 name (`CN=a\nO=b`) as `CN=a, O=b`. */
function oneLine(name: string): string {
  return name.split('\n').join(', ');
}
