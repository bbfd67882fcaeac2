/*
 * Session details: what the handshake agreed (info), a summary of the peer's certificate with
 * no key material, and the client's resumable session as DER bytes.
 */
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "shardtls.h"

/* session(h) -> DER bytes of the newest resumable client session, or null. */
napi_value engine_session(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  engine *e = get_engine(env, argv[0]);
  if (e == NULL) return NULL;
  SSL_SESSION *session = e->session;
  if (session == NULL || !SSL_SESSION_is_resumable(session)) return string_value(env, NULL);
  int length = i2d_SSL_SESSION(session, NULL);
  if (length <= 0) return string_value(env, NULL);

  napi_value buffer;
  void *data;
  if (napi_create_buffer(env, (size_t)length, &data, &buffer) != napi_ok) return NULL;
  unsigned char *p = data;
  i2d_SSL_SESSION(session, &p);
  clear_errors();
  return buffer;
}

static void set_field(napi_env env, napi_value object, const char *name, napi_value value) {
  napi_set_named_property(env, object, name, value);
}

static napi_value bio_string(napi_env env, BIO *bio) {
  char *data;
  long length = BIO_get_mem_data(bio, &data);
  napi_value v;
  napi_create_string_utf8(env, data, (size_t)length, &v);
  (void)BIO_reset(bio);
  return v;
}

static napi_value name_string(napi_env env, BIO *bio, const X509_NAME *name) {
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
  return bio_string(env, bio);
}

static napi_value time_string(napi_env env, BIO *bio, const ASN1_TIME *time) {
  ASN1_TIME_print(bio, time);
  return bio_string(env, bio);
}

static napi_value san_array(napi_env env, BIO *bio, X509 *cert) {
  napi_value list;
  napi_create_array(env, &list);
  GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  if (names == NULL) return list;
  uint32_t index = 0;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
    GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_DNS) {
      BIO_printf(bio, "DNS:%.*s", ASN1_STRING_length(name->d.dNSName),
                 (const char *)ASN1_STRING_get0_data(name->d.dNSName));
    } else if (name->type == GEN_IPADD) {
      char *text = NULL;
      ASN1_OCTET_STRING *ip = name->d.iPAddress;
      const unsigned char *b = ip->data;
      if (ip->length == 4) {
        BIO_printf(bio, "IP Address:%d.%d.%d.%d", b[0], b[1], b[2], b[3]);
      } else if (ip->length == 16) {
        BIO_printf(bio, "IP Address:");
        for (int k = 0; k < 16; k += 2) {
          BIO_printf(bio, k ? ":%X" : "%X", (b[k] << 8) | b[k + 1]);
        }
      } else {
        continue;
      }
      (void)text;
    } else {
      continue;
    }
    napi_set_element(env, list, index++, bio_string(env, bio));
  }
  GENERAL_NAMES_free(names);
  return list;
}

static napi_value certificate_summary(napi_env env, X509 *cert) {
  napi_value summary;
  napi_create_object(env, &summary);
  BIO *bio = BIO_new(BIO_s_mem());
  if (bio == NULL) return summary;

  set_field(env, summary, "subject", name_string(env, bio, X509_get_subject_name(cert)));
  set_field(env, summary, "issuer", name_string(env, bio, X509_get_issuer_name(cert)));
  set_field(env, summary, "subjectAltNames", san_array(env, bio, cert));
  set_field(env, summary, "validFrom", time_string(env, bio, X509_get0_notBefore(cert)));
  set_field(env, summary, "validTo", time_string(env, bio, X509_get0_notAfter(cert)));

  BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
  char *hex = serial ? BN_bn2hex(serial) : NULL;
  set_field(env, summary, "serialNumber", string_value(env, hex ? hex : ""));
  OPENSSL_free(hex);
  BN_free(serial);

  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  char fingerprint[EVP_MAX_MD_SIZE * 3 + 1] = "";
  if (X509_digest(cert, EVP_sha256(), digest, &digest_len) == 1) {
    for (unsigned int i = 0; i < digest_len; i++) {
      snprintf(fingerprint + i * 3, 4, i + 1 < digest_len ? "%02X:" : "%02X", digest[i]);
    }
  }
  set_field(env, summary, "fingerprint256", string_value(env, fingerprint));
  BIO_free(bio);
  return summary;
}

/* info(h) -> TlsSessionInfo plus `verifyError` (null when the peer chain verified). */
napi_value engine_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  engine *e = get_engine(env, argv[0]);
  if (e == NULL) return NULL;
  napi_value result;
  napi_create_object(env, &result);
  bool done = SSL_is_init_finished(e->ssl);
  clear_errors();

  set_field(env, result, "version", string_value(env, done ? SSL_get_version(e->ssl) : NULL));
  const SSL_CIPHER *cipher = done ? SSL_get_current_cipher(e->ssl) : NULL;
  set_field(env, result, "cipher", string_value(env, cipher ? SSL_CIPHER_get_name(cipher) : NULL));

  const unsigned char *alpn = NULL;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(e->ssl, &alpn, &alpn_len);
  napi_value alpn_value;
  if (alpn_len > 0) {
    napi_create_string_latin1(env, (const char *)alpn, alpn_len, &alpn_value);
  } else {
    napi_get_null(env, &alpn_value);
  }
  set_field(env, result, "alpnProtocol", alpn_value);
  const char *servername = SSL_get_servername(e->ssl, TLSEXT_NAMETYPE_host_name);
  set_field(env, result, "servername", string_value(env, servername));

  X509 *peer = SSL_get1_peer_certificate(e->ssl);
  napi_value peer_value;
  if (peer != NULL) {
    peer_value = certificate_summary(env, peer);
    X509_free(peer);
  } else {
    napi_get_null(env, &peer_value);
  }
  set_field(env, result, "peerCertificate", peer_value);
  set_field(env, result, "sessionReused", bool_value(env, done && SSL_session_reused(e->ssl)));

  long verify = SSL_get_verify_result(e->ssl);
  bool has_peer = peer != NULL;
  const char *verify_error =
      has_peer && verify != X509_V_OK ? X509_verify_cert_error_string(verify) : NULL;
  set_field(env, result, "verifyError", string_value(env, verify_error));
  clear_errors();
  return result;
}
