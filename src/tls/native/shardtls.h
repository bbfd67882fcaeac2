/*
 * Shared declarations of the shardtls_tls addon: per-thread state, secure contexts, engines,
 * and the small argument helpers that every entry point uses.
 *
 * The addon is split by concept: module.c (init and per-thread state), napi-util.c (argument
 * and error helpers), context.c (secure contexts), engine.c (engine lifetime, failures and the
 * idle-buffer sweep), engine-io.c (the per-record calls) and info.c (session details and the
 * peer certificate summary). The per-record helpers are `static inline` here, so every call
 * site inlines them without link-time optimisation.
 */
#ifndef SHARDTLS_H
#define SHARDTLS_H

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
#include <openssl/ssl.h>

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

/* Slots of the per-thread result array that the two-in-one calls fill (see engine-io.c). */
#define RESULT_MOVED 0
#define RESULT_SLOTS 4

/* When SSL frees its record buffers (about 34 KiB per engine while allocated). */
typedef enum buffer_policy {
  BUFFERS_RELEASE_PER_RECORD = 0, /* SSL_MODE_RELEASE_BUFFERS: a malloc and free per record */
  BUFFERS_KEEP = 1,               /* allocated from the first record until destroy() */
  BUFFERS_RELEASE_IDLE = 2,       /* kept while busy, freed by releaseIdleBuffers() */
} buffer_policy;

typedef struct engine engine;

/* Per-environment (per worker thread) state. */
typedef struct addon_state {
  napi_ref error_class; /* TlsEngineError from the TypeScript wrapper, or NULL */
  int64_t live_engines;
  int64_t live_contexts;
  engine *idle_list;     /* engines with BUFFERS_RELEASE_IDLE, doubly linked */
  napi_ref result_array; /* keeps `results` alive */
  int32_t *results;      /* RESULT_SLOTS int32 values shared with JavaScript, or NULL */
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

struct engine {
  addon_state *state;
  context *context;
  SSL *ssl;     /* NULL after destroy() */
  BIO *network; /* application side of the pair */
  bool is_server;
  bool established;  /* the handshake completed; OpenSSL clears its own flag on an alert */
  bool failed;       /* a protocol or certificate failure was thrown */
  bool cert_failure; /* the failure was ERR_TLS_CERT */
  buffer_policy buffers;
  bool active;           /* BUFFERS_RELEASE_IDLE: a call ran since the last sweep */
  bool buffers_held;     /* BUFFERS_RELEASE_IDLE: SSL may hold record buffers */
  engine *idle_prev;     /* links in state->idle_list */
  engine *idle_next;
  char failure[MESSAGE_SIZE];
  char close_reason[MESSAGE_SIZE]; /* the alert behind an EOF_ABRUPT, or empty */
  SSL_SESSION *session;            /* client: the newest resumable session */
};

/* Type tags for handles. The values are random and fixed for this addon. */
extern const napi_type_tag SHARDTLS_ENGINE_TAG;
extern const napi_type_tag SHARDTLS_CONTEXT_TAG;

/*
 * Empties this thread's OpenSSL error queue, so SSL_get_error sees only the errors of the next
 * call and node's own crypto finds no stale entry. OpenSSL 3.0's ERR_clear_error resets all 16
 * slots of the queue on every call, so it runs only when ERR_peek_error finds an entry.
 */
static inline void clear_errors(void) {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

/* ---- napi-util.c ---- */

napi_value undefined_value(napi_env env);
napi_value bool_value(napi_env env, bool b);
napi_value string_value(napi_env env, const char *s);
napi_value throw_type(napi_env env, const char *message);
napi_value throw_range(napi_env env, const char *message);
napi_value throw_option(napi_env env, const char *message);
void openssl_reason(char *out, size_t size, const char *fallback);
bool get_bytes(napi_env env, napi_value value, uint8_t **data, size_t *length);
bool get_optional_string(napi_env env, napi_value value, char **out);
void *get_tagged(napi_env env, napi_value handle, const napi_type_tag *tag);
engine *get_engine(napi_env env, napi_value handle);
context *get_context(napi_env env, napi_value handle);
napi_value make_handle(napi_env env, void *pointer, const napi_type_tag *tag,
                       napi_finalize finalize);

static inline napi_value int_value(napi_env env, int64_t n) {
  napi_value v;
  napi_create_int32(env, (int32_t)n, &v);
  return v;
}

/*
 * Reads (bytes, offset, length) and checks the range. Returns false after throwing a TypeError
 * or RangeError. It runs per record, so it does three value reads and two compares.
 */
static inline bool get_range(napi_env env, napi_value *argv, uint8_t **data, int *length) {
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

/* ---- context.c ---- */

void context_unref(context *c);
napi_value context_create(napi_env env, napi_callback_info info);
napi_value context_destroy(napi_env env, napi_callback_info info);
napi_value context_set_versions(napi_env env, napi_callback_info info);
napi_value context_use_cert_key(napi_env env, napi_callback_info info);
napi_value context_add_sni(napi_env env, napi_callback_info info);
napi_value context_add_ca(napi_env env, napi_callback_info info);
napi_value context_use_default_ca(napi_env env, napi_callback_info info);
napi_value context_set_ciphers(napi_env env, napi_callback_info info);
napi_value context_set_alpn(napi_env env, napi_callback_info info);
napi_value context_set_ticket_keys(napi_env env, napi_callback_info info);
napi_value context_set_flags(napi_env env, napi_callback_info info);

/* ---- engine.c ---- */

napi_value throw_failure(napi_env env, engine *e);
int map_result(engine *e, int r);
napi_value finish(napi_env env, engine *e, int code);
napi_value engine_create(napi_env env, napi_callback_info info);
napi_value engine_destroy(napi_env env, napi_callback_info info);
napi_value release_idle_buffers(napi_env env, napi_callback_info info);

/* Marks an engine busy for the idle-buffer sweep: one store per call. */
static inline void mark_active(engine *e) {
  e->active = true;
}

/* ---- engine-io.c ---- */

napi_value engine_handshake(napi_env env, napi_callback_info info);
napi_value engine_handshake_done(napi_env env, napi_callback_info info);
napi_value engine_write(napi_env env, napi_callback_info info);
napi_value engine_read(napi_env env, napi_callback_info info);
napi_value engine_write_out(napi_env env, napi_callback_info info);
napi_value engine_push_read(napi_env env, napi_callback_info info);
napi_value engine_shutdown(napi_env env, napi_callback_info info);
napi_value engine_output_pending(napi_env env, napi_callback_info info);
napi_value engine_peek_output(napi_env env, napi_callback_info info);
napi_value engine_consume_output(napi_env env, napi_callback_info info);
napi_value engine_take_output(napi_env env, napi_callback_info info);
napi_value engine_input_space(napi_env env, napi_callback_info info);
napi_value engine_write_input(napi_env env, napi_callback_info info);
napi_value engine_write_input_eof(napi_env env, napi_callback_info info);
napi_value engine_transfer(napi_env env, napi_callback_info info);
napi_value engine_key_update(napi_env env, napi_callback_info info);
napi_value engine_close_reason(napi_env env, napi_callback_info info);

/* ---- info.c ---- */

napi_value engine_session(napi_env env, napi_callback_info info);
napi_value engine_info(napi_env env, napi_callback_info info);

#endif
