/*
 * shardtls_tls: a memory-BIO TLS engine and secure contexts over the OpenSSL inside node.
 *
 * An engine is one SSL object on one end of a BIO pair. The application side of the pair (the
 * "network" BIO) carries ciphertext: `writeInput` pushes bytes from the peer, `peekOutput` and
 * `consumeOutput` take bytes for the peer. The engine does no I/O of its own.
 *
 * Hot-path calls (write, read, writeInput, peekOutput, consumeOutput, outputPending) return a
 * number: a byte count or one of the engine codes below. They allocate nothing and throw only
 * for caller bugs (TypeError, RangeError) and for protocol or certificate failures, which end
 * the connection.
 *
 * The addon is context aware (NAPI_MODULE_INIT), so each worker thread gets its own state. The
 * OpenSSL error queue is per thread and shared with node's own crypto, so every entry point
 * clears it before an SSL call and before it returns.
 *
 * Handles are Node-API externals carrying a type tag, so a foreign or mistyped handle raises a
 * TypeError instead of being dereferenced.
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <node_api.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Engine result codes. They mirror src/shared/codes.ts, which is the source of truth. */
#define SHARDTLS_NEED_READ (-1001)
#define SHARDTLS_NEED_WRITE (-1002)
#define SHARDTLS_EOF_GRACEFUL (-1003)
#define SHARDTLS_EOF_ABRUPT (-1004)

/*
 * Default size of each of the two BIO pair buffers. One maximum TLS record is 2^14 bytes of
 * plaintext plus at most 256 bytes of expansion in TLS 1.3 (RFC 8446 section 5.2); the TLS 1.2
 * ciphers OpenSSL offers add less than 300 bytes. 17 KiB therefore holds one whole record, so
 * one flush moves one record, while an engine that has moved data holds 2 x 17 KiB of BIO
 * buffer at most. The pair allocates each buffer on its first write, so a connection that
 * never sent or received data costs nothing here. A smaller pair still works: a record that
 * does not fit stays in SSL's own write buffer and leaves over several flushes.
 */
#define DEFAULT_BIO_SIZE (17 * 1024)
#define MIN_BIO_SIZE 512
#define MAX_BIO_SIZE (16 * 1024 * 1024)

#define MESSAGE_SIZE 320

/* Type tags for handles. The values are random and fixed for this addon. */
static const napi_type_tag ENGINE_TAG = {0x5d3a8f4e2b1c6079ULL, 0x9e1f2a3b4c5d6e7fULL};
static const napi_type_tag CONTEXT_TAG = {0x1b7c3e9a5f2d4086ULL, 0xa4b3c2d1e0f98765ULL};

/* ---------------------------------------------------------------------------------------- */
/* Per-environment state                                                                    */
/* ---------------------------------------------------------------------------------------- */

typedef struct addon_state {
  napi_ref error_class; /* TlsEngineError from the TypeScript wrapper, or NULL */
  int64_t live_engines;
  int64_t live_contexts;
} addon_state;

typedef struct sni_entry {
  char **names; /* lower case; "*.example.com" matches one label */
  size_t name_count;
  SSL_CTX *ctx;
} sni_entry;

typedef struct context {
  addon_state *state;
  SSL_CTX *ctx;
  /* One reference for the JavaScript owner until destroy() or the finalizer, one per engine. */
  int refs;
  bool destroyed;      /* destroy() was called */
  bool handle_gone;    /* the external's finalizer ran */
  bool request_cert;   /* server: ask the client for a certificate */
  bool require_cert;   /* server: fail the handshake without one */
  bool reject_unauthorized;
  unsigned char *alpn; /* server preference list, wire format (RFC 7301 section 3.1) */
  size_t alpn_len;
  sni_entry *sni;
  size_t sni_count;
} context;

typedef struct engine {
  addon_state *state;
  context *context;
  SSL *ssl;     /* NULL after destroy() */
  BIO *network; /* application side of the pair */
  bool is_server;
  bool established;        /* the handshake completed; OpenSSL clears its own flag on an alert */
  bool failed;             /* a protocol or certificate failure was thrown */
  bool cert_failure;       /* the failure was ERR_TLS_CERT */
  char failure[MESSAGE_SIZE];
  char close_reason[MESSAGE_SIZE]; /* the alert behind an EOF_ABRUPT, or empty */
  SSL_SESSION *session;            /* client: the newest resumable session */
} engine;

