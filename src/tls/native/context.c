/*
 * Secure contexts: one SSL_CTX with its certificate, CA store, SNI certificates, ALPN list and
 * flags, shared by every engine made from it. A context is reference counted: the JavaScript
 * owner holds one reference until destroy() or the finalizer, and each engine holds one.
 */
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "shardtls.h"

static void free_context_resources(context *c) {
  for (size_t i = 0; i < c->sni_count; i++) {
    for (size_t j = 0; j < c->sni[i].name_count; j++) free(c->sni[i].names[j]);
    free(c->sni[i].names);
    SSL_CTX_free(c->sni[i].ctx);
  }
  free(c->sni);
  c->sni = NULL;
  c->sni_count = 0;
  free(c->alpn);
  c->alpn = NULL;
  SSL_CTX_free(c->ctx);
  c->ctx = NULL;
  c->state->live_contexts--;
}

/* Drops one reference; frees the SSL_CTX at zero and the struct once its handle is gone. */
void context_unref(context *c) {
  if (--c->refs > 0) return;
  free_context_resources(c);
  if (c->handle_gone) free(c);
}

static void context_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  context *c = data;
  c->handle_gone = true;
  if (!c->destroyed) {
    c->destroyed = true;
    context_unref(c);
  } else if (c->refs == 0) {
    free(c);
  }
}

