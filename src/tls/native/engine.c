/*
 * Engine lifetime and failures: creation, destroy and finalization, the mapping of SSL results
 * to engine codes, and the sweep that frees the record buffers of idle engines.
 *
 * An engine is one SSL object on one end of a BIO pair. The application side of the pair (the
 * "network" BIO) carries ciphertext. The engine does no I/O of its own.
 */
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "shardtls.h"

/* ---------------------------------------------------------------------------------------- */

/* Throws the engine's stored failure as a TlsEngineError (or an Error when none is set). */
napi_value throw_failure(napi_env env, engine *e) {
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
int map_result(engine *e, int r) {
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
napi_value finish(napi_env env, engine *e, int code) {
  clear_errors();
  if (code == 0 && e->failed) return throw_failure(env, e);
  return int_value(env, code);
}

/* ---------------------------------------------------------------------------------------- */

/* Removes an engine from its thread's list of engines that the idle sweep visits. */
static void unlink_idle(engine *e) {
  if (e->idle_prev != NULL) e->idle_prev->idle_next = e->idle_next;
  else e->state->idle_list = e->idle_next;
  if (e->idle_next != NULL) e->idle_next->idle_prev = e->idle_prev;
  e->idle_prev = NULL;
  e->idle_next = NULL;
}

static void link_idle(engine *e) {
  e->idle_prev = NULL;
  e->idle_next = e->state->idle_list;
  if (e->idle_next != NULL) e->idle_next->idle_prev = e;
  e->state->idle_list = e;
}

static void engine_release(engine *e) {
  if (e->ssl == NULL) return;
  clear_errors();
  SSL_free(e->ssl); /* also frees the SSL side of the pair */
  BIO_free(e->network);
  e->ssl = NULL;
  e->network = NULL;
  if (e->buffers == BUFFERS_RELEASE_IDLE) unlink_idle(e);
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
 * engineCreate(context, isServer, servername|null, bioSize, session|null, bufferPolicy)
 * -> handle. `bioSize` of 0 picks DEFAULT_BIO_SIZE. `bufferPolicy` is a buffer_policy value.
 * BUFFERS_KEEP and BUFFERS_RELEASE_IDLE clear SSL_MODE_RELEASE_BUFFERS for this engine, so SSL
 * keeps its record buffers (about 34 KiB) between records instead of a malloc and free per
 * record; BUFFERS_RELEASE_IDLE also puts the engine on the list that releaseIdleBuffers visits.
 */
napi_value engine_create(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  addon_state *state;
  bool is_server;
  uint32_t bio_size, policy = BUFFERS_RELEASE_IDLE;
  char *servername;
  napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&state);
  context *c = get_context(env, argv[0]);
  if (c == NULL) return NULL;
  if (napi_get_value_bool(env, argv[1], &is_server) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &bio_size) != napi_ok) {
    return throw_type(env, "isServer must be a boolean and bioSize a number");
  }
  if (argc >= 6 && napi_get_value_uint32(env, argv[5], &policy) != napi_ok) {
    return throw_type(env, "bufferPolicy must be a number");
  }
  if (policy > BUFFERS_RELEASE_IDLE) return throw_range(env, "bufferPolicy must be 0, 1 or 2");
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
    if (policy != BUFFERS_RELEASE_PER_RECORD) SSL_clear_mode(e->ssl, SSL_MODE_RELEASE_BUFFERS);
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
  e->buffers = (buffer_policy)policy;
  if (e->buffers == BUFFERS_RELEASE_IDLE) link_idle(e);
  state->live_engines++;
  clear_errors();
  napi_value handle = make_handle(env, e, &SHARDTLS_ENGINE_TAG, engine_finalize);
  if (handle == NULL) engine_finalize(env, e, NULL);
  return handle;
}

/* destroy(h): frees SSL and BIOs now. A second call does nothing. */
napi_value engine_destroy(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  engine *e = get_tagged(env, argv[0], &SHARDTLS_ENGINE_TAG);
  if (e == NULL) return throw_type(env, "expected a shardtls engine handle");
  engine_release(e);
  return undefined_value(env);
}

/*
 * releaseIdleBuffers() -> engines whose record buffers were freed. Visits this thread's engines
 * with BUFFERS_RELEASE_IDLE: one that ran a call since the previous sweep stays as it is, and
 * one that did not gets SSL_free_buffers. So an engine keeps its buffers while busy and frees
 * them one to two sweep intervals after it goes idle. SSL_free_buffers refuses (returns 0) while
 * a partial record is buffered in either direction; such an engine is tried again next sweep.
 */
napi_value release_idle_buffers(napi_env env, napi_callback_info info) {
  addon_state *state;
  napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&state);
  int64_t freed = 0;
  for (engine *e = state->idle_list; e != NULL; e = e->idle_next) {
    if (e->active) {
      e->active = false;
      e->buffers_held = true;
    } else if (e->buffers_held && SSL_free_buffers(e->ssl) == 1) {
      e->buffers_held = false;
      freed++;
    }
  }
  clear_errors();
  return int_value(env, freed);
}