/*
 * Empties this thread's OpenSSL error queue, so SSL_get_error sees only the errors of the next
 * call and node's own crypto finds no stale entry. OpenSSL 3.0's ERR_clear_error resets all 16
 * slots of the queue on every call (9% of perf samples in bench/engine.ts when called
 * unconditionally), so it runs only when ERR_peek_error finds an entry.
 */
static inline void clear_errors(void) {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

/* ---------------------------------------------------------------------------------------- */
/* Argument helpers                                                                         */
/* ---------------------------------------------------------------------------------------- */

static napi_value undefined_value(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

static napi_value int_value(napi_env env, int64_t n) {
  napi_value v;
  napi_create_int64(env, n, &v);
  return v;
}

static napi_value bool_value(napi_env env, bool b) {
  napi_value v;
  napi_get_boolean(env, b, &v);
  return v;
}

static napi_value string_value(napi_env env, const char *s) {
  napi_value v;
  if (s == NULL) {
    napi_get_null(env, &v);
    return v;
  }
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

static napi_value throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

static napi_value throw_range(napi_env env, const char *message) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
  return NULL;
}

static napi_value throw_option(napi_env env, const char *message) {
  clear_errors();
  napi_throw_error(env, "ERR_INVALID_ARG_VALUE", message);
  return NULL;
}

/* Writes "<lib>: <reason>" of the newest queued OpenSSL error, or `fallback`, into `out`. */
static void openssl_reason(char *out, size_t size, const char *fallback) {
  unsigned long err = ERR_peek_last_error();
  const char *reason = err ? ERR_reason_error_string(err) : NULL;
  const char *lib = err ? ERR_lib_error_string(err) : NULL;
  if (reason == NULL) {
    snprintf(out, size, "%s", fallback);
  } else if (lib != NULL) {
    snprintf(out, size, "%s: %s", lib, reason);
  } else {
    snprintf(out, size, "%s", reason);
  }
}

/* Reads a Uint8Array (or Buffer) argument. Returns false after throwing a TypeError. */
static bool get_bytes(napi_env env, napi_value value, uint8_t **data, size_t *length) {
  napi_typedarray_type type;
  void *raw;
  if (napi_get_typedarray_info(env, value, &type, length, &raw, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    throw_type(env, "expected a Uint8Array");
    return false;
  }
  *data = raw;
  return true;
}

/*
 * Reads (bytes, offset, length) and checks the range. Returns false after throwing a TypeError
 * or RangeError. It is on the per-record path, so it does two reads and a compare, nothing more.
 */
static bool get_range(napi_env env, napi_value *argv, uint8_t **data, int *length) {
  uint8_t *base;
  size_t size;
  int64_t offset, count;
  if (!get_bytes(env, argv[0], &base, &size)) return false;
  if (napi_get_value_int64(env, argv[1], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[2], &count) != napi_ok) {
    throw_type(env, "offset and length must be numbers");
    return false;
  }
  if (offset < 0 || count < 0 || (uint64_t)offset > size || (uint64_t)count > size - offset) {
    throw_range(env, "offset and length must lie within the array");
    return false;
  }
  *data = base + offset;
  *length = count > INT32_MAX ? INT32_MAX : (int)count;
  return true;
}

/* Reads an optional string argument into a malloc'ed C string, or NULL for null/undefined. */
static bool get_optional_string(napi_env env, napi_value value, char **out) {
  napi_valuetype type;
  size_t length;
  *out = NULL;
  napi_typeof(env, value, &type);
  if (type == napi_null || type == napi_undefined) return true;
  if (type != napi_string) {
    throw_type(env, "expected a string or null");
    return false;
  }
  napi_get_value_string_utf8(env, value, NULL, 0, &length);
  *out = malloc(length + 1);
  if (*out == NULL) {
    napi_throw_error(env, "ERR_MEMORY", "out of memory");
    return false;
  }
  napi_get_value_string_utf8(env, value, *out, length + 1, &length);
  return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Handles                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static void *get_tagged(napi_env env, napi_value handle, const napi_type_tag *tag) {
  bool tagged = false;
  void *pointer = NULL;
  if (napi_check_object_type_tag(env, handle, tag, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, handle, &pointer) != napi_ok) {
    return NULL;
  }
  return pointer;
}

/* Returns the live engine behind `handle`, or NULL after throwing a TypeError. */
static engine *get_engine(napi_env env, napi_value handle) {
  engine *e = get_tagged(env, handle, &ENGINE_TAG);
  if (e == NULL) {
    throw_type(env, "expected a shardtls engine handle");
    return NULL;
  }
  if (e->ssl == NULL) {
    napi_throw_type_error(env, "ERR_TLS_ENGINE_DESTROYED", "the engine was destroyed");
    return NULL;
  }
  return e;
}

static context *get_context(napi_env env, napi_value handle) {
  context *c = get_tagged(env, handle, &CONTEXT_TAG);
  if (c == NULL) {
    throw_type(env, "expected a shardtls secure context handle");
    return NULL;
  }
  if (c->destroyed) {
    napi_throw_type_error(env, "ERR_TLS_CONTEXT_DESTROYED", "the secure context was destroyed");
    return NULL;
  }
  return c;
}

static napi_value make_handle(napi_env env, void *pointer, const napi_type_tag *tag,
                              napi_finalize finalize) {
  napi_value handle;
  if (napi_create_external(env, pointer, finalize, NULL, &handle) != napi_ok) return NULL;
  if (napi_type_tag_object(env, handle, tag) != napi_ok) return NULL;
  return handle;
}

/* ---------------------------------------------------------------------------------------- */
/* Engine errors                                                                            */
/* ---------------------------------------------------------------------------------------- */

/* Throws the engine's stored failure as a TlsEngineError (or an Error when none is set). */
static napi_value throw_failure(napi_env env, engine *e) {
  const char *code = e->cert_failure ? "ERR_TLS_CERT" : "ERR_TLS_PROTOCOL";
  napi_value ctor = NULL, error, argv[2];

  clear_errors();
  if (e->state->error_class != NULL) napi_get_reference_value(env, e->state->error_class, &ctor);
  napi_create_string_utf8(env, e->failure, NAPI_AUTO_LENGTH, &argv[0]);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &argv[1]);
  if (ctor == NULL || napi_new_instance(env, ctor, 2, argv, &error) != napi_ok) {
    napi_create_error(env, argv[1], argv[0], &error);
  }
  napi_throw(env, error);
  return NULL;
}

/* True for alert numbers that concern certificates (RFC 8446 section 6.2). */
static bool is_certificate_alert(int alert) {
  return (alert >= SSL_AD_BAD_CERTIFICATE && alert <= SSL_AD_UNKNOWN_CA) ||
         alert == SSL_AD_CERTIFICATE_REQUIRED;
}

/*
 * Records why the connection failed, from the error queue and the verify result. Returns
 * EOF_ABRUPT when the failure is a truncated stream; returns 0 after storing a failure that the
 * caller must throw.
 */
static int classify_failure(engine *e) {
  unsigned long err = ERR_peek_error();
  int lib = ERR_GET_LIB(err);
  int reason = ERR_GET_REASON(err);

  /* OpenSSL 3 reports a transport EOF without close_notify as this reason. */
  if (err == 0 || (lib == ERR_LIB_SSL && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
    return SHARDTLS_EOF_ABRUPT;
  }

  /*
   * A fatal alert from the peer: OpenSSL queues it as reason SSL_AD_REASON_OFFSET + alert.
   * Once the handshake is done this is a truncated stream (EOF_ABRUPT) and the alert text is
   * kept for closeReason(). During the handshake it is the reason the handshake failed, so it
   * is thrown like any local failure.
   */
  bool alert = lib == ERR_LIB_SSL && reason > SSL_AD_REASON_OFFSET;
  if (alert && e->established) {
    openssl_reason(e->close_reason, sizeof e->close_reason, "fatal alert");
    return SHARDTLS_EOF_ABRUPT;
  }

  long verify = SSL_get_verify_result(e->ssl);
  if (lib == ERR_LIB_SSL && reason == SSL_R_CERTIFICATE_VERIFY_FAILED && verify != X509_V_OK) {
    snprintf(e->failure, sizeof e->failure, "certificate verify failed: %s",
             X509_verify_cert_error_string(verify));
    e->cert_failure = true;
  } else {
    const char *text = ERR_reason_error_string(err);
    snprintf(e->failure, sizeof e->failure, "%s", text != NULL ? text : "TLS protocol error");
    e->cert_failure = (alert && is_certificate_alert(reason - SSL_AD_REASON_OFFSET)) ||
                      (lib == ERR_LIB_SSL && reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE);
  }
  e->failed = true;
  return 0;
}

/*
 * Maps the result `r` of an SSL call to an engine code. Returns the code, or 0 after storing
 * a failure (the caller throws it). Must run before the error queue is cleared.
 */
static int map_result(engine *e, int r) {
  switch (SSL_get_error(e->ssl, r)) {
    case SSL_ERROR_WANT_READ:
      return SHARDTLS_NEED_READ;
    case SSL_ERROR_WANT_WRITE:
      return SHARDTLS_NEED_WRITE;
    case SSL_ERROR_ZERO_RETURN:
      return SHARDTLS_EOF_GRACEFUL;
    case SSL_ERROR_SYSCALL:
      /* Only a BIO pair under the SSL, so this is an EOF the protocol did not expect. */
      return SHARDTLS_EOF_ABRUPT;
    default:
      return classify_failure(e);
  }
}

/* Returns the napi value for an SSL result code, throwing a stored failure when it is one. */
static napi_value finish(napi_env env, engine *e, int code) {
  clear_errors();
  if (code == 0 && e->failed) return throw_failure(env, e);
  return int_value(env, code);
}

/* ---------------------------------------------------------------------------------------- */
/* Secure contexts                                                                          */
/* ---------------------------------------------------------------------------------------- */

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
static void context_unref(context *c) {
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
static napi_value context_create(napi_env env, napi_callback_info info) {
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

  napi_value handle = make_handle(env, c, &CONTEXT_TAG, context_finalize);
  if (handle == NULL) {
    c->handle_gone = true;
    context_unref(c);
  }
  return handle;
}

/* contextDestroy(handle). Drops the owner's reference; live engines keep the SSL_CTX. */
static napi_value context_destroy(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  context *c = get_tagged(env, argv[0], &CONTEXT_TAG);
  if (c == NULL) return throw_type(env, "expected a shardtls secure context handle");
  if (!c->destroyed) {
    c->destroyed = true;
    context_unref(c);
  }
  return undefined_value(env);
}

/* contextSetVersions(handle, min, max): protocol versions as TLS1_2_VERSION-style numbers. */
static napi_value context_set_versions(napi_env env, napi_callback_info info) {
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
static napi_value context_use_cert_key(napi_env env, napi_callback_info info) {
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
static napi_value context_add_sni(napi_env env, napi_callback_info info) {
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
static napi_value context_add_ca(napi_env env, napi_callback_info info) {
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
static napi_value context_use_default_ca(napi_env env, napi_callback_info info) {
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
static napi_value context_set_ciphers(napi_env env, napi_callback_info info) {
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
static napi_value context_set_alpn(napi_env env, napi_callback_info info) {
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
static napi_value context_set_flags(napi_env env, napi_callback_info info) {
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

/* ---------------------------------------------------------------------------------------- */
/* Engine lifetime                                                                          */
/* ---------------------------------------------------------------------------------------- */

static void engine_release(engine *e) {
  if (e->ssl == NULL) return;
  clear_errors();
  SSL_free(e->ssl); /* also frees the SSL side of the pair */
  BIO_free(e->network);
  e->ssl = NULL;
  e->network = NULL;
  if (e->session != NULL) SSL_SESSION_free(e->session);
  e->session = NULL;
  context_unref(e->context);
  e->context = NULL;
  e->state->live_engines--;
  clear_errors();
}

/*
 * A leaked engine is freed when its handle is collected. That is a last resort, because the
 * collector neither knows the native memory behind a handle nor runs at a predictable time:
 * destroy() is the contract.
 */
static void engine_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  engine_release(data);
  free(data);
}

static bool is_ip_literal(const char *name) {
  unsigned char buf[16];
  ASN1_OCTET_STRING *ip = a2i_IPADDRESS(name);
  (void)buf;
  if (ip == NULL) return false;
  ASN1_OCTET_STRING_free(ip);
  return true;
}

/* Applies the client's server name: SNI and the peer identity check (RFC 6125). */
static bool set_client_servername(SSL *ssl, const char *servername) {
  if (is_ip_literal(servername)) {
    /* RFC 6066 section 3: literal IP addresses are not sent as SNI. */
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    return X509_VERIFY_PARAM_set1_ip_asc(param, servername) == 1;
  }
  return SSL_set_tlsext_host_name(ssl, servername) == 1 && SSL_set1_host(ssl, servername) == 1;
}

/*
 * engineCreate(context, isServer, servername|null, bioSize, session|null, releaseBuffers)
 * -> handle. `bioSize` of 0 picks DEFAULT_BIO_SIZE. `releaseBuffers` false clears
 * SSL_MODE_RELEASE_BUFFERS for this engine: SSL then keeps its record buffers (about 34 KiB)
 * between records instead of a malloc and free per record.
 */
static napi_value engine_create(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  addon_state *state;
  bool is_server, release_buffers = true;
  uint32_t bio_size;
  char *servername;
  napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&state);
  context *c = get_context(env, argv[0]);
  if (c == NULL) return NULL;
  if (napi_get_value_bool(env, argv[1], &is_server) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &bio_size) != napi_ok) {
    return throw_type(env, "isServer must be a boolean and bioSize a number");
  }
  if (argc >= 6 && napi_get_value_bool(env, argv[5], &release_buffers) != napi_ok) {
    return throw_type(env, "releaseBuffers must be a boolean");
  }
  if (bio_size == 0) bio_size = DEFAULT_BIO_SIZE;
  if (bio_size < MIN_BIO_SIZE || bio_size > MAX_BIO_SIZE) {
    return throw_range(env, "bioSize must be between 512 bytes and 16 MiB");
  }
  if (!get_optional_string(env, argv[2], &servername)) return NULL;

  engine *e = calloc(1, sizeof *e);
  if (e == NULL) {
    free(servername);
    return throw_option(env, "out of memory");
  }
  e->state = state;
  e->is_server = is_server;

  clear_errors();
  BIO *internal = NULL;
  e->ssl = SSL_new(c->ctx);
  bool ok = e->ssl != NULL && BIO_new_bio_pair(&internal, bio_size, &e->network, bio_size) == 1;
  if (ok) {
    SSL_set_bio(e->ssl, internal, internal);
    SSL_set_app_data(e->ssl, e);
    if (!release_buffers) SSL_clear_mode(e->ssl, SSL_MODE_RELEASE_BUFFERS);
    if (is_server) {
      int mode = SSL_VERIFY_NONE;
      if (c->request_cert) mode = SSL_VERIFY_PEER;
      if (c->require_cert) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
      SSL_set_verify(e->ssl, mode, NULL);
      SSL_set_accept_state(e->ssl);
    } else {
      SSL_set_verify(e->ssl, c->reject_unauthorized ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
      if (servername != NULL) ok = set_client_servername(e->ssl, servername);
      SSL_set_connect_state(e->ssl);
    }
  }
  if (ok && !is_server && argc >= 5) {
    napi_valuetype type;
    napi_typeof(env, argv[4], &type);
    if (type != napi_null && type != napi_undefined) {
      uint8_t *der;
      size_t der_len;
      if (!get_bytes(env, argv[4], &der, &der_len)) {
        ok = false;
      } else {
        const unsigned char *p = der;
        SSL_SESSION *session = d2i_SSL_SESSION(NULL, &p, (long)der_len);
        /* A session that does not parse is skipped: the handshake then starts afresh. */
        if (session != NULL) {
          SSL_set_session(e->ssl, session);
          SSL_SESSION_free(session);
        }
      }
    }
  }
  free(servername);
  if (!ok) {
    bool thrown = false;
    napi_is_exception_pending(env, &thrown);
    if (e->ssl != NULL) SSL_free(e->ssl);
    else BIO_free(internal);
    BIO_free(e->network);
    free(e);
    if (thrown) return NULL;
    return throw_option(env, "cannot create the engine: invalid servername or out of memory");
  }

  c->refs++;
  e->context = c;
  state->live_engines++;
  clear_errors();
  napi_value handle = make_handle(env, e, &ENGINE_TAG, engine_finalize);
  if (handle == NULL) engine_finalize(env, e, NULL);
  return handle;
}

/* ---------------------------------------------------------------------------------------- */
/* Engine operations                                                                        */
/* ---------------------------------------------------------------------------------------- */

/* Reads argv[0] as an engine and the rest of up to `count` arguments. */
#define ENGINE_ARGS(count)                                    \
  size_t argc = (count);                                      \
  napi_value argv[(count)];                                   \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);       \
  if (argc < (count)) return throw_type(env, "missing arguments"); \
  engine *e = get_engine(env, argv[0]);                       \
  if (e == NULL) return NULL

/* handshake(h) -> 1 or an engine code. */
static napi_value engine_handshake(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
  if (e->failed) return throw_failure(env, e);
  if (SSL_is_init_finished(e->ssl)) return int_value(env, 1);

  clear_errors();
  int r = SSL_do_handshake(e->ssl);
  if (r == 1) e->established = true;
  return finish(env, e, r == 1 ? 1 : map_result(e, r));
}

static napi_value engine_handshake_done(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
  return bool_value(env, SSL_is_init_finished(e->ssl));
}

/* write(h, src, offset, length) -> bytes consumed or an engine code. */
static napi_value engine_write(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(4);
  uint8_t *src;
  int length;
  if (!get_range(env, argv + 1, &src, &length)) return NULL;
  if (e->failed) return throw_failure(env, e);
  if (SSL_get_shutdown(e->ssl) & SSL_SENT_SHUTDOWN) return int_value(env, SHARDTLS_EOF_GRACEFUL);
  if (length == 0) return int_value(env, 0);

  clear_errors();
  int r = SSL_write(e->ssl, src, length);
  if (r > 0) e->established = true;
  return finish(env, e, r > 0 ? r : map_result(e, r));
}

/* read(h, dst, offset, length) -> bytes read or an engine code. */
static napi_value engine_read(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(4);
  uint8_t *dst;
  int length;
  if (!get_range(env, argv + 1, &dst, &length)) return NULL;
  if (e->failed) return throw_failure(env, e);
  if (length == 0) return int_value(env, 0);

  clear_errors();
  int r = SSL_read(e->ssl, dst, length);
  if (r > 0) e->established = true;
  return finish(env, e, r > 0 ? r : map_result(e, r));
}

/*
 * shutdown(h) -> 1 when close_notify went both ways, 0 when ours is queued, or NEED_WRITE.
 * RFC 8446 section 6.1: each side sends close_notify and may close without waiting for the
 * peer's, so 0 is a normal result.
 */
static napi_value engine_shutdown(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
  if (e->failed) return throw_failure(env, e);
  if (!SSL_is_init_finished(e->ssl)) {
    /* No keys yet, so no close_notify can be sent. */
    return int_value(env, 1);
  }

  clear_errors();
  int r = SSL_shutdown(e->ssl);
  int code = r;
  if (r < 0) {
    code = map_result(e, r);
    /* Waiting for the peer's close_notify is not an error here. */
    if (code == SHARDTLS_NEED_READ) code = 0;
    if (code == SHARDTLS_EOF_GRACEFUL) code = 1;
  }
  return finish(env, e, code);
}

static napi_value engine_output_pending(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
  return int_value(env, (int64_t)BIO_ctrl_pending(e->network));
}

/*
 * peekOutput(h, dst, offset, length) -> bytes copied. The pair is a ring buffer, so after a
 * partial consumeOutput the pending bytes can wrap. Then this copies the contiguous part up to
 * the wrap, fewer than outputPending(); consumeOutput then peekOutput again to get the rest.
 */
static napi_value engine_peek_output(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(4);
  uint8_t *dst;
  int length;
  if (!get_range(env, argv + 1, &dst, &length)) return NULL;

  char *data;
  int available = BIO_nread0(e->network, &data);
  if (available <= 0) return int_value(env, 0);
  int n = available < length ? available : length;
  memcpy(dst, data, (size_t)n);
  return int_value(env, n);
}

/* consumeOutput(h, n): drops n pending bytes. RangeError when n exceeds outputPending(). */
static napi_value engine_consume_output(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(2);
  int64_t n;
  if (napi_get_value_int64(env, argv[1], &n) != napi_ok) return throw_type(env, "n must be a number");
  if (n < 0 || (size_t)n > BIO_ctrl_pending(e->network)) {
    return throw_range(env, "cannot consume more output than is pending");
  }
  while (n > 0) {
    char *data;
    int step = BIO_nread(e->network, &data, n > INT32_MAX ? INT32_MAX : (int)n);
    if (step <= 0) break;
    n -= step;
  }
  return undefined_value(env);
}

/*
 * takeOutput(h, dst, offset, length) -> bytes moved. peekOutput and consumeOutput in one call,
 * across the ring's wrap, for an upstream that always takes everything it is given.
 */
static napi_value engine_take_output(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(4);
  uint8_t *dst;
  int length;
  if (!get_range(env, argv + 1, &dst, &length)) return NULL;
  if (length == 0) return int_value(env, 0);
  int n = BIO_read(e->network, dst, length);
  return int_value(env, n > 0 ? n : 0);
}

static napi_value engine_input_space(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
  return int_value(env, (int64_t)BIO_ctrl_get_write_guarantee(e->network));
}

/* writeInput(h, src, offset, length) -> bytes accepted (0 when the input buffer is full). */
static napi_value engine_write_input(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(4);
  uint8_t *src;
  int length;
  if (!get_range(env, argv + 1, &src, &length)) return NULL;
  if (length == 0) return int_value(env, 0);
  int n = BIO_write(e->network, src, length);
  clear_errors();
  return int_value(env, n > 0 ? n : 0);
}

/* writeInputEof(h): SSL reads the buffered input, then sees the end of the stream. */
static napi_value engine_write_input_eof(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
  (void)BIO_shutdown_wr(e->network);
  return undefined_value(env);
}

/*
 * transfer(from, to) -> bytes moved from `from`'s output to `to`'s input. Two engines in one
 * thread (tests, benchmarks) exchange ciphertext without a JavaScript copy.
 */
static napi_value engine_transfer(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(2);
  engine *to = get_engine(env, argv[1]);
  if (to == NULL) return NULL;
  int64_t moved = 0;
  for (;;) {
    char *data;
    int available = BIO_nread0(e->network, &data);
    if (available <= 0) break;
    int n = BIO_write(to->network, data, available);
    if (n <= 0) break;
    BIO_nread(e->network, &data, n);
    moved += n;
    if (n < available) break;
  }
  clear_errors();
  return int_value(env, moved);
}

/*
 * keyUpdate(h, requestPeer) -> 1, or 0 before the handshake ends or below TLS 1.3.
 * RFC 8446 section 4.6.3. SSL_do_handshake right after queues the message in the output at
 * once; when the output is full it goes out with the next write instead.
 */
static napi_value engine_key_update(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(2);
  bool request_peer;
  napi_get_value_bool(env, argv[1], &request_peer);
  if (e->failed) return throw_failure(env, e);
  if (!SSL_is_init_finished(e->ssl) || SSL_version(e->ssl) != TLS1_3_VERSION) {
    return int_value(env, 0);
  }

  clear_errors();
  int type = request_peer ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED;
  if (SSL_key_update(e->ssl, type) != 1) {
    clear_errors();
    return int_value(env, 0);
  }
  int r = SSL_do_handshake(e->ssl);
  int code = r == 1 ? 1 : map_result(e, r);
  if (code == SHARDTLS_NEED_WRITE || code == SHARDTLS_NEED_READ) code = 1;
  return finish(env, e, code);
}

/* session(h) -> DER bytes of the newest resumable client session, or null. */
static napi_value engine_session(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
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

/* closeReason(h) -> the fatal alert text behind the last EOF_ABRUPT, or null. */
static napi_value engine_close_reason(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
  return string_value(env, e->close_reason[0] ? e->close_reason : NULL);
}

/* destroy(h): frees SSL and BIOs now. A second call does nothing. */
static napi_value engine_destroy(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  engine *e = get_tagged(env, argv[0], &ENGINE_TAG);
  if (e == NULL) return throw_type(env, "expected a shardtls engine handle");
  engine_release(e);
  return undefined_value(env);
}

/* ---------------------------------------------------------------------------------------- */
/* info()                                                                                   */
/* ---------------------------------------------------------------------------------------- */

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

  napi_set_named_property(env, summary, "subject", name_string(env, bio, X509_get_subject_name(cert)));
  napi_set_named_property(env, summary, "issuer", name_string(env, bio, X509_get_issuer_name(cert)));
  napi_set_named_property(env, summary, "subjectAltNames", san_array(env, bio, cert));
  napi_set_named_property(env, summary, "validFrom", time_string(env, bio, X509_get0_notBefore(cert)));
  napi_set_named_property(env, summary, "validTo", time_string(env, bio, X509_get0_notAfter(cert)));

  BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
  char *hex = serial ? BN_bn2hex(serial) : NULL;
  napi_set_named_property(env, summary, "serialNumber", string_value(env, hex ? hex : ""));
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
  napi_set_named_property(env, summary, "fingerprint256", string_value(env, fingerprint));
  BIO_free(bio);
  return summary;
}

/* info(h) -> TlsSessionInfo plus `verifyError` (null when the peer chain verified). */
static napi_value engine_info(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
  napi_value result;
  napi_create_object(env, &result);
  bool done = SSL_is_init_finished(e->ssl);
  clear_errors();

  napi_set_named_property(env, result, "version", string_value(env, done ? SSL_get_version(e->ssl) : NULL));
  const SSL_CIPHER *cipher = done ? SSL_get_current_cipher(e->ssl) : NULL;
  napi_set_named_property(env, result, "cipher", string_value(env, cipher ? SSL_CIPHER_get_name(cipher) : NULL));

  const unsigned char *alpn = NULL;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(e->ssl, &alpn, &alpn_len);
  napi_value alpn_value;
  if (alpn_len > 0) {
    napi_create_string_latin1(env, (const char *)alpn, alpn_len, &alpn_value);
  } else {
    napi_get_null(env, &alpn_value);
  }
  napi_set_named_property(env, result, "alpnProtocol", alpn_value);
  napi_set_named_property(env, result, "servername",
                          string_value(env, SSL_get_servername(e->ssl, TLSEXT_NAMETYPE_host_name)));

  X509 *peer = SSL_get1_peer_certificate(e->ssl);
  napi_value peer_value;
  if (peer != NULL) {
    peer_value = certificate_summary(env, peer);
    X509_free(peer);
  } else {
    napi_get_null(env, &peer_value);
  }
  napi_set_named_property(env, result, "peerCertificate", peer_value);
  napi_set_named_property(env, result, "sessionReused", bool_value(env, done && SSL_session_reused(e->ssl)));

  long verify = SSL_get_verify_result(e->ssl);
  bool has_peer = peer != NULL;
  napi_set_named_property(env, result, "verifyError",
                          string_value(env, has_peer && verify != X509_V_OK
                                                ? X509_verify_cert_error_string(verify)
                                                : NULL));
  clear_errors();
  return result;
}

/* ---------------------------------------------------------------------------------------- */
/* Module                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* setErrorClass(ctor): the class thrown for engine failures, called as new ctor(message, code). */
static napi_value set_error_class(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  addon_state *state;
  napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&state);
  napi_valuetype type;
  napi_typeof(env, argv[0], &type);
  if (type != napi_function) return throw_type(env, "expected a class");
  if (state->error_class != NULL) napi_delete_reference(env, state->error_class);
  napi_create_reference(env, argv[0], 1, &state->error_class);
  return undefined_value(env);
}

static napi_value live_engines(napi_env env, napi_callback_info info) {
  addon_state *state;
  napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&state);
  return int_value(env, state->live_engines);
}

static napi_value live_contexts(napi_env env, napi_callback_info info) {
  addon_state *state;
  napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&state);
  return int_value(env, state->live_contexts);
}

static napi_value openssl_version(napi_env env, napi_callback_info info) {
  (void)info;
  return string_value(env, OpenSSL_version(OPENSSL_VERSION));
}

static void state_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  addon_state *state = data;
  if (state->error_class != NULL) napi_delete_reference(env, state->error_class);
  free(state);
}

NAPI_MODULE_INIT() {
  addon_state *state = calloc(1, sizeof *state);
  if (state == NULL) return NULL;
  if (napi_set_instance_data(env, state, state_finalize, NULL) != napi_ok) {
    free(state);
    return NULL;
  }

#define METHOD(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, state}
  napi_property_descriptor methods[] = {
      METHOD("setErrorClass", set_error_class),
      METHOD("liveEngines", live_engines),
      METHOD("liveContexts", live_contexts),
      METHOD("opensslVersion", openssl_version),
      METHOD("contextCreate", context_create),
      METHOD("contextDestroy", context_destroy),
      METHOD("contextSetVersions", context_set_versions),
      METHOD("contextUseCertKey", context_use_cert_key),
      METHOD("contextAddSni", context_add_sni),
      METHOD("contextAddCa", context_add_ca),
      METHOD("contextUseDefaultCa", context_use_default_ca),
      METHOD("contextSetCiphers", context_set_ciphers),
      METHOD("contextSetAlpn", context_set_alpn),
      METHOD("contextSetFlags", context_set_flags),
      METHOD("engineCreate", engine_create),
      METHOD("handshake", engine_handshake),
      METHOD("handshakeDone", engine_handshake_done),
      METHOD("write", engine_write),
      METHOD("read", engine_read),
      METHOD("shutdown", engine_shutdown),
      METHOD("outputPending", engine_output_pending),
      METHOD("peekOutput", engine_peek_output),
      METHOD("consumeOutput", engine_consume_output),
      METHOD("takeOutput", engine_take_output),
      METHOD("inputSpace", engine_input_space),
      METHOD("writeInput", engine_write_input),
      METHOD("writeInputEof", engine_write_input_eof),
      METHOD("transfer", engine_transfer),
      METHOD("keyUpdate", engine_key_update),
      METHOD("session", engine_session),
      METHOD("closeReason", engine_close_reason),
      METHOD("info", engine_info),
      METHOD("destroy", engine_destroy),
  };
#undef METHOD
  napi_define_properties(env, exports, sizeof methods / sizeof methods[0], methods);
  return exports;
}
