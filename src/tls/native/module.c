/*
 * shardtls_tls: a memory-BIO TLS engine and secure contexts over the OpenSSL inside node.
 * This file contains the module entry point and the per-thread state.
 *
 * The addon is context aware (NAPI_MODULE_INIT), so each worker thread gets its own state. The
 * OpenSSL error queue is per thread and shared with node's own crypto, so entry points clear
 * it before an SSL call and leave it empty when they return.
 */
#include "shardtls.h"

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

/*
 * setResultArray(array: Int32Array) keeps `array` as this thread's result slots, which
 * writeOut and pushRead fill with their second result. An Int32Array of fewer than
 * RESULT_SLOTS elements raises a TypeError.
 */
static napi_value set_result_array(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  addon_state *state;
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&state);
  if (argc < 1 || napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL) !=
                      napi_ok ||
      type != napi_int32_array || length < RESULT_SLOTS) {
    return throw_type(env, "expected an Int32Array of at least 4 elements");
  }
  if (state->result_array != NULL) napi_delete_reference(env, state->result_array);
  napi_create_reference(env, argv[0], 1, &state->result_array);
  state->results = data;
  return undefined_value(env);
}

static void state_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  addon_state *state = data;
  if (state->error_class != NULL) napi_delete_reference(env, state->error_class);
  if (state->result_array != NULL) napi_delete_reference(env, state->result_array);
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
      METHOD("setResultArray", set_result_array),
      METHOD("releaseIdleBuffers", release_idle_buffers),
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
      METHOD("contextSetTicketKeys", context_set_ticket_keys),
      METHOD("engineCreate", engine_create),
      METHOD("handshake", engine_handshake),
      METHOD("handshakeDone", engine_handshake_done),
      METHOD("write", engine_write),
      METHOD("read", engine_read),
      METHOD("writeOut", engine_write_out),
      METHOD("pushRead", engine_push_read),
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