/* Chooses an SNI certificate by the client's server name (RFC 6066 section 3). */
static int servername_callback(SSL *ssl, int *alert, void *arg) {
  (void)alert;
  context *c = arg;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == NULL || c->sni_count == 0) return SSL_TLSEXT_ERR_OK;

  char lower[256];
  size_t length = strlen(name);
  if (length >= sizeof lower) return SSL_TLSEXT_ERR_OK;
  for (size_t i = 0; i <= length; i++) {
    char ch = name[i];
    lower[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
  }
  const char *dot = strchr(lower, '.');

  for (size_t i = 0; i < c->sni_count; i++) {
    for (size_t j = 0; j < c->sni[i].name_count; j++) {
      const char *pattern = c->sni[i].names[j];
      bool match = strcmp(pattern, lower) == 0 ||
                   (pattern[0] == '*' && pattern[1] == '.' && dot != NULL && dot != lower &&
                    strcmp(pattern + 1, dot) == 0);
      if (match) {
        SSL_set_SSL_CTX(ssl, c->sni[i].ctx);
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  return SSL_TLSEXT_ERR_OK;
}

/*
 * Selects ALPN by the server's own preference order. Without overlap the handshake fails with
 * the no_application_protocol alert (RFC 7301 section 3.2).
 */
static int alpn_callback(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                         const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl;
  context *c = arg;
  /* A server with no ALPN list omits the extension from its reply (RFC 7301 section 3.2). */
  if (c->alpn_len == 0) return SSL_TLSEXT_ERR_NOACK;
  for (size_t i = 0; i < c->alpn_len; i += 1 + c->alpn[i]) {
    unsigned char length = c->alpn[i];
    for (unsigned int j = 0; j < inlen; j += 1 + in[j]) {
      if (in[j] == length && j + 1 + length <= inlen &&
          memcmp(in + j + 1, c->alpn + i + 1, length) == 0) {
        *out = in + j + 1;
        *outlen = length;
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Keeps the newest client session so that a later engine can resume it. */
static int new_session_callback(SSL *ssl, SSL_SESSION *session) {
  engine *e = SSL_get_app_data(ssl);
  if (e == NULL || e->is_server) return 0;
  if (e->session != NULL) SSL_SESSION_free(e->session);
  e->session = session;
  return 1;
}

static const unsigned char SESSION_ID_CONTEXT[] = "shardtls";

/* Applies the settings every SSL_CTX of one secure context shares. */
static void configure_ctx(context *c, SSL_CTX *ctx) {
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_session_id_context(ctx, SESSION_ID_CONTEXT, sizeof SESSION_ID_CONTEXT - 1);
  SSL_CTX_set_alpn_select_cb(ctx, alpn_callback, c);
  SSL_CTX_set_tlsext_servername_callback(ctx, servername_callback);
  SSL_CTX_set_tlsext_servername_arg(ctx, c);
  /* Stateless tickets carry resumption, so no context keeps a session cache of its own. */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_BOTH | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, new_session_callback);
}

/* contextCreate() -> handle. Builds an SSL_CTX with the defaults; setters refine it. */
napi_value context_create(napi_env env, napi_callback_info info) {
  addon_state *state;
  napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&state);

  context *c = calloc(1, sizeof *c);
  if (c == NULL) return throw_option(env, "out of memory");
  c->state = state;
  c->refs = 1;
  c->reject_unauthorized = true;

  clear_errors();
  c->ctx = SSL_CTX_new(TLS_method());
  if (c->ctx == NULL) {
    free(c);
    return throw_option(env, "SSL_CTX_new failed");
  }
  configure_ctx(c, c->ctx);
  state->live_contexts++;

  napi_value handle = make_handle(env, c, &SHARDTLS_CONTEXT_TAG, context_finalize);
  if (handle == NULL) {
    c->handle_gone = true;
    context_unref(c);
  }
  return handle;
}

/* contextDestroy(handle). Drops the owner's reference; live engines keep the SSL_CTX. */
napi_value context_destroy(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  context *c = get_tagged(env, argv[0], &SHARDTLS_CONTEXT_TAG);
  if (c == NULL) return throw_type(env, "expected a shardtls secure context handle");
  if (!c->destroyed) {
    c->destroyed = true;
    context_unref(c);
  }
  return undefined_value(env);
}

/* contextSetVersions(handle, min, max): protocol versions as TLS1_2_VERSION-style numbers. */
napi_value context_set_versions(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t min, max;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  context *c = get_context(env, argv[0]);
  if (c == NULL) return NULL;
  napi_get_value_int32(env, argv[1], &min);
  napi_get_value_int32(env, argv[2], &max);
  clear_errors();
  if (!SSL_CTX_set_min_proto_version(c->ctx, min) || !SSL_CTX_set_max_proto_version(c->ctx, max)) {
    return throw_option(env, "invalid minVersion or maxVersion");
  }
  return undefined_value(env);
}

/* Password callback for PEM keys. It never prompts on a terminal. */
typedef struct passphrase {
  const char *text;
  size_t length;
  bool requested;
} passphrase;

static int passphrase_callback(char *buf, int size, int rwflag, void *userdata) {
  (void)rwflag;
  passphrase *p = userdata;
  p->requested = true;
  if (p->text == NULL || p->length > (size_t)size) return -1;
  memcpy(buf, p->text, p->length);
  return (int)p->length;
}

/*
 * Loads a PEM certificate chain (leaf first) and its key into `ctx`. Returns true, or false after
 * writing a message that names the option into `message`.
 */
static bool use_cert_key(SSL_CTX *ctx, const uint8_t *cert, size_t cert_len, const uint8_t *key,
                         size_t key_len, const char *pass, char *message, size_t size) {
  char reason[200];
  BIO *bio = BIO_new_mem_buf(cert, (int)cert_len);
  X509 *leaf = bio ? PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL) : NULL;
  if (leaf == NULL) {
    openssl_reason(reason, sizeof reason, "no certificate found");
    snprintf(message, size, "cannot parse cert: %s", reason);
    BIO_free(bio);
    return false;
  }
  bool ok = SSL_CTX_use_certificate(ctx, leaf) == 1;
  X509_free(leaf);
  if (!ok) {
    openssl_reason(reason, sizeof reason, "rejected");
    snprintf(message, size, "cannot use cert: %s", reason);
    BIO_free(bio);
    return false;
  }

  /* Intermediates follow the leaf; the end of the data ends the loop. */
  SSL_CTX_clear_chain_certs(ctx);
  X509 *extra;
  while ((extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
    if (!SSL_CTX_add0_chain_cert(ctx, extra)) {
      X509_free(extra);
      BIO_free(bio);
      snprintf(message, size, "cannot use cert: the chain was rejected");
      return false;
    }
  }
  BIO_free(bio);
  clear_errors();

  passphrase p = {pass, pass ? strlen(pass) : 0, false};
  bio = BIO_new_mem_buf(key, (int)key_len);
  EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, passphrase_callback, &p) : NULL;
  BIO_free(bio);
  if (pkey == NULL) {
    if (p.requested && pass == NULL) {
      snprintf(message, size, "key is encrypted: set passphrase");
    } else if (p.requested) {
      snprintf(message, size, "wrong passphrase for key");
    } else {
      openssl_reason(reason, sizeof reason, "no key found");
      snprintf(message, size, "cannot parse key: %s", reason);
    }
    return false;
  }
  ok = SSL_CTX_use_PrivateKey(ctx, pkey) == 1 && SSL_CTX_check_private_key(ctx) == 1;
  EVP_PKEY_free(pkey);
  if (!ok) {
    snprintf(message, size, "key does not match cert");
    return false;
  }
  return true;
}

/* Reads (handle, cert, key, passphrase) starting at argv[0]. */
static bool get_cert_key_args(napi_env env, napi_value *argv, uint8_t **cert, size_t *cert_len,
                              uint8_t **key, size_t *key_len, char **pass) {
  return get_bytes(env, argv[0], cert, cert_len) && get_bytes(env, argv[1], key, key_len) &&
         get_optional_string(env, argv[2], pass);
}

/* contextUseCertKey(handle, cert, key, passphrase|null): the default certificate and key. */
napi_value context_use_cert_key(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  uint8_t *cert, *key;
  size_t cert_len, key_len;
  char *pass, message[MESSAGE_SIZE];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  context *c = get_context(env, argv[0]);
  if (c == NULL || !get_cert_key_args(env, argv + 1, &cert, &cert_len, &key, &key_len, &pass)) {
    return NULL;
  }

  clear_errors();
  bool ok = use_cert_key(c->ctx, cert, cert_len, key, key_len, pass, message, sizeof message);
  free(pass);
  if (!ok) return throw_option(env, message);
  clear_errors();
  return undefined_value(env);
}

/* Appends the certificate's DNS subject alternative names, lower case, to `entry`. */
static bool add_san_names(X509 *cert, sni_entry *entry) {
  GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  if (names == NULL) return true;
  int count = sk_GENERAL_NAME_num(names);
  bool ok = true;
  entry->names = calloc(count > 0 ? (size_t)count : 1, sizeof(char *));
  if (entry->names == NULL) ok = false;
  for (int i = 0; ok && i < count; i++) {
    GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_DNS) continue;
    const unsigned char *text = ASN1_STRING_get0_data(name->d.dNSName);
    int length = ASN1_STRING_length(name->d.dNSName);
    char *copy = malloc((size_t)length + 1);
    if (copy == NULL) {
      ok = false;
      break;
    }
    for (int k = 0; k < length; k++) {
      char ch = (char)text[k];
      copy[k] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    copy[length] = '\0';
    entry->names[entry->name_count++] = copy;
  }
  GENERAL_NAMES_free(names);
  return ok;
}

/*
 * contextAddSni(handle, names: string[], cert, key, passphrase|null): a certificate chosen when
 * the client's SNI name matches one of `names`, or its DNS SANs when `names` is empty.
 */
napi_value context_add_sni(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  uint8_t *cert, *key;
  size_t cert_len, key_len;
  char *pass, message[MESSAGE_SIZE];
  uint32_t name_count;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  context *c = get_context(env, argv[0]);
  if (c == NULL) return NULL;
  if (napi_get_array_length(env, argv[1], &name_count) != napi_ok) {
    return throw_type(env, "sniContexts names must be an array of strings");
  }
  if (!get_cert_key_args(env, argv + 2, &cert, &cert_len, &key, &key_len, &pass)) return NULL;

  sni_entry *grown = realloc(c->sni, (c->sni_count + 1) * sizeof *grown);
  if (grown == NULL) {
    free(pass);
    return throw_option(env, "out of memory");
  }
  c->sni = grown;
  sni_entry *entry = &c->sni[c->sni_count];
  memset(entry, 0, sizeof *entry);

  /* The SNI SSL_CTX takes over the handshake after SSL_set_SSL_CTX, so it shares callbacks,
   * versions and the CA store with the default one. */
  clear_errors();
  entry->ctx = SSL_CTX_new(TLS_method());
  if (entry->ctx == NULL) {
    free(pass);
    return throw_option(env, "SSL_CTX_new failed");
  }
  configure_ctx(c, entry->ctx);
  SSL_CTX_set_min_proto_version(entry->ctx, SSL_CTX_get_min_proto_version(c->ctx));
  SSL_CTX_set_max_proto_version(entry->ctx, SSL_CTX_get_max_proto_version(c->ctx));
  SSL_CTX_set_options(entry->ctx, SSL_CTX_get_options(c->ctx));
  SSL_CTX_set1_cert_store(entry->ctx, SSL_CTX_get_cert_store(c->ctx));

  bool ok = use_cert_key(entry->ctx, cert, cert_len, key, key_len, pass, message, sizeof message);
  free(pass);
  if (!ok) {
    SSL_CTX_free(entry->ctx);
    char named[MESSAGE_SIZE + 16];
    snprintf(named, sizeof named, "sniContexts: %s", message);
    return throw_option(env, named);
  }
  c->sni_count++;

  if (name_count == 0) {
    if (!add_san_names(SSL_CTX_get0_certificate(entry->ctx), entry)) {
      return throw_option(env, "out of memory");
    }
    clear_errors();
    return undefined_value(env);
  }
  entry->names = calloc(name_count, sizeof(char *));
  if (entry->names == NULL) return throw_option(env, "out of memory");
  for (uint32_t i = 0; i < name_count; i++) {
    napi_value item;
    char *name;
    napi_get_element(env, argv[1], i, &item);
    if (!get_optional_string(env, item, &name)) return NULL;
    if (name == NULL) return throw_type(env, "sniContexts names must be strings");
    for (char *p = name; *p; p++) {
      if (*p >= 'A' && *p <= 'Z') *p = (char)(*p + 32);
    }
    entry->names[entry->name_count++] = name;
  }
  clear_errors();
  return undefined_value(env);
}

/* contextAddCa(handle, pem): trusts every certificate of a PEM bundle for peer verification. */
napi_value context_add_ca(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint8_t *pem;
  size_t pem_len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  context *c = get_context(env, argv[0]);
  if (c == NULL || !get_bytes(env, argv[1], &pem, &pem_len)) return NULL;

  clear_errors();
  BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
  X509_STORE *store = SSL_CTX_get_cert_store(c->ctx);
  STACK_OF(X509_NAME) *client_cas = SSL_CTX_get_client_CA_list(c->ctx);
  int added = 0;
  X509 *cert;
  while (bio != NULL && (cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
    X509_STORE_add_cert(store, cert);
    /* Servers name these CAs in their CertificateRequest (RFC 8446 section 4.2.4). */
    if (client_cas == NULL) {
      SSL_CTX_add_client_CA(c->ctx, cert);
      client_cas = SSL_CTX_get_client_CA_list(c->ctx);
    } else {
      SSL_CTX_add_client_CA(c->ctx, cert);
    }
    X509_free(cert);
    added++;
  }
  BIO_free(bio);
  if (added == 0) {
    char reason[200], message[MESSAGE_SIZE];
    openssl_reason(reason, sizeof reason, "no certificate found");
    snprintf(message, sizeof message, "cannot parse ca: %s", reason);
    return throw_option(env, message);
  }
  clear_errors();
  return undefined_value(env);
}

/* contextUseDefaultCa(handle): trusts OpenSSL's default certificate locations. */
napi_value context_use_default_ca(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  context *c = get_context(env, argv[0]);
  if (c == NULL) return NULL;
  clear_errors();
  SSL_CTX_set_default_verify_paths(c->ctx);
  clear_errors();
  return undefined_value(env);
}

/* contextSetCiphers(handle, tls12List|null, tls13Suites|null). */
napi_value context_set_ciphers(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char *list, *suites, message[MESSAGE_SIZE];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  context *c = get_context(env, argv[0]);
  if (c == NULL || !get_optional_string(env, argv[1], &list)) return NULL;
  if (!get_optional_string(env, argv[2], &suites)) {
    free(list);
    return NULL;
  }

  clear_errors();
  message[0] = '\0';
  if (list != NULL && SSL_CTX_set_cipher_list(c->ctx, list) != 1) {
    snprintf(message, sizeof message, "invalid ciphers '%.200s': no cipher matches", list);
  } else if (suites != NULL && SSL_CTX_set_ciphersuites(c->ctx, suites) != 1) {
    snprintf(message, sizeof message, "invalid ciphersuites '%.200s': no TLS 1.3 suite matches",
             suites);
  }
  free(list);
  free(suites);
  if (message[0] != '\0') return throw_option(env, message);
  return undefined_value(env);
}

/* contextSetAlpn(handle, wire): the protocol list in wire format, in preference order. */
napi_value context_set_alpn(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint8_t *wire;
  size_t wire_len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  context *c = get_context(env, argv[0]);
  if (c == NULL || !get_bytes(env, argv[1], &wire, &wire_len)) return NULL;

  unsigned char *copy = malloc(wire_len ? wire_len : 1);
  if (copy == NULL) return throw_option(env, "out of memory");
  memcpy(copy, wire, wire_len);
  free(c->alpn);
  c->alpn = copy;
  c->alpn_len = wire_len;

  /* The client list; note that this call returns 0 on success. */
  clear_errors();
  if (SSL_CTX_set_alpn_protos(c->ctx, copy, (unsigned int)wire_len) != 0) {
    return throw_option(env, "invalid alpnProtocols");
  }
  return undefined_value(env);
}

/*
 * contextSetFlags(handle, sessionTickets, requestCert, requireCert, rejectUnauthorized).
 * Tickets off also means no TLS 1.3 tickets are issued (num_tickets 0).
 */
napi_value context_set_flags(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  bool tickets, request, require, reject;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  context *c = get_context(env, argv[0]);
  if (c == NULL) return NULL;
  napi_get_value_bool(env, argv[1], &tickets);
  napi_get_value_bool(env, argv[2], &request);
  napi_get_value_bool(env, argv[3], &require);
  napi_get_value_bool(env, argv[4], &reject);

  c->request_cert = request || require;
  c->require_cert = require;
  c->reject_unauthorized = reject;

  SSL_CTX *all[1 + 64];
  size_t n = 0;
  all[n++] = c->ctx;
  for (size_t i = 0; i < c->sni_count && n < sizeof all / sizeof all[0]; i++) {
    all[n++] = c->sni[i].ctx;
  }
  for (size_t i = 0; i < n; i++) {
    if (tickets) {
      SSL_CTX_clear_options(all[i], SSL_OP_NO_TICKET);
    } else {
      SSL_CTX_set_options(all[i], SSL_OP_NO_TICKET);
      SSL_CTX_set_num_tickets(all[i], 0);
      SSL_CTX_set_session_cache_mode(all[i], SSL_SESS_CACHE_OFF);
    }
  }
  clear_errors();
  return undefined_value(env);
}

/*
 * contextSetTicketKeys(handle, keys): the key material that encrypts stateless session tickets
 * (TLS 1.2 RFC 5077 tickets and TLS 1.3 PSK tickets alike). Every shard gets the same keys, so a
 * ticket issued by one shard resumes on any other. OpenSSL 3 takes 80 bytes: a 16-byte key name,
 * a 32-byte HMAC key and a 32-byte AES key. The length is asked from OpenSSL, not assumed.
 */
napi_value context_set_ticket_keys(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint8_t *keys;
  size_t keys_len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  context *c = get_context(env, argv[0]);
  if (c == NULL || !get_bytes(env, argv[1], &keys, &keys_len)) return NULL;

  clear_errors();
  long expected = SSL_CTX_set_tlsext_ticket_keys(c->ctx, NULL, 0);
  if (expected <= 0 || (size_t)expected != keys_len) {
    char message[MESSAGE_SIZE];
    snprintf(message, sizeof message, "invalid ticketKeys: expected %ld bytes, got %zu", expected,
             keys_len);
    clear_errors();
    return throw_option(env, message);
  }

  /* Tickets are sealed with the keys of the context the handshake started on, but an SNI
   * context gets them too, so the choice never depends on OpenSSL's internals.
   * NOTE: a ticket issued under one SNI certificate also resumes under another name of the same
   * server, against RFC 6066 section 3. The SNI switch happens after OpenSSL has looked up the
   * session; selecting the certificate in a client_hello callback with a session id context per
   * certificate would make such a resumption fall back to a full handshake. */
  bool ok = SSL_CTX_set_tlsext_ticket_keys(c->ctx, keys, (long)keys_len) == 1;
  for (size_t i = 0; ok && i < c->sni_count; i++) {
    ok = SSL_CTX_set_tlsext_ticket_keys(c->sni[i].ctx, keys, (long)keys_len) == 1;
  }
  clear_errors();
  if (!ok) return throw_option(env, "invalid ticketKeys: OpenSSL rejected them");
  return undefined_value(env);
}
