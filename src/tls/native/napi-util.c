/*
 * Argument, handle and error helpers shared by every entry point of the addon.
 *
 * Handles are Node-API externals carrying a type tag, so a foreign or mistyped handle raises a
 * TypeError instead of being dereferenced.
 */
#include "shardtls.h"

const napi_type_tag SHARDTLS_ENGINE_TAG = {0x5d3a8f4e2b1c6079ULL, 0x9e1f2a3b4c5d6e7fULL};
const napi_type_tag SHARDTLS_CONTEXT_TAG = {0x1b7c3e9a5f2d4086ULL, 0xa4b3c2d1e0f98765ULL};

napi_value undefined_value(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

napi_value bool_value(napi_env env, bool b) {
  napi_value v;
  napi_get_boolean(env, b, &v);
  return v;
}

napi_value string_value(napi_env env, const char *s) {
  napi_value v;
  if (s == NULL) {
    napi_get_null(env, &v);
    return v;
  }
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

napi_value throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

napi_value throw_range(napi_env env, const char *message) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
  return NULL;
}

napi_value throw_option(napi_env env, const char *message) {
  clear_errors();
  napi_throw_error(env, "ERR_INVALID_ARG_VALUE", message);
  return NULL;
}

/* Writes "<lib>: <reason>" of the newest queued OpenSSL error, or `fallback`, into `out`. */
void openssl_reason(char *out, size_t size, const char *fallback) {
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
bool get_bytes(napi_env env, napi_value value, uint8_t **data, size_t *length) {
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

/* Reads an optional string argument into a malloc'ed C string, or NULL for null/undefined. */
bool get_optional_string(napi_env env, napi_value value, char **out) {
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

void *get_tagged(napi_env env, napi_value handle, const napi_type_tag *tag) {
  bool tagged = false;
  void *pointer = NULL;
  if (napi_check_object_type_tag(env, handle, tag, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, handle, &pointer) != napi_ok) {
    return NULL;
  }
  return pointer;
}

/* Returns the live engine behind `handle`, or NULL after throwing a TypeError. */
engine *get_engine(napi_env env, napi_value handle) {
  engine *e = get_tagged(env, handle, &SHARDTLS_ENGINE_TAG);
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

/* Returns the live context behind `handle`, or NULL after throwing a TypeError. */
context *get_context(napi_env env, napi_value handle) {
  context *c = get_tagged(env, handle, &SHARDTLS_CONTEXT_TAG);
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

napi_value make_handle(napi_env env, void *pointer, const napi_type_tag *tag,
                       napi_finalize finalize) {
  napi_value handle;
  if (napi_create_external(env, pointer, finalize, NULL, &handle) != napi_ok) return NULL;
  if (napi_type_tag_object(env, handle, tag) != napi_ok) return NULL;
  return handle;
}
